import { promises as fs } from 'node:fs';
import { Rng } from '../../src/ota/crashtest/rng';
import { World } from '../../src/ota/crashtest/world';

jest.setTimeout(240_000);

const MiB = 1024 * 1024;

/**
 * Real processes over FUSE: a 64 MiB merge in `vab snapuserd`, SIGKILLed at random moments again
 * and again; each time a new daemon gets init, start and initiate_merge (as libsnapshot does after
 * a reboot), while readers in child processes compare random blocks with the new image.
 */
describe('merge survives SIGKILL of the daemon', () => {
  let world: World;
  afterAll(async () => {
    await world?.dispose(false);
  });

  it('at least 10 kills: the merge completes, base == new, and no reader sees a wrong byte', async () => {
    const rng = new Rng(20261129);
    world = await World.create('merge-kill', rng);
    await world.startKernel({ daemonTimeoutMs: 10_000, restartGraceMs: 10_000 });
    const snap = await world.makeSnapshot(64 * MiB);
    const file = await world.createTarget('system', 64 * MiB);
    const attach = async (): Promise<void> => {
      await world.startSocketDaemon();
      expect(await world.snapctl(`init,system,${snap.cow},${snap.base},${snap.base}`)).toBe(`success,${(64 * MiB) / 512}`);
      expect(await world.snapctl('start,system')).toBe('success');
    };
    await attach();
    const readers = [0, 1].map(() => world.startReader(file, snap.target, { mode: 'random', count: 0, stopOnError: false }));
    let kills = 0;
    let percent = 0;
    while (kills < 10 || percent < 100) {
      expect(await world.snapctl('initiate_merge,system')).toBe('success');
      if (kills >= 10) break;
      await new Promise((resolve) => setTimeout(resolve, rng.int(20, 250)));
      percent = Number.parseFloat(await world.snapctl('merge_percent'));
      const daemon = world.children.filter((c) => c.label === 'vab snapuserd').pop()!;
      daemon.signal('SIGKILL');
      await daemon.exited;
      kills++;
      await attach();
    }
    for (;;) {
      const status = await world.snapctl('getstatus,system');
      if (status === 'snapshot-merge-complete') break;
      expect(status).toBe('snapshot-merge');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(kills).toBeGreaterThanOrEqual(10);
    await readers[0].waitForReads(readers[0].goodReads + 32, 30_000);
    for (const r of readers) r.child.signal('SIGTERM');
    await Promise.all(readers.map((r) => r.child.exited));
    for (const r of readers) {
      expect(r.mismatches()).toBe(0);
      expect(r.goodReads).toBeGreaterThan(0);
    }
    expect((await fs.readFile(snap.base)).equals(await fs.readFile(snap.target))).toBe(true);
  });
});
