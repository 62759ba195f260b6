import { LockBusyError } from '../../snapshot/lock';
import { SnapshotManager } from '../../snapshot/manager';
import type { DaemonControl, MergeResult } from '../../snapshot/merge-state';
import { UpdateState } from '../../snapshot/proto';
import type { Logger } from '../../util/log';
import { readBootRecord, writeBootRecord } from './record';
import type { RuntimeLink } from './runtime-link';

export interface MergeLink {
  device: string;
  run: string;
  control: DaemonControl;
  link: RuntimeLink;
  logger: Logger;
  command?: string;
}

/**
 * What happens to a partition once snapuserd reports its merge complete, before libsnapshot drops
 * its COW and status: its block file maps the (now new) base straight through, then the daemon
 * lets the handler go (Android replaces the table first, then WaitForDeviceDelete).
 */
export async function switchToBase(m: MergeLink, partition: string): Promise<void> {
  const record = await readBootRecord(m.run);
  const entry = record.targets.find((t) => t.name === partition);
  if (!entry || entry.kind !== 'snapshot') return;
  await m.link.reloadLinear(partition, entry.image);
  entry.kind = 'linear';
  await writeBootRecord(record);
  const reply = await m.control.request(`delete,${entry.misc}`);
  if (reply !== 'success') m.logger.warn('snapuserd did not delete the merged handler', { partition, misc: entry.misc, reply });
}

/** Commands whose second field names a handler: libsnapshot names partitions, snapuserd misc names. */
const NAMES_A_HANDLER = new Set(['getstatus', 'initiate_merge', 'delete', 'start']);

/**
 * The daemon as SnapshotManager sees it: partition names are turned into the dm-user misc names
 * the running boot serves them under (they change with every handoff), read from boot.json at
 * each request.
 */
export function partitionNamedControl(m: MergeLink): DaemonControl {
  return {
    async request(command) {
      const [verb, name, ...rest] = command.split(',');
      if (!NAMES_A_HANDLER.has(verb) || name === undefined || rest.length > 0) return m.control.request(command);
      const target = (await readBootRecord(m.run)).targets.find((t) => t.name === name);
      return m.control.request(`${verb},${target?.misc ?? name}`);
    },
  };
}

export function mergeManager(m: MergeLink): SnapshotManager {
  return new SnapshotManager({ device: m.device, daemon: partitionNamedControl(m), command: m.command ?? 'vab merge', logger: m.logger, onMergeComplete: (name) => switchToBase(m, name), pollIntervalMs: 250 });
}

/**
 * After a boot or a daemon restart: when the device is merging, one CheckMergeState sends
 * initiate_merge again for every partition the daemon reports as `snapshot`. Busy lock: whoever
 * holds it (a `vab merge --wait`) is polling the same state already.
 */
export async function resumeInterruptedMerge(m: MergeLink): Promise<MergeResult | undefined> {
  const manager = mergeManager({ ...m, command: m.command ?? 'vab boot' });
  if ((await manager.updateState()) !== UpdateState.Merging) return undefined;
  try {
    return await manager.checkMergeState();
  } catch (err) {
    if (err instanceof LockBusyError) return undefined;
    throw err;
  }
}
