import { promises as fsp } from 'fs';
import path from 'path';
import { start } from '../../src/util/exec';
import { FuseServerProcess, startFuseServer } from './support/child';
import { sh, within, Workspace } from './support/workspace';

/**
 * Real mount, served by a child process; this process only uses child processes (dd, cmp, stat,
 * truncate, fallocate) on the mount and reads the backing files directly.
 */
const MiB = 1024 * 1024;
const SLOW_MS = 3000;

let ws: Workspace;
let server: FuseServerProcess;
let mnt: string;
let data: { backing: string; content: Buffer };
let readonly: { backing: string; content: Buffer };

beforeAll(async () => {
  ws = await Workspace.create();
  const d = await ws.backing('data', 8 * MiB, { writable: true });
  const r = await ws.backing('ro', MiB, { writable: false });
  const failing = await ws.backing('failing', 64 * 1024, { writable: false, readErrno: 0 });
  const nodata = await ws.backing('nodata', 64 * 1024, { writable: false, readErrno: 61 });
  const slow = await ws.backing('slow', 4096, { writable: false, readDelayMs: SLOW_MS });
  data = { backing: d.file.backing, content: d.content };
  readonly = { backing: r.file.backing, content: r.content };
  mnt = await ws.mountpoint('mnt');
  server = await startFuseServer({ mountpoint: mnt, files: [d.file, r.file, failing.file, nodata.file, slow.file], logFile: path.join(ws.dir, 'server.log') });
  ws.servers.push(server);
});

afterAll(async () => {
  await ws?.dispose();
});

describe('FUSE block files on a real mount', () => {
  it('lists the provider files with their sizes and modes', async () => {
    const ls = await sh(`ls -1 ${mnt}`);
    expect(ls.stdout.trim().split('\n').sort()).toEqual(['data', 'failing', 'nodata', 'ro', 'slow']);
    const stat = await sh(`stat -c '%n %s %a %F' ${mnt}/data ${mnt}/ro`);
    expect(stat.stdout.trim().split('\n')).toEqual([`${mnt}/data ${8 * MiB} 600 regular file`, `${mnt}/ro ${MiB} 400 regular file`]);
  });

  it('reads byte-identical content, buffered and with O_DIRECT 1 MiB reads', async () => {
    expect((await sh(`cmp ${mnt}/ro ${readonly.backing}`)).code).toBe(0);
    const copy = path.join(ws.dir, 'direct-copy');
    const dd = await sh(`dd if=${mnt}/data of=${copy} bs=1M iflag=direct status=none`);
    expect(dd.stderr).toBe('');
    expect((await fsp.readFile(copy)).equals(data.content)).toBe(true);
  });

  it('serves many parallel readers', async () => {
    const copies = Array.from({ length: 16 }, (_, i) => path.join(ws.dir, `part-${i}`));
    const results = await Promise.all(
      copies.map((copy, i) => sh(`dd if=${mnt}/data of=${copy} bs=512K skip=${i} count=1 iflag=direct status=none`)),
    );
    expect(results.map((r) => r.code)).toEqual(copies.map(() => 0));
    for (const [i, copy] of copies.entries()) {
      expect((await fsp.readFile(copy)).equals(data.content.subarray(i * 512 * 1024, (i + 1) * 512 * 1024))).toBe(true);
    }
  });

  it('lands writes in the backing data and reaches provider.flush on fsync', async () => {
    const flushes = server.count('flush', 'data');
    const pattern = Buffer.alloc(3 * 4096, 0x5a);
    const source = path.join(ws.dir, 'pattern');
    await fsp.writeFile(source, pattern);
    const dd = await sh(`dd if=${source} of=${mnt}/data bs=4096 seek=5 conv=notrunc,fsync status=none`);
    expect(dd.stderr).toBe('');
    const backing = await fsp.readFile(data.backing);
    expect(backing.subarray(5 * 4096, 8 * 4096).equals(pattern)).toBe(true);
    expect(backing.subarray(0, 5 * 4096).equals(data.content.subarray(0, 5 * 4096))).toBe(true);
    await server.waitFor(() => server.count('flush', 'data') > flushes);
    // An O_DIRECT 1 MiB write too.
    const big = Buffer.alloc(MiB, 0xc3);
    await fsp.writeFile(source, big);
    expect((await sh(`dd if=${source} of=${mnt}/data bs=1M seek=7 oflag=direct conv=notrunc status=none`)).stderr).toBe('');
    expect((await fsp.readFile(data.backing)).subarray(7 * MiB).equals(big)).toBe(true);
  });

  it('refuses writes to a read-only file, past the end, and new files', async () => {
    const ro = await sh(`dd if=/dev/zero of=${mnt}/ro bs=4096 count=1 conv=notrunc status=none`);
    expect(ro.stderr).toMatch(/Read-only file system/);
    const past = await sh(`dd if=/dev/zero of=${mnt}/data bs=4096 count=1 seek=${(8 * MiB) / 4096} conv=notrunc status=none`);
    expect(past.stderr).toMatch(/No space left on device/);
    const create = await sh(`touch ${mnt}/new-file`);
    expect(create.stderr).toMatch(/Operation not permitted/);
    expect((await fsp.readFile(readonly.backing)).equals(readonly.content)).toBe(true);
  });

  it('refuses a truncate to another size with EPERM and accepts the same size', async () => {
    expect((await sh(`truncate -s 0 ${mnt}/data`)).stderr).toMatch(/Operation not permitted/);
    expect(await sh(`truncate -s ${8 * MiB} ${mnt}/data`)).toMatchObject({ code: 0, stderr: '' });
    expect((await fsp.stat(data.backing)).size).toBe(8 * MiB);
  });

  it('passes a hole punch to provider.discard and refuses other fallocate modes', async () => {
    const punch = await sh(`fallocate -p -o 8192 -l 16384 ${mnt}/data`);
    expect(punch.stderr).toBe('');
    await server.waitFor((e) => e.event === 'discard' && e.offset === 8192 && e.length === 16384);
    expect((await fsp.readFile(data.backing)).subarray(8192, 8192 + 16384).equals(Buffer.alloc(16384))).toBe(true);
    expect((await sh(`fallocate -o 0 -l 4096 ${mnt}/data`)).stderr).toMatch(/Operation not supported/);
  });

  it('turns provider errors into errnos for the reader: plain errors into EIO, FuseErrnoError into its errno', async () => {
    expect((await sh(`dd if=${mnt}/failing of=/dev/null bs=4096 count=1 status=none`)).stderr).toMatch(/Input\/output error/);
    expect((await sh(`dd if=${mnt}/nodata of=/dev/null bs=4096 count=1 status=none`)).stderr).toMatch(/No data available/);
    // The session keeps serving after errors.
    expect((await sh(`cmp ${mnt}/ro ${readonly.backing}`)).code).toBe(0);
  });

  it('keeps serving other requests while one provider call is slow', async () => {
    const slowRead = sh(`dd if=${mnt}/slow of=/dev/null bs=4096 count=1 status=none`);
    let slowDone = false;
    void slowRead.then(() => (slowDone = true));
    await server.waitFor((e) => e.event === 'slow-read');
    const fast = await sh(`dd if=${mnt}/ro of=/dev/null bs=1M iflag=direct status=none`);
    expect(fast.code).toBe(0);
    expect(slowDone).toBe(false);
    expect((await slowRead).code).toBe(0);
  });

  it('has many provider calls in flight at once', async () => {
    const before = server.count('slow-read');
    const done: boolean[] = [];
    const readers = [0, 1, 2, 3].map((i) => 
      sh(`dd if=${mnt}/slow of=/dev/null bs=4096 count=1 iflag=direct status=none`).then((result) => {
        done[i] = true;
        return result;
      }),
    );
    // Served one at a time, the fourth call could only start after the first three had finished.
    await server.waitFor(() => server.count('slow-read') >= before + 4, SLOW_MS * 6);
    expect(done.filter(Boolean)).toEqual([]);
    expect((await Promise.all(readers)).map((r) => r.code)).toEqual([0, 0, 0, 0]);
  });

  it('does not hang a reader interrupted by a signal: it returns once the reply comes', async () => {
    const before = server.count('slow-read');
    const reader = start('dd', [`if=${mnt}/slow`, 'of=/dev/null', 'bs=4096', 'count=1', 'status=none']);
    const exited = reader.exited.then((exit) => String(exit.signal ?? exit.code));
    await server.waitFor(() => server.count('slow-read') > before);
    // INTERRUPT reaches the server, which ignores it; the reader leaves when the provider answers.
    reader.signal('SIGINT');
    const outcome = await within(exited, SLOW_MS * 3, 'hung');
    if (outcome === 'hung') reader.signal('SIGKILL');
    expect(outcome).not.toBe('hung');
    expect((await sh(`cmp ${mnt}/ro ${readonly.backing}`)).code).toBe(0);
  });
});
