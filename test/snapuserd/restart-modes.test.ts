import { dmctl } from '../../src/ota/vab-processes';
import { Rng } from '../../src/ota/crashtest/rng';
import { Reader, World } from '../../src/ota/crashtest/world';

jest.setTimeout(120_000);

const MiB = 1024 * 1024;

/**
 * The three ways snapuserd can be restarted under IO (issue 8), with real processes: vab kernel,
 * vab snapuserd --no-socket over base + COW, and readers in child processes that compare every
 * block they read with the new image.
 */
describe('snapuserd restarts with IO in flight', () => {
  let world: World;
  let snap: { base: string; target: string; cow: string };
  let file: string;
  afterEach(async () => {
    await world?.dispose(false);
  });

  async function setUp(flags: { daemonTimeoutMs: number; restartGraceMs: number }): Promise<void> {
    world = await World.create('restart', new Rng(7));
    await world.startKernel(flags);
    snap = await world.makeSnapshot(8 * MiB);
    file = await world.createTarget('system', 8 * MiB);
  }

  const goodReads = (readers: Reader[]): number => readers.reduce((n, r) => n + r.goodReads, 0);

  it('Android mode (restart_grace_ms 0): a kill fails IO with EIO at once; a new daemon serves again', async () => {
    await setUp({ daemonTimeoutMs: 3000, restartGraceMs: 0 });
    const daemon = await world.startDaemon('system', snap);
    const readers = [0, 1].map(() => world.startReader(file, snap.target, { mode: 'random', count: 0, stopOnError: false }));
    await readers[0].waitForReads(32, 30_000);
    const killedAt = Date.now();
    daemon.signal('SIGKILL');
    for (const r of readers) await r.child.waitForLine(/^error /, 5_000);
    for (const r of readers) {
      const error = r.firstError()!;
      expect(error.code).toBe('EIO');
      expect(error.at - killedAt).toBeLessThan(1000);
    }
    await world.startDaemon('system', snap);
    const before = goodReads(readers);
    await readers[1].waitForReads(readers[1].goodReads + 64, 30_000);
    for (const r of readers) r.child.signal('SIGTERM');
    await Promise.all(readers.map((r) => r.child.exited));
    expect(goodReads(readers)).toBeGreaterThan(before);
    for (const r of readers) expect(r.mismatches()).toBe(0);
  });

  it('handoff: reload onto a new misc, stop the old daemon, start a new one: zero errors', async () => {
    await setUp({ daemonTimeoutMs: 4000, restartGraceMs: 0 });
    const old = await world.startDaemon('system', snap);
    const readers = [0, 1].map(() => world.startReader(file, snap.target, { mode: 'random', count: 600, stopOnError: true }));
    await readers[0].waitForReads(48, 30_000);
    await dmctl(world.run, ['reload', 'system', '--misc', 'system-2']);
    await old.stop('SIGTERM');
    await world.startDaemon('system-2', snap);
    await Promise.all(readers.map((r) => world.readerEnds(r, 60_000, 'after the handoff')));
    for (const r of readers) {
      expect(r.firstError()).toBeUndefined();
      expect(r.mismatches()).toBe(0);
      expect(r.goodReads).toBe(600);
    }
  });

  it('supervised (restart_grace_ms > 0): SIGKILL, then a new daemon within the grace: zero errors', async () => {
    await setUp({ daemonTimeoutMs: 3000, restartGraceMs: 8000 });
    const daemon = await world.startDaemon('system', snap);
    const readers = [0, 1].map(() => world.startReader(file, snap.target, { mode: 'random', count: 600, stopOnError: true }));
    await readers[0].waitForReads(48, 30_000);
    daemon.signal('SIGKILL');
    await daemon.exited;
    await world.startDaemon('system', snap);
    await Promise.all(readers.map((r) => world.readerEnds(r, 60_000, 'after the restart')));
    for (const r of readers) {
      expect(r.firstError()).toBeUndefined();
      expect(r.mismatches()).toBe(0);
      expect(r.goodReads).toBe(600);
    }
  });
});
