import path from 'node:path';
import { DeviceLayout } from '../../snapshot/layout';
import { MergeFailureCode, UpdateState, mergeFailureText, updateStateText } from '../../snapshot/proto';
import { VabError } from '../../util/errors';
import type { Logger } from '../../util/log';
import { nullLogger } from '../../util/log';
import { MergeLink, mergeManager } from './merge-link';
import { readBootRecord } from './record';
import { RuntimeLink } from './runtime-link';

export interface MergeOptions {
  device: string;
  run: string;
  /** Wait for the merge to finish and clean up (state None). */
  wait?: boolean;
  logger?: Logger;
  /** Called with snapuserd's merge_percent at every poll while waiting. */
  onPercent?: (percent: number) => void;
  signal?: AbortSignal;
}

export interface MergeOutcome {
  /** The update state at the end, in libsnapshot's text form. */
  state: string;
  initiated: boolean;
  failure?: string;
}

/**
 * `vab merge`: through the booted device's snapuserd, Unverified → Merging (initiate_merge per
 * partition, libsnapshot's InitiateMerge); with `wait`, ProcessUpdateState until the merge is done,
 * each merged partition switching to its base, then the COWs and statuses go (state None).
 */
export async function mergeDevice(options: MergeOptions): Promise<MergeOutcome> {
  const logger = options.logger ?? nullLogger;
  const record = await readBootRecord(options.run);
  const layout = new DeviceLayout(options.device);
  if (path.resolve(record.device) !== layout.root) {
    throw new VabError('EINVAL_INPUT', `the device booted on ${options.run} is ${record.device}, not ${layout.root}`);
  }
  const link = new RuntimeLink(record.run);
  const control = await link.connectDaemon();
  const m: MergeLink = { device: layout.root, run: record.run, control, link, logger, command: 'vab merge' };
  const manager = mergeManager(m);
  let state = await manager.updateState();
  let initiated = false;
  if (state === UpdateState.Unverified) {
    const r = await manager.initiateMerge();
    initiated = true;
    state = r.state;
    if (r.state === UpdateState.MergeFailed) return { state: updateStateText(r.state), initiated, failure: mergeFailureText(r.failureCode) };
  } else if (state === UpdateState.None && options.wait) {
    // Waiting for a merge that already finished (the boot resumes and completes merges itself).
    return { state: updateStateText(state), initiated };
  } else if (state !== UpdateState.Merging) {
    throw new VabError('ESTATE', `nothing to merge: the update is ${updateStateText(state)} (a merge starts from unverified, after vab apply and vab boot)`);
  }
  if (!options.wait) return { state: updateStateText(state), initiated };
  const report = async (): Promise<void> => {
    if (!options.onPercent) return;
    const reply = await control.request('merge_percent').catch(() => '');
    const percent = Number.parseFloat(reply);
    if (Number.isFinite(percent)) options.onPercent(percent);
  };
  const r = await manager.processUpdateState({ onPoll: () => void report(), signal: options.signal });
  if (r.state === UpdateState.MergeFailed) return { state: updateStateText(r.state), initiated, failure: mergeFailureText(r.failureCode) };
  // MergeCompleted is what the last poll saw; the cleanup after it leaves the device at None.
  return { state: updateStateText(await manager.updateState()), initiated, failure: r.failureCode === MergeFailureCode.Ok ? undefined : mergeFailureText(r.failureCode) };
}
