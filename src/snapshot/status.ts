import { promises as fs } from 'node:fs';
import { COW_HEADER_V3_SIZE } from '../cow/format';
import { decodeHeader } from '../cow/header';
import { CowReader } from '../cow/reader';
import { errnoCode, isVabError, VabError } from '../util/errors';
import { DeviceLayout } from './layout';
import { decideMergePhase } from './merge-state';
import { mergeFailureText, MergePhase, SnapshotState, snapshotStateText, UpdateState, updateStateText } from './proto';
import { SnapshotStore } from './store';

/** One snapshotted partition in `vab status` (shape documented in docs/snapshot.md). */
export interface SnapshotReport {
  name: string;
  /** SnapshotState's name: CREATED, MERGING, MERGE_COMPLETED. */
  state: string;
  device_size: number;
  old_partition_size: number;
  compression: string;
  merge_phase: 'first' | 'second';
  cow: { path: string; size: number; version: string; ops: number; merged_ops: number } | null;
  /** merged ops × 100 / ops, as snapuserd computes it; null without a COW. */
  merge_percent: number | null;
  /** Why the status or COW could not be read. */
  error?: string;
}

export interface DeviceStatusReport {
  device: string;
  /** The update state in libsnapshot's text form (none, initiated, unverified, merging, ...). */
  state: string;
  merge_phase: 'none' | 'first' | 'second';
  merge_failure_code: string | null;
  source_build_fingerprint: string;
  /** The mean of the partitions' merge percents (snapuserd's merge_percent formula). */
  merge_percent: number | null;
  snapshots: SnapshotReport[];
}

const PHASE_TEXT = { [MergePhase.NO_MERGE]: 'none', [MergePhase.FIRST_PHASE]: 'first', [MergePhase.SECOND_PHASE]: 'second' } as const;

/**
 * Reads the device's update state without the lock: status must work while another command
 * changes state, and every file it reads is replaced atomically. A device with no metadata is
 * `none`. A status or COW that cannot be read is reported in that partition's `error`.
 */
export async function readDeviceStatus(device: string): Promise<DeviceStatusReport> {
  const layout = new DeviceLayout(device);
  const store = new SnapshotStore(layout);
  const update = await store.readUpdateStatus();
  const snapshots: SnapshotReport[] = [];
  for (const name of await store.listSnapshots()) snapshots.push(await snapshotReport(store, name));
  const percents = snapshots.map((s) => s.merge_percent).filter((p): p is number => p !== null);
  return {
    device: layout.root,
    state: updateStateText(update.state),
    merge_phase: PHASE_TEXT[update.merge_phase],
    merge_failure_code: update.state === UpdateState.MergeFailed ? mergeFailureText(update.merge_failure_code) : null,
    source_build_fingerprint: update.source_build_fingerprint,
    merge_percent: percents.length > 0 ? percents.reduce((a, b) => a + b, 0) / percents.length : null,
    snapshots,
  };
}

async function snapshotReport(store: SnapshotStore, name: string): Promise<SnapshotReport> {
  const report: SnapshotReport = { name, state: 'unknown', device_size: 0, old_partition_size: 0, compression: '', merge_phase: 'second', cow: null, merge_percent: null };
  try {
    const status = await store.readSnapshotStatus(name);
    Object.assign(report, {
      state: snapshotStateText(status.state),
      device_size: status.device_size,
      old_partition_size: status.old_partition_size,
      compression: status.compression_algorithm,
      merge_phase: decideMergePhase(status) === MergePhase.FIRST_PHASE ? 'first' : 'second',
    });
    report.cow = await cowProgress(store.layout.cow(name));
    if (report.cow) {
      const { ops, merged_ops } = report.cow;
      report.merge_percent = ops > 0 ? (merged_ops * 100) / ops : status.state === SnapshotState.MERGE_COMPLETED ? 100 : 0;
    }
  } catch (err) {
    if (!isVabError(err)) throw err;
    report.error = `${err.message} [${err.code}]`;
  }
  return report;
}

/** Op counts from the COW header (v3); a v2 COW keeps its count in the op stream, so it is parsed. */
async function cowProgress(file: string): Promise<SnapshotReport['cow']> {
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(file, 'r');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return null;
    throw new VabError('EIO', `cannot open: ${(err as Error).message}`, { file, cause: err });
  }
  let size: number;
  let head: Buffer;
  try {
    size = (await handle.stat()).size;
    head = Buffer.alloc(Math.min(size, COW_HEADER_V3_SIZE));
    await handle.read(head, 0, head.length, 0);
  } finally {
    await handle.close();
  }
  const header = decodeHeader(head, { file });
  let ops = header.opCount;
  if (header.majorVersion < 3) {
    const reader = await CowReader.open(file);
    ops = reader.ops.count;
    await reader.close();
  }
  return { path: file, size, version: `${header.majorVersion}.${header.minorVersion}`, ops, merged_ops: header.numMergeOps };
}
