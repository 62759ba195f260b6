import { promises as fs } from 'node:fs';
import {
  DeviceLayout,
  MergeFailureCode,
  MergePhase,
  PartitionSnapshot,
  SnapshotManager,
  SnapshotState,
  SnapshotStore,
  UpdateState,
} from '../../src/snapshot';
import { DaemonDouble } from './support/daemon';
import { snapshotTree, tempDevice, writeImageAndCow } from './support/device';

const BLOCKS = 32;
const dirs: string[] = [];

afterAll(async () => {
  for (const dir of dirs) await fs.rm(dir, { recursive: true, force: true });
});

async function device(): Promise<{ dir: string; layout: DeviceLayout; store: SnapshotStore }> {
  const dir = await tempDevice();
  dirs.push(dir);
  const layout = new DeviceLayout(dir);
  return { dir, layout, store: new SnapshotStore(layout) };
}

const parts = (shrunk = false): PartitionSnapshot[] => [
  { name: 'vendor', deviceSize: BLOCKS * 4096, oldPartitionSize: shrunk ? 2 * BLOCKS * 4096 : BLOCKS * 4096, compressionAlgorithm: 'none' },
  { name: 'system', deviceSize: BLOCKS * 4096, oldPartitionSize: BLOCKS * 4096, compressionAlgorithm: 'lz4', compressionFactor: 65536 },
];

/** A device in Unverified: begun, snapshots created, COWs written, writes finished. */
async function unverified(manager: SnapshotManager, dir: string, shrunk = false): Promise<void> {
  await manager.beginUpdate();
  await manager.createUpdateSnapshots(parts(shrunk));
  await writeImageAndCow(dir, 'vendor', BLOCKS, 1);
  await writeImageAndCow(dir, 'system', BLOCKS, 2);
  await manager.finishedSnapshotWrites();
}

describe('SnapshotManager: update states', () => {
  it('walks None → Initiated → (snapshots CREATED) → Unverified, recording what Android records', async () => {
    const { dir, layout, store } = await device();
    const manager = new SnapshotManager({ device: dir, buildFingerprint: 'vab/old:1' });
    expect(await manager.updateState()).toBe(UpdateState.None);

    await manager.beginUpdate();
    let update = await store.readUpdateStatus();
    expect(update.state).toBe(UpdateState.Initiated);
    expect(update.source_build_fingerprint).toBe('vab/old:1');

    const statuses = await manager.createUpdateSnapshots(parts());
    expect(statuses.map((s) => s.name)).toEqual(['vendor', 'system']);
    expect(await store.listSnapshots()).toEqual(['system', 'vendor']); // system first, as libsnapshot lists
    const system = await store.readSnapshotStatus('system');
    expect(system).toMatchObject({ state: SnapshotState.CREATED, device_size: BLOCKS * 4096, snapshot_size: BLOCKS * 4096, using_snapuserd: true, compression_algorithm: 'lz4', compression_factor: 65536, read_ahead_size: 32 });
    update = await store.readUpdateStatus();
    expect(update).toMatchObject({ state: UpdateState.Initiated, using_snapuserd: true, userspace_snapshots: true, source_build_fingerprint: 'vab/old:1' });

    await writeImageAndCow(dir, 'vendor', BLOCKS, 1);
    await writeImageAndCow(dir, 'system', BLOCKS, 2);
    await fs.writeFile(layout.rollbackIndicator, '1');
    await manager.finishedSnapshotWrites();
    update = await store.readUpdateStatus();
    expect(update).toMatchObject({ state: UpdateState.Unverified, using_snapuserd: true, source_build_fingerprint: 'vab/old:1' });
    expect(await fs.readFile(layout.bootIndicator, 'utf8')).toBe('_a');
    await expect(fs.access(layout.rollbackIndicator)).rejects.toThrow();

    // Android: a second call in Unverified is a no-op.
    const before = await snapshotTree(dir);
    await manager.finishedSnapshotWrites();
    expect(await snapshotTree(dir)).toEqual(before);
  });

  it('refuses each call outside the state it requires with ESTATE, changing nothing', async () => {
    const { dir } = await device();
    const daemon = new DaemonDouble().serve('vendor', 'system');
    const manager = new SnapshotManager({ device: dir, daemon });
    const unchanged = async (call: () => Promise<unknown>, message: RegExp) => {
      const before = await snapshotTree(dir);
      await expect(call()).rejects.toMatchObject({ code: 'ESTATE', message: expect.stringMatching(message) });
      expect(await snapshotTree(dir)).toEqual(before);
    };
    await unchanged(() => manager.createUpdateSnapshots(parts()), /update is none, it must be initiated/);
    await unchanged(() => manager.finishedSnapshotWrites(), /update is none, it must be initiated/);
    await unchanged(() => manager.initiateMerge(), /update is none, it must be unverified/);

    await manager.beginUpdate();
    await manager.createUpdateSnapshots(parts());
    await unchanged(() => manager.initiateMerge(), /update is initiated, it must be unverified/);
    // A partition whose COW was never written: the writes are not finished.
    await writeImageAndCow(dir, 'system', BLOCKS, 2);
    await unchanged(() => manager.finishedSnapshotWrites(), /vendor\.cow cannot be opened/);
    await writeImageAndCow(dir, 'vendor', BLOCKS, 1);
    await manager.finishedSnapshotWrites();
    await unchanged(() => manager.createUpdateSnapshots(parts()), /update is unverified, it must be initiated/);

    await manager.initiateMerge();
    await unchanged(() => manager.cancelUpdate(), /update is merging; a merge cannot be undone/);
    // Without a daemon to finish the merge, a new update cannot begin.
    await unchanged(() => new SnapshotManager({ device: dir }).beginUpdate(), /update is merging/);
    await unchanged(() => manager.finishedSnapshotWrites(), /update is merging, it must be initiated/);
  });

  it('refuses bad partition lists before touching anything', async () => {
    const { dir } = await device();
    const manager = new SnapshotManager({ device: dir });
    await manager.beginUpdate();
    const before = await snapshotTree(dir);
    for (const name of ['..', 'a/b', '', '/etc/passwd', 'nul\0', '.hidden', 'x'.repeat(37)]) {
      await expect(manager.createUpdateSnapshots([{ name, deviceSize: 4096, oldPartitionSize: 0 }])).rejects.toMatchObject({ code: 'EINVAL_INPUT' });
    }
    await expect(manager.createUpdateSnapshots([...parts(), parts()[0]])).rejects.toMatchObject({ code: 'EINVAL_INPUT', message: expect.stringContaining('listed twice') });
    await expect(manager.createUpdateSnapshots([{ name: 'odd', deviceSize: 1000, oldPartitionSize: 0 }])).rejects.toMatchObject({ code: 'EINVAL_INPUT' });
    expect(await snapshotTree(dir)).toEqual(before);
  });

  it('createUpdateSnapshots again replaces an earlier attempt, dropping partitions no longer listed', async () => {
    const { dir, layout, store } = await device();
    const manager = new SnapshotManager({ device: dir });
    await manager.beginUpdate();
    await manager.createUpdateSnapshots([...parts(), { name: 'odm', deviceSize: 4096, oldPartitionSize: 4096 }]);
    await fs.mkdir(layout.cowDir, { recursive: true });
    await fs.writeFile(layout.cow('odm'), 'stale');
    await manager.createUpdateSnapshots(parts());
    expect(await store.listSnapshots()).toEqual(['system', 'vendor']);
    await expect(fs.access(layout.cow('odm'))).rejects.toThrow();
  });
});

describe('SnapshotManager: merge', () => {
  it('initiates, polls getstatus until complete, cleans up and ends in None', async () => {
    const { dir, layout, store } = await device();
    const daemon = new DaemonDouble(3).serve('vendor', 'system');
    const completed: string[] = [];
    const manager = new SnapshotManager({ device: dir, daemon, pollIntervalMs: 1, onMergeComplete: async (p) => void completed.push(p) });
    await unverified(manager, dir);

    expect(await manager.initiateMerge()).toEqual({ state: UpdateState.Merging, failureCode: MergeFailureCode.Ok });
    expect(await store.readUpdateStatus()).toMatchObject({ state: UpdateState.Merging, merge_phase: MergePhase.SECOND_PHASE });
    for (const name of ['system', 'vendor']) expect((await store.readSnapshotStatus(name)).state).toBe(SnapshotState.MERGING);
    expect(daemon.sent.filter((c) => c.startsWith('initiate_merge'))).toEqual(['initiate_merge,system', 'initiate_merge,vendor']);

    const polls: UpdateState[] = [];
    const end = await manager.processUpdateState({ onPoll: (r) => polls.push(r.state) });
    expect(end.state).toBe(UpdateState.MergeCompleted);
    expect(polls.slice(0, -1).every((s) => s === UpdateState.Merging)).toBe(true);
    expect(completed.sort()).toEqual(['system', 'vendor']);
    expect(await store.readUpdateStatus()).toMatchObject({ state: UpdateState.None, merge_phase: MergePhase.NO_MERGE, source_build_fingerprint: '' });
    expect(await store.listSnapshots()).toEqual([]);
    expect(await fs.readdir(layout.cowDir)).toEqual([]);
    await expect(fs.access(layout.bootIndicator)).rejects.toThrow();
  });

  it('resumes a merge the restarted daemon reports as `snapshot`', async () => {
    const { dir, store } = await device();
    const daemon = new DaemonDouble(5).serve('vendor', 'system');
    const manager = new SnapshotManager({ device: dir, daemon, pollIntervalMs: 1 });
    await unverified(manager, dir);
    await manager.initiateMerge();
    daemon.restart();
    daemon.sent.length = 0;
    expect((await manager.checkMergeState()).state).toBe(UpdateState.Merging);
    expect(daemon.sent).toEqual(['getstatus,system', 'initiate_merge,system', 'getstatus,vendor', 'initiate_merge,vendor']);
    expect((await manager.processUpdateState()).state).toBe(UpdateState.MergeCompleted);
    expect((await store.readUpdateStatus()).state).toBe(UpdateState.None);
  });

  it('merges partitions that shrank first, then switches the rest (two phases)', async () => {
    const { dir, store } = await device();
    const daemon = new DaemonDouble(1).serve('vendor', 'system');
    const manager = new SnapshotManager({ device: dir, daemon, pollIntervalMs: 1 });
    await unverified(manager, dir, true);
    await manager.initiateMerge();
    expect((await store.readUpdateStatus()).merge_phase).toBe(MergePhase.FIRST_PHASE);
    expect(daemon.sent.filter((c) => c.startsWith('initiate_merge'))).toEqual(['initiate_merge,vendor']);
    expect((await store.readSnapshotStatus('system')).state).toBe(SnapshotState.CREATED);

    expect((await manager.checkMergeState()).state).toBe(UpdateState.Merging); // vendor still merging, system waits
    expect((await manager.checkMergeState()).state).toBe(UpdateState.Merging); // vendor done: second phase
    expect((await store.readUpdateStatus()).merge_phase).toBe(MergePhase.SECOND_PHASE);
    expect(await store.listSnapshots()).toEqual(['system']);
    expect(daemon.sent.filter((c) => c.startsWith('initiate_merge'))).toEqual(['initiate_merge,vendor', 'initiate_merge,system']);
    expect((await manager.processUpdateState()).state).toBe(UpdateState.MergeCompleted);
  });

  it('records a failed merge with its code; cancel is then refused, and a restarted daemon retries', async () => {
    const { dir, store } = await device();
    const daemon = new DaemonDouble(2).serve('vendor', 'system');
    const manager = new SnapshotManager({ device: dir, daemon, pollIntervalMs: 1 });
    await unverified(manager, dir);
    await manager.initiateMerge();
    daemon.fail('vendor');
    expect(await manager.processUpdateState()).toEqual({ state: UpdateState.MergeFailed, failureCode: MergeFailureCode.UnknownTargetType });
    expect(await store.readUpdateStatus()).toMatchObject({ state: UpdateState.MergeFailed, merge_failure_code: MergeFailureCode.UnknownTargetType });
    await expect(manager.cancelUpdate()).rejects.toMatchObject({ code: 'ESTATE', message: expect.stringContaining('merge-failed') });

    daemon.serve('vendor'); // a new daemon: the handler answers `snapshot`, the status says MERGING
    expect((await manager.processUpdateState()).state).toBe(UpdateState.MergeCompleted);
    expect((await store.readUpdateStatus()).state).toBe(UpdateState.None);
  });

  it('an unreachable daemon is a QuerySnapshotStatus failure; a cleanup that fails is MergeNeedsReboot', async () => {
    const { dir, store } = await device();
    const daemon = new DaemonDouble(1).serve('vendor', 'system');
    let cleanupWorks = false;
    const manager = new SnapshotManager({
      device: dir, daemon, pollIntervalMs: 1,
      onMergeComplete: async (p) => {
        if (!cleanupWorks) throw new Error(`cannot switch ${p} to linear`);
      },
    });
    await unverified(manager, dir);
    await manager.initiateMerge();
    daemon.down = true;
    expect(await manager.checkMergeState()).toEqual({ state: UpdateState.MergeFailed, failureCode: MergeFailureCode.QuerySnapshotStatus });
    daemon.down = false;
    expect((await manager.checkMergeState()).state).toBe(UpdateState.Merging);
    expect((await manager.checkMergeState()).state).toBe(UpdateState.MergeNeedsReboot);
    expect((await store.readUpdateStatus()).state).toBe(UpdateState.MergeNeedsReboot);
    expect((await store.readSnapshotStatus('system')).state).toBe(SnapshotState.MERGE_COMPLETED);
    cleanupWorks = true;
    expect((await manager.processUpdateState()).state).toBe(UpdateState.MergeCompleted);
  });

  it('initiateMerge needs every snapshot served by the daemon', async () => {
    const { dir } = await device();
    const manager = new SnapshotManager({ device: dir });
    await unverified(manager, dir);
    await expect(manager.initiateMerge()).rejects.toMatchObject({ code: 'ESTATE', message: expect.stringContaining('no snapuserd') });
    const partial = new SnapshotManager({ device: dir, daemon: new DaemonDouble().serve('system') });
    const before = await snapshotTree(dir);
    await expect(partial.initiateMerge()).rejects.toMatchObject({ code: 'ESTATE', message: expect.stringContaining('vendor is not served') });
    expect(await snapshotTree(dir)).toEqual(before);
  });
});

describe('SnapshotManager: cancel', () => {
  it('removes COWs, statuses and indicators before boot; keeps the base images', async () => {
    const { dir, layout, store } = await device();
    const manager = new SnapshotManager({ device: dir });
    await unverified(manager, dir);
    const image = await fs.readFile(layout.image('system'));
    await manager.cancelUpdate();
    expect((await store.readUpdateStatus()).state).toBe(UpdateState.None);
    expect(await store.listSnapshots()).toEqual([]);
    expect(await fs.readdir(layout.cowDir)).toEqual([]);
    await expect(fs.access(layout.bootIndicator)).rejects.toThrow();
    expect(await fs.readFile(layout.image('system'))).toEqual(image);
  });

  it('is refused while the daemon serves the snapshots (booted), allowed once it does not', async () => {
    const { dir, store } = await device();
    const daemon = new DaemonDouble().serve('vendor', 'system');
    const manager = new SnapshotManager({ device: dir, daemon });
    await unverified(manager, dir);
    await expect(manager.cancelUpdate()).rejects.toMatchObject({ code: 'ESTATE', message: expect.stringContaining('running from its snapshots') });
    expect((await store.readUpdateStatus()).state).toBe(UpdateState.Unverified);
    daemon.down = true;
    await manager.cancelUpdate();
    expect((await store.readUpdateStatus()).state).toBe(UpdateState.None);
  });

  it('beginUpdate cancels an unfinished update and starts a new one', async () => {
    const { dir, store } = await device();
    const manager = new SnapshotManager({ device: dir });
    await manager.beginUpdate();
    await manager.createUpdateSnapshots(parts());
    await manager.beginUpdate();
    expect((await store.readUpdateStatus()).state).toBe(UpdateState.Initiated);
    expect(await store.listSnapshots()).toEqual([]);
  });

  it('beginUpdate finishes a running merge first when it can reach the daemon', async () => {
    const { dir, store } = await device();
    const daemon = new DaemonDouble(2).serve('vendor', 'system');
    const manager = new SnapshotManager({ device: dir, daemon, pollIntervalMs: 1 });
    await unverified(manager, dir);
    await manager.initiateMerge();
    await manager.beginUpdate();
    expect((await store.readUpdateStatus()).state).toBe(UpdateState.Initiated);
    expect(daemon.handlers.get('system')!.complete).toBe(true);
  });
});
