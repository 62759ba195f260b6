import type { Logger } from '../util/log';
import { isVabError } from '../util/errors';
import { MergeFailureCode, MergePhase, SnapshotState, SnapshotStatus, SnapshotUpdateStatus, UpdateState } from './proto';
import { SnapshotStore } from './store';

/** The daemon's control socket, as far as the manager needs it: one request, one reply. */
export interface DaemonControl {
  request(command: string): Promise<string>;
}

/** What one look at the merge found, as libsnapshot's MergeResult. */
export interface MergeResult {
  state: UpdateState;
  failureCode: MergeFailureCode;
}

export function result(state: UpdateState, failureCode = MergeFailureCode.Ok): MergeResult {
  return { state, failureCode };
}

export interface MergeContext {
  store: SnapshotStore;
  daemon?: DaemonControl;
  logger: Logger;
  /** Called once a partition's merge is complete, before its COW and status go (switch the target to the base). */
  onMergeComplete?: (partition: string) => Promise<void>;
}

/** Partitions that shrank merge first: their tail may be the source of copies (b/177935716). */
export function decideMergePhase(status: SnapshotStatus): MergePhase {
  return status.using_snapuserd && status.device_size < status.old_partition_size ? MergePhase.FIRST_PHASE : MergePhase.SECOND_PHASE;
}

/** Sends a command and returns the reply, or undefined when the daemon cannot be reached. */
export async function ask(ctx: MergeContext, command: string): Promise<string | undefined> {
  if (!ctx.daemon) return undefined;
  try {
    return (await ctx.daemon.request(command)).trim();
  } catch (err) {
    ctx.logger.warn('snapuserd request failed', { command, error: (err as Error).message });
    return undefined;
  }
}

/** SwitchSnapshotToMerge: initiate_merge, then the status becomes MERGING. */
export async function switchToMerge(ctx: MergeContext, name: string): Promise<MergeFailureCode> {
  let status: SnapshotStatus;
  try {
    status = await ctx.store.readSnapshotStatus(name);
  } catch (err) {
    ctx.logger.error('cannot read snapshot status', { partition: name, error: (err as Error).message });
    return MergeFailureCode.ReadStatus;
  }
  if ((await ask(ctx, `initiate_merge,${name}`)) !== 'success') return MergeFailureCode.UnknownTable;
  status.state = SnapshotState.MERGING;
  await ctx.store.writeSnapshotStatus(status);
  return MergeFailureCode.Ok;
}

/** CheckTargetMergeState for user-space snapshots: one getstatus, interpreted as libsnapshot does. */
async function checkTarget(ctx: MergeContext, name: string, update: SnapshotUpdateStatus): Promise<MergeResult> {
  let status: SnapshotStatus;
  try {
    status = await ctx.store.readSnapshotStatus(name);
  } catch (err) {
    if (!isVabError(err)) throw err;
    ctx.logger.error('cannot read snapshot status', { partition: name, error: err.message });
    return result(UpdateState.MergeFailed, MergeFailureCode.ReadStatus);
  }
  const reply = await ask(ctx, `getstatus,${name}`);
  if (reply === undefined) return result(UpdateState.MergeFailed, MergeFailureCode.QuerySnapshotStatus);
  if (reply === 'snapshot-merge-failed') return result(UpdateState.MergeFailed, MergeFailureCode.UnknownTargetType);
  if (reply === 'snapshot') {
    // The daemon restarted mid-merge: it waits for initiate_merge again, as Android's does.
    if (status.state === SnapshotState.MERGING) {
      return (await ask(ctx, `initiate_merge,${name}`)) === 'success' ? result(UpdateState.Merging) : result(UpdateState.MergeFailed, MergeFailureCode.UnknownTargetType);
    }
    if (decideMergePhase(status) === MergePhase.SECOND_PHASE) {
      if (update.merge_phase === MergePhase.FIRST_PHASE) return result(UpdateState.None); // waits for its phase
      // Second phase already recorded but this one never switched (b/374225913).
      const code = await switchToMerge(ctx, name);
      return code === MergeFailureCode.Ok ? result(UpdateState.Merging) : result(UpdateState.MergeFailed, MergeFailureCode.UnknownTargetType);
    }
  }
  if (reply === 'snapshot-merge') {
    if (status.state === SnapshotState.MERGE_COMPLETED) return result(UpdateState.MergeFailed, MergeFailureCode.UnmergedSectorsAfterCompletion);
    return result(UpdateState.Merging);
  }
  if (reply !== 'snapshot-merge-complete') {
    ctx.logger.error('unexpected merge status', { partition: name, reply });
    return result(UpdateState.MergeFailed, MergeFailureCode.ExpectedMergeTarget);
  }
  // Recorded before the cleanup, so a crash during cleanup never maps this snapshot again.
  status.state = SnapshotState.MERGE_COMPLETED;
  await ctx.store.writeSnapshotStatus(status);
  try {
    await ctx.onMergeComplete?.(name);
    await ctx.store.deleteSnapshot(name);
  } catch (err) {
    ctx.logger.error('cleanup after merge failed', { partition: name, error: (err as Error).message });
    return result(UpdateState.MergeNeedsReboot);
  }
  return result(UpdateState.MergeCompleted);
}

/**
 * CheckMergeState with the lock held: polls every snapshot and folds the answers in libsnapshot's
 * order of precedence (merging, failure, wrong phase, needs reboot, completed). It writes only the
 * per-partition changes, the second-phase switch and MergeNeedsReboot; the caller acknowledges
 * success or failure.
 */
export async function checkMergeState(ctx: MergeContext): Promise<MergeResult> {
  const update = await ctx.store.readUpdateStatus();
  if (update.state !== UpdateState.Merging && update.state !== UpdateState.MergeNeedsReboot && update.state !== UpdateState.MergeFailed) {
    return result(update.state);
  }
  let snapshots: string[];
  try {
    snapshots = await ctx.store.listSnapshots();
  } catch (err) {
    ctx.logger.error('cannot list snapshots', { error: (err as Error).message });
    return result(UpdateState.MergeFailed, MergeFailureCode.ListSnapshots);
  }
  let merging = false;
  let needsReboot = false;
  let wrongPhase = false;
  let failure = MergeFailureCode.Ok;
  for (const name of snapshots) {
    const r = await checkTarget(ctx, name, update);
    ctx.logger.info('merge state', { partition: name, state: UpdateState[r.state], failure: MergeFailureCode[r.failureCode] });
    if (r.state === UpdateState.Merging) merging = true;
    else if (r.state === UpdateState.MergeNeedsReboot) needsReboot = true;
    else if (r.state === UpdateState.None) wrongPhase = true;
    else if (r.state === UpdateState.MergeFailed && failure === MergeFailureCode.Ok) failure = r.failureCode;
  }
  if (merging) return result(UpdateState.Merging);
  if (failure !== MergeFailureCode.Ok) return result(UpdateState.MergeFailed, failure);
  if (wrongPhase) {
    const code = await mergeSecondPhase(ctx, update);
    return code === MergeFailureCode.Ok ? result(UpdateState.Merging) : result(UpdateState.MergeFailed, code);
  }
  if (needsReboot) {
    await ctx.store.writeUpdateStatus({ ...update, state: UpdateState.MergeNeedsReboot, merge_failure_code: MergeFailureCode.Ok });
    return result(UpdateState.MergeNeedsReboot);
  }
  return result(UpdateState.MergeCompleted);
}

/** Listed again: first-phase snapshots that just completed are gone. */
async function mergeSecondPhase(ctx: MergeContext, update: SnapshotUpdateStatus): Promise<MergeFailureCode> {
  const snapshots = await ctx.store.listSnapshots().catch(() => undefined);
  if (!snapshots) return MergeFailureCode.ListSnapshots;
  await ctx.store.writeUpdateStatus({ ...update, state: UpdateState.Merging, merge_phase: MergePhase.SECOND_PHASE, merge_failure_code: MergeFailureCode.Ok });
  let code = MergeFailureCode.Ok;
  for (const name of snapshots) {
    const status = await ctx.store.readSnapshotStatus(name).catch(() => undefined);
    if (!status) return MergeFailureCode.ReadStatus;
    if (decideMergePhase(status) !== MergePhase.SECOND_PHASE) continue;
    const switched = await switchToMerge(ctx, name);
    if (switched !== MergeFailureCode.Ok && code === MergeFailureCode.Ok) code = switched;
  }
  return code;
}
