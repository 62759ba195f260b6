import { promises as fs } from 'node:fs';
import path from 'node:path';
import { DmUserResponse } from '../../src/dmuser/constants';
import { openChannel } from '../../src/dmuser/socket-channel';
import { Errno } from '../../src/fuse/protocol';
import { ctx, fileOf, outcome, patterned, serveFromMemory, sleep, startKernel } from './helpers';

/** `dmctl reload` (a table swap under the block file) and linear targets, in the kernel itself. */
describe('kernel: reload onto a new misc name (daemon handoff)', () => {
  let env: Awaited<ReturnType<typeof startKernel>>;
  beforeEach(async () => {
    env = await startKernel({ daemon_timeout_ms: 2000 });
  });
  afterEach(() => env.stop());

  it('keeps the block file; IO the old daemon holds finishes through it, queued IO moves to the new target', async () => {
    const { kernel } = env;
    await kernel.createTarget('sys', 64 * 1024);
    const file = fileOf(kernel, 'sys');
    const old = await openChannel(env.runDir, 'sys');
    // Window 2: two reads are held by the old channel, the third waits in the queue.
    const reads = [0, 1, 2].map((i) => kernel.read(file, i * 4096, 4096, ctx));
    const held = [(await old.next())!, (await old.next())!];
    await sleep(20);
    expect(kernel.targets()[0]).toMatchObject({ held: 2, queued: 1 });

    // Like DM's suspend, the reload returns only once the old daemon has answered what it holds.
    let reloaded = false;
    const reload = kernel.reloadTarget('sys', { misc: 'sys-1' }).then((info) => ((reloaded = true), info));
    await sleep(50);
    expect(reloaded).toBe(false);
    expect(fileOf(kernel, 'sys')).toBe(file);
    await expect(fs.stat(path.join(env.runDir, 'dm-user', 'sys'))).rejects.toThrow(/ENOENT/);

    // The old daemon answers what it holds, then sees the end of its messages.
    for (const m of held) await old.respond({ ...m.header, type: DmUserResponse.Success }, patterned(4096, m.header.seq + 1));
    const info = await reload;
    expect(info).toMatchObject({ name: 'sys', kind: 'dm-user', misc: 'sys-1', queued: 1, channels: 0 });
    expect(await old.next()).toBeUndefined();
    await old.close();

    const next = await openChannel(env.runDir, 'sys-1');
    const moved = (await next.next())!;
    expect(moved.header).toMatchObject({ seq: 0, sector: 16, len: 4096 });
    await next.respond({ ...moved.header, type: DmUserResponse.Success }, patterned(4096, 9));
    const results = await Promise.all(reads);
    expect(results[0].equals(patterned(4096, 1))).toBe(true);
    expect(results[1].equals(patterned(4096, 2))).toBe(true);
    expect(results[2].equals(patterned(4096, 9))).toBe(true);
    await next.close();
  });

  it('a new read waits on the new target for its first daemon (daemon_timeout_ms), then fails', async () => {
    const { kernel } = env;
    kernel.setParam('daemon_timeout_ms', 300);
    await kernel.createTarget('sys', 8192);
    const first = await openChannel(env.runDir, 'sys');
    await kernel.reloadTarget('sys', { misc: 'sys-1' });
    await first.close();
    const began = Date.now();
    const r = await outcome(kernel.read(fileOf(kernel, 'sys'), 0, 512, ctx));
    expect(r).toMatchObject({ ok: false, errno: Errno.EIO });
    expect(Date.now() - began).toBeGreaterThanOrEqual(295);
  });

  it('if the old daemon dies instead of answering, what it held fails with EIO', async () => {
    const { kernel } = env;
    await kernel.createTarget('sys', 8192);
    const old = await openChannel(env.runDir, 'sys');
    const read = outcome(kernel.read(fileOf(kernel, 'sys'), 0, 512, ctx));
    await old.next();
    const reload = kernel.reloadTarget('sys', { misc: 'sys-1' });
    await old.close();
    await reload;
    expect(await read).toMatchObject({ ok: false, errno: Errno.EIO });
  });

  it('refuses a misc name in use, a bad name, an unknown target, and a reload with both or neither', async () => {
    const { kernel } = env;
    await kernel.createTarget('a', 8192);
    await kernel.createTarget('b', 8192);
    await expect(kernel.reloadTarget('a', { misc: 'b' })).rejects.toThrow(/misc name "b" is in use by target "b"/);
    await expect(kernel.reloadTarget('a', { misc: '../x' })).rejects.toThrow(/invalid misc name/);
    await expect(kernel.reloadTarget('nope', { misc: 'n' })).rejects.toThrow(/no target named "nope"/);
    await expect(kernel.reloadTarget('a', {})).rejects.toThrow(/exactly one/);
    await kernel.reloadTarget('a', { misc: 'a-1' });
    await expect(kernel.createTarget('a-1', 8192)).rejects.toThrow(/misc name "a-1" is in use by target "a"/);
    // Back to the first name later: its endpoint is gone by then.
    await kernel.reloadTarget('a', { misc: 'a' });
    expect(kernel.targets().find((t) => t.name === 'a')).toMatchObject({ misc: 'a' });
  });
});

describe('kernel: linear targets', () => {
  let env: Awaited<ReturnType<typeof startKernel>>;
  let image: string;
  beforeEach(async () => {
    env = await startKernel({ daemon_timeout_ms: 2000 });
    image = path.join(env.runDir, 'image.bin');
    await fs.writeFile(image, patterned(64 * 1024, 3));
  });
  afterEach(() => env.stop());

  it('maps a file straight through: reads, writes, flush and discard, with no daemon and no endpoint', async () => {
    const { kernel } = env;
    const info = await kernel.createTarget('lin', undefined, image);
    expect(info).toMatchObject({ name: 'lin', kind: 'linear', file: image, sectors: 128 });
    await expect(fs.stat(path.join(env.runDir, 'dm-user', 'lin'))).rejects.toThrow(/ENOENT/);
    const file = fileOf(kernel, 'lin');
    expect((await kernel.read(file, 100, 1000, ctx)).equals(patterned(64 * 1024, 3).subarray(100, 1100))).toBe(true);
    await kernel.write(file, 4096, patterned(4096, 8), ctx);
    await kernel.flush(file, ctx);
    await kernel.discard(file, 8192, 4096, ctx);
    const onDisk = await fs.readFile(image);
    expect(onDisk.subarray(4096, 8192).equals(patterned(4096, 8))).toBe(true);
    expect(onDisk.subarray(8192, 12288).equals(Buffer.alloc(4096))).toBe(true);
  });

  it('a dm-user target reloaded onto the merged file keeps serving, queued IO included', async () => {
    const { kernel } = env;
    await kernel.createTarget('sys', 64 * 1024);
    const file = fileOf(kernel, 'sys');
    const queued = kernel.read(file, 0, 4096, ctx);
    await sleep(10);
    await kernel.reloadTarget('sys', { linear: image });
    expect((await queued).equals(patterned(64 * 1024, 3).subarray(0, 4096))).toBe(true);
    expect(kernel.targets()[0]).toMatchObject({ kind: 'linear', file: image });
    // And back onto a dm-user target, served by a daemon again.
    await kernel.reloadTarget('sys', { misc: 'sys-2' });
    const channel = await openChannel(env.runDir, 'sys-2');
    const store = patterned(64 * 1024, 5);
    void serveFromMemory(channel, store);
    expect((await kernel.read(file, 4096, 4096, ctx)).equals(store.subarray(4096, 8192))).toBe(true);
    await channel.close();
  });

  it('refuses a relative path, a missing file, and a file smaller than the target', async () => {
    const { kernel } = env;
    await expect(kernel.createTarget('x', undefined, 'image.bin')).rejects.toThrow(/not an absolute path/);
    await expect(kernel.createTarget('x', undefined, path.join(env.runDir, 'missing'))).rejects.toThrow(/cannot stat linear file/);
    await expect(kernel.createTarget('x', 128 * 1024, image)).rejects.toThrow(/smaller than the 131072-byte target/);
    await kernel.createTarget('y', 128 * 1024);
    await expect(kernel.reloadTarget('y', { linear: image })).rejects.toThrow(/smaller than the 131072-byte target/);
    expect(kernel.targets().find((t) => t.name === 'y')).toMatchObject({ kind: 'dm-user', misc: 'y' });
  });
});
