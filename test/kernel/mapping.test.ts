import { DmUserRequest, DmUserResponse } from '../../src/dmuser/constants';
import type { DmUserMessage } from '../../src/dmuser/codec';
import { openChannel } from '../../src/dmuser/socket-channel';
import { ctx, fileOf, outcome, patterned, serveFromMemory, startKernel } from './helpers';

/** How block-file IO becomes dm-user messages: seq, type, flags, sector, len, payload. */
describe('kernel: block-file IO to dm-user messages', () => {
  let env: Awaited<ReturnType<typeof startKernel>>;
  beforeEach(async () => {
    env = await startKernel({ daemon_timeout_ms: 2000 });
  });
  afterEach(() => env.stop());

  async function recordOne(run: () => Promise<unknown>, answer?: Buffer): Promise<DmUserMessage> {
    const channel = await openChannel(env.runDir, 'sys');
    const io = run();
    const message = (await channel.next())!;
    await channel.respond({ ...message.header, type: DmUserResponse.Success }, answer);
    await io;
    await channel.close();
    return message;
  }

  it('numbers messages per target from 0, shared by all channels of the target', async () => {
    const { kernel } = env;
    await kernel.createTarget('a', 8192);
    await kernel.createTarget('b', 8192);
    const [a1, a2, b1] = [await openChannel(env.runDir, 'a'), await openChannel(env.runDir, 'a'), await openChannel(env.runDir, 'b')];
    const fa = fileOf(kernel, 'a');
    const fb = fileOf(kernel, 'b');
    const reads = [kernel.read(fa, 0, 512, ctx), kernel.read(fa, 512, 512, ctx), kernel.read(fb, 0, 512, ctx), kernel.read(fa, 1024, 512, ctx)];
    const seen: number[] = [];
    for (const channel of [a1, a2, a1]) {
      const m = (await channel.next())!;
      seen.push(m.header.seq);
      await channel.respond({ ...m.header, type: 0 }, Buffer.alloc(512));
    }
    const mb = (await b1.next())!;
    await b1.respond({ ...mb.header, type: 0 }, Buffer.alloc(512));
    await Promise.all(reads);
    expect(seen).toEqual([0, 1, 2]);
    expect(mb.header.seq).toBe(0);
    await Promise.all([a1.close(), a2.close(), b1.close()]);
  });

  it('maps read, write, fsync and hole punch like DM does', async () => {
    const { kernel } = env;
    await kernel.createTarget('sys', 1 << 20);
    const file = fileOf(kernel, 'sys');
    const data = patterned(4096, 7);

    const read = await recordOne(() => kernel.read(file, 8192, 4096, ctx), Buffer.alloc(4096));
    expect(read.header).toEqual({ seq: 0, type: DmUserRequest.Read, flags: 0, sector: 16, len: 4096 });

    const write = await recordOne(() => kernel.write(file, 4096, data, ctx));
    expect(write.header).toEqual({ seq: 1, type: DmUserRequest.Write, flags: 0, sector: 8, len: 4096 });
    expect(write.payload.equals(data)).toBe(true);

    const flush = await recordOne(() => kernel.flush(file, ctx));
    expect(flush.header).toEqual({ seq: 2, type: DmUserRequest.Write, flags: 0x408, sector: 0, len: 0 });
    expect(flush.payload.length).toBe(0);

    const discard = await recordOne(() => kernel.discard(file, 65536, 131072, ctx));
    expect(discard.header).toEqual({ seq: 3, type: DmUserRequest.Discard, flags: 0, sector: 128, len: 131072 });
  });

  it('widens unaligned reads to whole sectors and returns exactly the bytes asked for', async () => {
    const { kernel, runDir } = env;
    await kernel.createTarget('sys', 16384);
    const store = patterned(16384, 3);
    const channel = await openChannel(runDir, 'sys');
    const served = serveFromMemory(channel, store);
    const file = fileOf(kernel, 'sys');
    for (const [offset, length] of [[1, 10], [511, 2], [1000, 5000], [0, 16384], [16383, 1]]) {
      const got = await kernel.read(file, offset, length, ctx);
      expect(got.equals(store.subarray(offset, offset + length))).toBe(true);
    }
    await channel.close();
    await served;
  });

  it('refuses unaligned writes and discards with EINVAL and sends nothing', async () => {
    const { kernel, runDir } = env;
    await kernel.createTarget('sys', 16384);
    const channel = await openChannel(runDir, 'sys');
    const file = fileOf(kernel, 'sys');
    expect(await outcome(kernel.write(file, 100, Buffer.alloc(512), ctx))).toMatchObject({ ok: false, errno: 22 });
    expect(await outcome(kernel.write(file, 512, Buffer.alloc(100), ctx))).toMatchObject({ ok: false, errno: 22 });
    expect(await outcome(kernel.discard(file, 0, 1000, ctx))).toMatchObject({ ok: false, errno: 22 });
    expect(await outcome(kernel.read(file, 16000, 1000, ctx))).toMatchObject({ ok: false, errno: 22 });
    expect(kernel.target('sys')!.info()).toMatchObject({ queued: 0, held: 0 });
    // The next IO still gets seq 0: the refused ones never became messages.
    const io = kernel.read(file, 0, 512, ctx);
    const m = (await channel.next())!;
    expect(m.header.seq).toBe(0);
    await channel.respond({ ...m.header, type: 0 }, Buffer.alloc(512));
    await io;
    await channel.close();
  });

  it('fails an IO with EIO when the daemon answers error or unsupported', async () => {
    const { kernel, runDir } = env;
    await kernel.createTarget('sys', 16384);
    const channel = await openChannel(runDir, 'sys');
    const file = fileOf(kernel, 'sys');
    for (const code of [DmUserResponse.Error, DmUserResponse.Unsupported, 77]) {
      const io = outcome(kernel.read(file, 0, 4096, ctx));
      const m = (await channel.next())!;
      // Error answers carry no payload; the channel stays usable afterwards.
      await channel.respond({ ...m.header, type: code });
      expect(await io).toMatchObject({ ok: false, errno: 5 });
    }
    const io = kernel.read(file, 0, 512, ctx);
    const m = (await channel.next())!;
    await channel.respond({ ...m.header, type: 0 }, Buffer.alloc(512, 9));
    expect((await io)[0]).toBe(9);
    await channel.close();
  });

  it('manages targets: duplicate names, bad sizes and names, unknown targets', async () => {
    const { kernel } = env;
    await kernel.createTarget('sys', 4096);
    await expect(kernel.createTarget('sys', 4096)).rejects.toMatchObject({ code: 'EEXIST' });
    await expect(kernel.createTarget('x', 1000)).rejects.toMatchObject({ code: 'EINVAL_INPUT' });
    await expect(kernel.createTarget('x', 0)).rejects.toMatchObject({ code: 'EINVAL_INPUT' });
    await expect(kernel.createTarget('../x', 4096)).rejects.toMatchObject({ code: 'EINVAL_INPUT' });
    await expect(kernel.removeTarget('nope')).rejects.toMatchObject({ code: 'ENOTFOUND' });
    expect(kernel.list().map((f) => [f.name, f.size])).toEqual([['sys', 4096]]);
    const old = fileOf(kernel, 'sys');
    await kernel.removeTarget('sys');
    await kernel.createTarget('sys', 8192);
    const again = fileOf(kernel, 'sys');
    expect(again.id).not.toBe(old.id);
    // IO through a stale file of the removed target fails; it never reaches the new one.
    expect(await outcome(kernel.read(old, 0, 512, ctx))).toMatchObject({ ok: false, errno: 5 });
    expect(kernel.target('sys')!.info().queued).toBe(0);
  });
});
