import { promises as fs } from 'node:fs';
import { DeviceLayout } from '../../snapshot/layout';
import { SnapshotState, UpdateState, updateStateText } from '../../snapshot/proto';
import { SnapshotStore } from '../../snapshot/store';
import { VabError, errnoCode } from '../../util/errors';
import { partitionNameProblem } from '../../util/names';

/** How one partition is mapped at boot. */
export type BootTarget =
  | { kind: 'linear'; name: string; image: string; size: number }
  | { kind: 'snapshot'; name: string; image: string; cow: string; size: number; merging: boolean };

export interface BootPlan {
  device: string;
  state: UpdateState;
  targets: BootTarget[];
}

/** Update states in which the device runs from its snapshots (libsnapshot's "snapshots in use"). */
const SNAPSHOT_STATES = new Set([UpdateState.Unverified, UpdateState.Merging, UpdateState.MergeNeedsReboot, UpdateState.MergeFailed]);

/**
 * Which block files a boot creates, from the device directory alone: every `super/<p>.img` is a
 * partition. When the update is written (Unverified) or merging, a partition with a snapshot
 * status is served by snapuserd from base + COW, at the size the update gives it; the others, and
 * every partition in any other state (no update, or one still being written), map their image
 * straight through, as dm-linear does. A snapshot whose merge completed maps its base too.
 */
export async function planBoot(device: string): Promise<BootPlan> {
  const layout = new DeviceLayout(device);
  const store = new SnapshotStore(layout);
  const update = await store.readUpdateStatus();
  const names = await listPartitions(layout);
  if (names.length === 0) throw new VabError('ENOTFOUND', `no partition images in ${layout.superDir}`, { file: layout.superDir });
  const snapshotted = SNAPSHOT_STATES.has(update.state) ? new Set(await store.listSnapshots()) : new Set<string>();
  const targets: BootTarget[] = [];
  for (const name of names) {
    const image = layout.image(name);
    const imageSize = (await fs.stat(image)).size;
    if (!snapshotted.has(name)) {
      targets.push({ kind: 'linear', name, image, size: imageSize });
      continue;
    }
    const status = await store.readSnapshotStatus(name);
    if (status.state === SnapshotState.MERGE_COMPLETED) {
      targets.push({ kind: 'linear', name, image, size: Math.min(imageSize, status.device_size || imageSize) });
      continue;
    }
    if (status.device_size <= 0 || status.device_size % 512 !== 0) {
      throw new VabError('ECORRUPT', `snapshot status of ${name} gives device size ${status.device_size}, not a positive multiple of 512`, { file: layout.snapshotStatus(name) });
    }
    if (status.device_size > imageSize) {
      // vab apply grows the base before it writes a COW for a larger partition.
      throw new VabError('ECORRUPT', `partition ${name}: the snapshot is ${status.device_size} bytes but its base image is only ${imageSize}`, { file: image });
    }
    targets.push({ kind: 'snapshot', name, image, cow: layout.cow(name), size: status.device_size, merging: status.state === SnapshotState.MERGING });
  }
  for (const name of snapshotted) {
    if (!names.includes(name)) throw new VabError('ECORRUPT', `a snapshot status exists for ${name} but super/${name}.img does not`, { file: layout.snapshotStatus(name) });
  }
  return { device: layout.root, state: update.state, targets };
}

export function describePlan(plan: BootPlan): string {
  const snapshots = plan.targets.filter((t) => t.kind === 'snapshot').length;
  return `update state ${updateStateText(plan.state)}: ${plan.targets.length} partitions, ${snapshots} from snapshots`;
}

async function listPartitions(layout: DeviceLayout): Promise<string[]> {
  let entries: string[];
  try {
    entries = await fs.readdir(layout.superDir);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') throw new VabError('ENOTFOUND', `${layout.root} is not a device directory: it has no super/`, { file: layout.superDir });
    throw err;
  }
  return entries
    .filter((e) => e.endsWith('.img') && !e.startsWith('.'))
    .map((e) => e.slice(0, -4))
    .filter((name) => partitionNameProblem(name) === undefined)
    .sort();
}
