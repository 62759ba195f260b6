import path from 'node:path';
import { SnapshotStore } from '../snapshot/store';
import { DeviceLayout } from '../snapshot/layout';
import { UpdateState, updateStateText } from '../snapshot/proto';
import { VabError } from '../util/errors';
import type { Logger } from '../util/log';
import { readBootRecord } from './boot/record';
import { readPostinstallConfig } from './postinstall-config';
import { PartitionResult, PostinstallPartition, runPostinstall } from './postinstall';
import type { PostinstallEvent } from './postinstall-progress';

export interface DevicePostinstallOptions {
  device: string;
  /** Where the booted device's block files are (vab boot --mount). */
  mount: string;
  /** vab boot's run directory; post-install mount points go under <run>/postinstall. */
  run: string;
  timeoutMs: number;
  onProgress?: (event: PostinstallEvent) => void;
  signal?: AbortSignal;
  logger?: Logger;
}

/** vab has no slots: the updated partitions play slot 1 (`_b`), the base images slot 0. */
const TARGET_SLOT = 1;

/**
 * `vab postinstall`: update_engine's post-install step on a booted device. The partitions whose
 * manifest asked for it (recorded by `vab apply`) run their program from the block files of the
 * running `vab boot`, so every read goes through the daemon. A failure leaves the update
 * Unverified: nothing is written, and the step can be run again.
 */
export async function runDevicePostinstall(options: DevicePostinstallOptions): Promise<PartitionResult[]> {
  const layout = new DeviceLayout(options.device);
  const update = await new SnapshotStore(layout).readUpdateStatus();
  if (update.state !== UpdateState.Unverified) {
    throw new VabError('ESTATE', `post-install runs on a written, unmerged update (unverified); this one is ${updateStateText(update.state)}`);
  }
  const record = await readBootRecord(options.run);
  if (path.resolve(record.device) !== layout.root) throw new VabError('EINVAL_INPUT', `the device booted on ${options.run} is ${record.device}, not ${layout.root}`);
  if (path.resolve(record.mount) !== path.resolve(options.mount)) throw new VabError('EINVAL_INPUT', `vab boot on ${options.run} serves its block files in ${record.mount}, not ${options.mount}`);
  const config = await readPostinstallConfig(layout);
  const partitions: PostinstallPartition[] = [];
  for (const entry of config) {
    const target = record.targets.find((t) => t.name === entry.name);
    if (!target) throw new VabError('ESTATE', `partition ${entry.name} has a post-install program but vab boot did not map it`);
    partitions.push({ name: entry.name, blockFile: target.block_file, postinstallPath: entry.path, filesystemType: entry.filesystemType, optional: entry.optional });
  }
  if (partitions.length === 0) return [];
  return runPostinstall(partitions, {
    targetSlot: TARGET_SLOT,
    timeoutMs: options.timeoutMs,
    mountRoot: path.join(record.run, 'postinstall'),
    onProgress: options.onProgress,
    signal: options.signal,
    log: options.logger,
  });
}
