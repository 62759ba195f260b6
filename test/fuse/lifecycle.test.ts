import { promises as fsp } from 'fs';
import { forceUnmount } from '../../src/fuse/cleanup';
import { abortConnection, fuseMountsAt } from '../../src/fuse/mount';
import { run, start } from '../../src/util/exec';
import { startFuseServer } from './support/child';
import { isMounted, sh, within, Workspace } from './support/workspace';

/** Mount lifetimes: clean and busy unmounts, a killed server, an aborted connection, buffered mode. */
const MiB = 1024 * 1024;
const SLOW_MS = 30_000;

let ws: Workspace;
beforeAll(async () => {
  ws = await Workspace.create();
});
afterAll(async () => {
  await ws?.dispose();
});

async function serve(name: string, options: { directIo?: boolean; maxIo?: number } = {}) {
  const data = await ws.backing(`${name}-data`, 2 * MiB, { writable: true });
  const slow = await ws.backing(`${name}-slow`, 4096, { writable: false, readDelayMs: SLOW_MS });
  const mnt = await ws.mountpoint(name);
  const server = await startFuseServer({ mountpoint: mnt, files: [{ ...data.file, name: 'data' }, { ...slow.file, name: 'slow' }], ...options });
  ws.servers.push(server);
  return { server, mnt, data };
}

/** Starts a read of the slow file and waits until the server holds the request. */
async function readerStuckOnSlow(server: Awaited<ReturnType<typeof serve>>['server'], mnt: string) {
  const exited = run('dd', [`if=${mnt}/slow`, 'of=/dev/null', 'bs=4096', 'count=1', 'status=none'], { timeoutMs: 3 * SLOW_MS });
  await server.waitFor((e) => e.event === 'slow-read');
  return { exited };
}

describe('FUSE session lifetime', () => {
  it('reports the fusectl connection of its mount and unmounts cleanly', async () => {
    const { server, mnt } = await serve('clean');
    const ready = server.events[0];
    expect((await fuseMountsAt(mnt)).map((m) => m.minor)).toEqual([ready.connection]);
    expect((await sh(`ls ${mnt}`)).stdout.split('\n').filter(Boolean).sort()).toEqual(['data', 'slow']);
    expect(await server.stop()).toBe(0);
    expect(server.count('closed')).toBe(1);
    expect(await isMounted(mnt)).toBe(false);
  });

  it('unmounts a busy mount lazily and aborts it, so the server still exits', async () => {
    const { server, mnt } = await serve('busy');
    const holder = start('sh', ['-c', `exec 3<${mnt}/data; echo held; exec sleep 60`]);
    await holder.waitForLine('held');
    try {
      expect(await within(server.stop(), 20_000, 'hung')).toBe(0);
      expect(await isMounted(mnt)).toBe(false);
    } finally {
      await holder.stop('SIGKILL');
    }
  });

  it('leaves readers with an error, not a hang, when the server is killed; forceUnmount cleans up', async () => {
    const { server, mnt } = await serve('killed');
    const reader = await readerStuckOnSlow(server, mnt);
    server.child.signal('SIGKILL');
    const outcome = await within(reader.exited, 10_000, undefined);
    expect(outcome?.code).toBe(1);
    expect(outcome?.stderr).toMatch(/Software caused connection abort/);
    expect((await sh(`stat ${mnt}/data`)).stderr).toMatch(/Transport endpoint is not connected/);
    expect(await forceUnmount(mnt)).toBe(1);
    expect(await isMounted(mnt)).toBe(false);
  });

  it('lets a serving process exit without unmounting: the mount is left dead, not hung', async () => {
    const { server, mnt, data } = await serve('exited');
    // Served once, so the reader threads are surely blocked in read() when the process exits.
    expect((await sh(`cmp ${mnt}/data ${data.file.backing}`)).code).toBe(0);
    server.child.stdin.write('exit\n');
    expect(await within(server.exited, 10_000, 'hung')).toBe(3);
    expect((await sh(`stat ${mnt}/data`)).stderr).toMatch(/Transport endpoint is not connected/);
    expect(await forceUnmount(mnt)).toBe(1);
  });

  it('ends the session by itself when the connection is aborted from outside', async () => {
    const { server, mnt } = await serve('aborted');
    const reader = await readerStuckOnSlow(server, mnt);
    expect(await abortConnection(server.events[0].connection as number)).toBe(true);
    expect((await within(reader.exited, 10_000, undefined))?.stderr).toMatch(/Software caused connection abort/);
    expect(await within(server.exited, 10_000, 'hung')).toBe(0);
    expect(server.count('closed')).toBe(1);
    expect(await forceUnmount(mnt)).toBe(1);
  });

  it('serves buffered (page-cached) IO with directIo off and a smaller maxIo', async () => {
    const { server, mnt, data } = await serve('buffered', { directIo: false, maxIo: 128 * 1024 });
    expect(await fsp.readFile('/proc/mounts', 'utf8')).toMatch(new RegExp(`${mnt} fuse.vab \\S*max_read=131072`));
    expect((await sh(`cmp ${mnt}/data ${data.file.backing}`)).code).toBe(0);
    const dd = await sh(`dd if=/dev/zero of=${mnt}/data bs=64K count=3 seek=2 conv=notrunc,fsync status=none && cmp ${mnt}/data ${data.file.backing}`);
    expect(dd).toMatchObject({ code: 0, stderr: '' });
    const backing = await fsp.readFile(data.file.backing);
    expect(backing.subarray(128 * 1024, 320 * 1024).equals(Buffer.alloc(192 * 1024))).toBe(true);
    expect(server.count('flush')).toBeGreaterThan(0);
    expect(await server.stop()).toBe(0);
  });
});
