import { promises as fs } from 'node:fs';
import { spawn } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { encodeHeader, encodeMessage } from '../../src/dmuser/codec';
import { DmUserRequest } from '../../src/dmuser/constants';
import { openChannel } from '../../src/dmuser/socket-channel';
import { MiscConnection, listenMiscEndpoint, miscEndpointPath } from '../../src/dmuser/socket-endpoint';

jest.setTimeout(15_000);

/** The socket transport on its own: a scripted kernel side against the daemon's channel. */
describe('dm-user socket transport', () => {
  let runDir: string;
  beforeEach(async () => {
    runDir = await fs.mkdtemp(path.join(os.tmpdir(), 'vab-dmuser-'));
    await fs.mkdir(path.join(runDir, 'dm-user'));
  });
  afterEach(() => fs.rm(runDir, { recursive: true, force: true }));

  /** An endpoint that records what each open received and lets the test drive it. */
  async function scriptedKernel(name: string) {
    const opens: Array<{ connection: MiscConnection; received: Buffer[]; closed: boolean }> = [];
    const endpoint = await listenMiscEndpoint(miscEndpointPath(runDir, name), (connection) => {
      const open = { connection, received: [] as Buffer[], closed: false };
      opens.push(open);
      return { data: (chunk) => open.received.push(chunk), closed: () => (open.closed = true) };
      // The plain framing only: the daemon's openChannel falls back to it (shared-transport.test.ts covers the other).
    }, { shared: false });
    return { endpoint, opens };
  }

  const until = async (check: () => boolean): Promise<void> => {
    for (let i = 0; i < 500 && !check(); i++) await new Promise((r) => setTimeout(r, 5));
    expect(check()).toBe(true);
  };

  it('places the endpoint at <run>/dm-user/<name>', () => {
    expect(miscEndpointPath('/run/vab', 'system_a')).toBe('/run/vab/dm-user/system_a');
  });

  it('delivers requests whole whatever the cuts, and sends answers as header then exact payload', async () => {
    const { endpoint, opens } = await scriptedKernel('sys');
    const channel = await openChannel(runDir, 'sys');
    await until(() => opens.length === 1);
    const write = encodeMessage({ seq: 0, type: DmUserRequest.Write, flags: 0, sector: 8, len: 5 }, Buffer.from('hello'));
    const read = encodeMessage({ seq: 1, type: DmUserRequest.Read, flags: 0x800, sector: 16, len: 6 });
    const wire = Buffer.concat([write, read]);
    // Byte by byte: the worst cutting a stream can do.
    for (let i = 0; i < wire.length; i++) opens[0].connection.send([wire.subarray(i, i + 1)]);
    const first = (await channel.next())!;
    const second = (await channel.next())!;
    expect(first.header).toEqual({ seq: 0, type: 1, flags: 0, sector: 8, len: 5 });
    expect(first.payload.toString()).toBe('hello');
    expect(second.header).toEqual({ seq: 1, type: 0, flags: 0x800, sector: 16, len: 6 });
    expect(second.payload.length).toBe(0);
    expect(channel.outstanding).toBe(2);
    await channel.respond({ ...second.header, type: 0 }, Buffer.from('abcdef'));
    await channel.respond({ ...first.header, type: 0 });
    expect(channel.outstanding).toBe(0);
    await until(() => Buffer.concat(opens[0].received).length === 86);
    const expected = Buffer.concat([encodeHeader({ ...second.header, type: 0 }), Buffer.from('abcdef'), encodeHeader({ ...first.header, type: 0 })]);
    expect(Buffer.concat(opens[0].received).equals(expected)).toBe(true);
    await channel.close();
    await until(() => opens[0].closed);
    await endpoint.close();
  });

  it('ends the message stream on end of messages but still takes answers (ENOTBLK)', async () => {
    const { endpoint, opens } = await scriptedKernel('sys');
    const channel = await openChannel(runDir, 'sys');
    await until(() => opens.length === 1);
    opens[0].connection.send([encodeMessage({ seq: 5, type: DmUserRequest.Read, flags: 0, sector: 0, len: 0 })]);
    opens[0].connection.endOfMessages();
    const held = (await channel.next())!;
    expect(await channel.next()).toBeUndefined();
    expect(await channel.next()).toBeUndefined();
    await channel.respond({ ...held.header, type: 0 });
    await until(() => Buffer.concat(opens[0].received).length === 40);
    await channel.close();
    await until(() => opens[0].closed);
    await endpoint.close();
  });

  it('each connection is its own open', async () => {
    const { endpoint, opens } = await scriptedKernel('sys');
    const channels = await Promise.all([openChannel(runDir, 'sys'), openChannel(runDir, 'sys'), openChannel(runDir, 'sys')]);
    await until(() => opens.length === 3);
    await channels[1].close();
    await until(() => opens.filter((o) => o.closed).length === 1);
    await Promise.all([channels[0].close(), channels[2].close()]);
    await endpoint.close();
  });

  it('reports a missing target as ENOTFOUND', async () => {
    await expect(openChannel(runDir, 'nothing')).rejects.toMatchObject({ code: 'ENOTFOUND' });
  });

  it('gives undefined to a waiting reader when the kernel side goes away', async () => {
    const { endpoint, opens } = await scriptedKernel('sys');
    const channel = await openChannel(runDir, 'sys');
    await until(() => opens.length === 1);
    const waiting = channel.next();
    opens[0].connection.destroy();
    expect(await waiting).toBeUndefined();
    await expect(channel.respond({ seq: 0, type: 0, flags: 0, sector: 0, len: 0 })).rejects.toMatchObject({ code: 'EPROTO' });
    await channel.close();
    await endpoint.close();
  });

  it('replaces a stale socket but never a regular file, and removes its socket on close', async () => {
    const file = miscEndpointPath(runDir, 'stale');
    // A listener killed with SIGKILL leaves its socket file behind, as a killed kernel would.
    const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(file)}, () => console.log('up'))`]);
    await new Promise((resolve) => child.stdout.once('data', resolve));
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
    expect((await fs.lstat(file)).isSocket()).toBe(true);
    const { endpoint } = await scriptedKernel('stale');
    const channel = await openChannel(runDir, 'stale');
    await channel.close();
    await endpoint.close();
    await expect(fs.stat(file)).rejects.toMatchObject({ code: 'ENOENT' });
    await fs.writeFile(path.join(runDir, 'dm-user', 'plain'), 'data');
    await expect(scriptedKernel('plain')).rejects.toMatchObject({ code: 'EEXIST' });
  });
});
