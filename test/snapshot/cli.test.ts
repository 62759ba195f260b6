import { promises as fs } from 'node:fs';
import path from 'node:path';
import { inspectCow } from '../../src/cow';
import { DeviceLayout, emptySnapshotStatus, encodeSnapshotStatus, SnapshotManager, UpdateState } from '../../src/snapshot';
import { vab as cli } from '../support/cli';
import { DaemonDouble } from './support/daemon';
import { tempDevice, writeImageAndCow } from './support/device';

const dirs: string[] = [];

/** `vab status` through the package's bin entry, as a user runs it. */
function vab(...args: string[]) {
  return cli(args);
}

async function json(dir: string) {
  const r = await vab('status', '--device', dir, '--json');
  expect(r.stderr).toBe('');
  return { code: r.code, report: JSON.parse(r.stdout) };
}

async function device(): Promise<string> {
  const dir = await tempDevice();
  dirs.push(dir);
  return dir;
}

afterAll(async () => {
  for (const dir of dirs) await fs.rm(dir, { recursive: true, force: true });
});

describe('vab status', () => {
  it('a device with no metadata is none', async () => {
    const dir = await device();
    const { code, report } = await json(dir);
    expect(code).toBe(0);
    expect(report).toEqual({ device: dir, state: 'none', merge_phase: 'none', merge_failure_code: null, source_build_fingerprint: '', merge_percent: null, snapshots: [] });
    expect((await vab('status', '--device', dir)).stdout).toBe('update state: none\n');
  });

  it('follows an update through initiated, unverified, merging (with COW progress) and merge-failed', async () => {
    const dir = await device();
    const layout = new DeviceLayout(dir);
    const daemon = new DaemonDouble(100).serve('system', 'vendor');
    const manager = new SnapshotManager({ device: dir, daemon, buildFingerprint: 'vab/old:7' });
    await manager.beginUpdate();
    expect((await json(dir)).report.state).toBe('initiated');

    await manager.createUpdateSnapshots([
      { name: 'system', deviceSize: 32 * 4096, oldPartitionSize: 32 * 4096, compressionAlgorithm: 'none' },
      { name: 'vendor', deviceSize: 16 * 4096, oldPartitionSize: 24 * 4096, compressionAlgorithm: 'none' },
    ]);
    let { report } = await json(dir);
    expect(report.snapshots.map((s: { name: string; state: string; cow: unknown }) => [s.name, s.state, s.cow])).toEqual([['system', 'CREATED', null], ['vendor', 'CREATED', null]]);

    await writeImageAndCow(dir, 'system', 32, 5);
    await writeImageAndCow(dir, 'vendor', 16, 6);
    await manager.finishedSnapshotWrites();
    ({ report } = await json(dir));
    expect(report.state).toBe('unverified');
    const ops = (await inspectCow(layout.cow('system'))).opCounts!.total;
    expect(ops).toBeGreaterThan(0);
    expect(report.snapshots[0]).toEqual({
      name: 'system', state: 'CREATED', device_size: 32 * 4096, old_partition_size: 32 * 4096, compression: 'none', merge_phase: 'second',
      cow: { path: layout.cow('system'), size: (await fs.stat(layout.cow('system'))).size, version: '3.0', ops, merged_ops: 0 },
      merge_percent: 0,
    });
    expect(report.snapshots[1].merge_phase).toBe('first'); // vendor shrank

    await manager.initiateMerge();
    // The daemon's merge commits num_merge_ops in the COW header (offset 26, u64 LE).
    const cow = await fs.open(layout.cow('system'), 'r+');
    const merged = Buffer.alloc(8);
    merged.writeBigUInt64LE(BigInt(Math.floor(ops / 2)));
    await cow.write(merged, 0, 8, 26);
    await cow.close();
    ({ report } = await json(dir));
    expect(report).toMatchObject({ state: 'merging', merge_phase: 'first', source_build_fingerprint: 'vab/old:7' });
    expect(report.snapshots[0].cow.merged_ops).toBe(Math.floor(ops / 2));
    expect(report.snapshots[0].merge_percent).toBeCloseTo((Math.floor(ops / 2) * 100) / ops, 6);
    expect(report.snapshots[1].state).toBe('MERGING');
    const text = (await vab('status', '--device', dir)).stdout;
    expect(text).toContain('update state: merging');
    expect(text).toContain(`${Math.floor(ops / 2)}/${ops} ops merged`);

    daemon.fail('vendor');
    await manager.checkMergeState().then(async (r) => {
      expect(r.state).toBe(UpdateState.MergeFailed);
      await manager.processUpdateState(); // acknowledges the failure
    });
    ({ report } = await json(dir));
    expect(report).toMatchObject({ state: 'merge-failed', merge_failure_code: 'UnknownTargetType' });
  });

  it('reports a corrupt or mismatched status per partition and exits 1', async () => {
    const dir = await device();
    const layout = new DeviceLayout(dir);
    await fs.mkdir(layout.snapshotsDir, { recursive: true });
    await fs.writeFile(layout.snapshotStatus('system'), await encodeSnapshotStatus({ ...emptySnapshotStatus('odm'), state: 1 }));
    await fs.writeFile(layout.snapshotStatus('vendor'), Buffer.from([0xff, 0xff]));
    const { code, report } = await json(dir);
    expect(code).toBe(1);
    expect(report.snapshots[0].error).toMatch(/snapshots\/system: status names partition "odm".*\[ECORRUPT\]/);
    expect(report.snapshots[1].error).toMatch(/snapshots\/vendor.*\[ECORRUPT\]/);
    const text = await vab('status', '--device', dir);
    expect(text.code).toBe(1);
    expect(text.stdout).toContain('error:');

    await fs.writeFile(path.join(layout.snapshotsDir, 'no way'), '');
    const bad = await vab('status', '--device', dir);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/vab: .*snapshots\/no way: status file name "no way" is not a partition name: .*may only hold.*\[ECORRUPT\]/);
  });
});
