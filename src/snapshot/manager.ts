import { promises as fs } from 'node:fs';
import { openFile } from '../cow/file';
import { decodeHeader } from '../cow/header';
import { COW_HEADER_V3_SIZE } from '../cow/format';
import { writeFileAtomic } from '../util/atomic';
import { VabError } from '../util/errors';
import { Logger, nullLogger } from '../util/log';
import { checkPartitionName, DeviceLayout } from './layout';
import { LockBusyError, MetadataLock } from './lock';
import { ask, checkMergeState, DaemonControl, decideMergePhase, MergeContext, MergeResult, result, switchToMerge } from './merge-state';
import {
  emptySnapshotStatus,
  emptyUpdateStatus,
  MergeFailureCode,
  MergePhase,
  SnapshotState,
  SnapshotStatus,
  UpdateState,
  updateStateText,
} from './proto';
import { AtomicWriter, SnapshotStore } from './store';

export interface SnapshotManagerOptions {
  /** The device directory (see DeviceLayout). */
  device: string;
  /** snapuserd's control socket; needed to merge, and to tell whether snapshots are in use. */
  daemon?: DaemonControl;
  /** Names the holder in the lock file, so a refused command can say who it waited for. */
  command?: string;
  logger?: Logger;
  writer?: AtomicWriter;
  /** Recorded at beginUpdate as source_build_fingerprint. */
  buildFingerprint?: string;
  /** Written to snapshot-boot. vab has no slots: the base images play the running slot. */
  slotSuffix?: string;
  /** See MergeContext.onMergeComplete. */
  onMergeComplete?: (partition: string) => Promise<void>;
  /** How often processUpdateState polls (libsnapshot: 2 s). */
  pollIntervalMs?: number;
}

/** What createUpdateSnapshots needs per partition (from the payload manifest). */
export interface PartitionSnapshot {
  name: string;
  /** Size in bytes after the update. */
  deviceSize: number;
  /** Size in bytes before the update; 0 for a new partition. */
  oldPartitionSize: number;
  compressionAlgorithm?: string;
  compressionFactor?: number;
  estimatedCowSize?: number;
  estimatedOpsBufferSize?: number;
  readAheadSizeKib?: number;
}

const MERGE_STATES = new Set([UpdateState.Merging, UpdateState.MergeNeedsReboot, UpdateState.MergeFailed]);

/**
 * libsnapshot's SnapshotManager for a device directory: the update state machine of
 * cow-snapuserd-libsnapshot.md §4.4. Every call that changes state holds the metadata lock, checks
 * the state it starts from (ESTATE otherwise, before touching anything) and writes each file
 * atomically.
 */
export class SnapshotManager {
  readonly layout: DeviceLayout;
  readonly store: SnapshotStore;
  private readonly logger: Logger;
  private readonly ctx: MergeContext;

  constructor(private readonly options: SnapshotManagerOptions) {
    this.layout = new DeviceLayout(options.device);
    this.store = new SnapshotStore(this.layout, options.writer ?? writeFileAtomic);
    this.logger = options.logger ?? nullLogger;
    this.ctx = { store: this.store, daemon: options.daemon, logger: this.logger, onMergeComplete: options.onMergeComplete };
  }

  async updateState(): Promise<UpdateState> {
    return (await this.store.readUpdateStatus()).state;
  }

  /** Cancels a cancellable earlier update, finishes a merge first if one runs, then → Initiated. */
  async beginUpdate(): Promise<void> {
    if (MERGE_STATES.has(await this.updateState()) && this.options.daemon) await this.processUpdateState();
    await this.locked('begin update', async () => {
      await this.cancelLocked('begin an update');
      const status = emptyUpdateStatus(UpdateState.Initiated);
      status.source_build_fingerprint = this.options.buildFingerprint ?? '';
      await this.store.writeUpdateStatus(status);
    });
  }

  /** Initiated: one CREATED status per partition; statuses left by an earlier attempt go. */
  async createUpdateSnapshots(partitions: readonly PartitionSnapshot[]): Promise<SnapshotStatus[]> {
    const seen = new Set<string>();
    for (const p of partitions) {
      checkPartitionName(p.name);
      if (seen.has(p.name)) throw new VabError('EINVAL_INPUT', `partition ${p.name} is listed twice`);
      seen.add(p.name);
      for (const [what, n] of [['deviceSize', p.deviceSize], ['oldPartitionSize', p.oldPartitionSize]] as const) {
        if (!Number.isSafeInteger(n) || n < 0 || n % 512 !== 0) throw new VabError('EINVAL_INPUT', `partition ${p.name}: ${what} ${n} is not a whole number of 512-byte sectors`);
      }
    }
    return this.locked('create update snapshots', async () => {
      const update = await this.requireState('create update snapshots', UpdateState.Initiated);
      for (const stale of await this.store.listSnapshots()) if (!seen.has(stale)) await this.store.deleteSnapshot(stale);
      await fs.mkdir(this.layout.cowDir, { recursive: true });
      const statuses = partitions.map((p) => snapshotStatusFor(p));
      for (const status of statuses) await this.store.writeSnapshotStatus(status);
      await this.store.writeUpdateStatus({ ...update, using_snapuserd: true, userspace_snapshots: true });
      return statuses;
    });
  }

  /** Initiated → Unverified once every partition has a readable COW; a no-op when already Unverified. */
  async finishedSnapshotWrites(): Promise<void> {
    await this.locked('finish snapshot writes', async () => {
      const update = await this.store.readUpdateStatus();
      if (update.state === UpdateState.Unverified) return;
      await this.requireState('finish snapshot writes', UpdateState.Initiated);
      for (const name of await this.store.listSnapshots()) await checkCow(this.layout.cow(name));
      // Written at boot when the old images come up; it must not predate this update.
      await fs.rm(this.layout.rollbackIndicator, { force: true });
      await this.store.writeFile(this.layout.bootIndicator, Buffer.from(this.options.slotSuffix ?? '_a'));
      await this.store.writeUpdateStatus({ ...update, state: UpdateState.Unverified });
    });
  }

  /**
   * Unverified → Merging, the point of no return: every snapshot must be served by the daemon.
   * Partitions that shrank merge first. A partition whose switch fails makes the state
   * MergeFailed, as on Android; the merge was still initiated.
   */
  async initiateMerge(): Promise<MergeResult> {
    return this.locked('initiate merge', async () => {
      const update = await this.requireState('initiate a merge', UpdateState.Unverified);
      if (!this.options.daemon) throw new VabError('ESTATE', 'cannot merge: no snapuserd is serving the snapshots (is the device booted with vab boot?)');
      const names = await this.store.listSnapshots();
      const statuses: SnapshotStatus[] = [];
      for (const name of names) {
        const reply = await ask(this.ctx, `getstatus,${name}`);
        if (reply === undefined || reply === 'snapshot-merge-failed') {
          throw new VabError('ESTATE', `cannot merge: partition ${name} is not served by snapuserd (getstatus: ${reply ?? 'no answer'})`);
        }
        statuses.push(await this.store.readSnapshotStatus(name));
      }
      const first = statuses.filter((s) => decideMergePhase(s) === MergePhase.FIRST_PHASE).map((s) => s.name);
      const phase = first.length > 0 ? MergePhase.FIRST_PHASE : MergePhase.SECOND_PHASE;
      const usingSnapuserd = statuses.some((s) => s.using_snapuserd);
      await this.store.writeUpdateStatus({ ...update, state: UpdateState.Merging, merge_phase: phase, using_snapuserd: usingSnapuserd || update.using_snapuserd });
      let failure = MergeFailureCode.Ok;
      for (const name of phase === MergePhase.FIRST_PHASE ? first : names) {
        const code = await switchToMerge(this.ctx, name);
        if (code !== MergeFailureCode.Ok && failure === MergeFailureCode.Ok) failure = code;
      }
      if (failure === MergeFailureCode.Ok) return result(UpdateState.Merging);
      await this.writeMergeFailed(failure);
      return result(UpdateState.MergeFailed, failure);
    });
  }

  /**
   * One CheckMergeState: polls the daemon for each snapshot, resumes merges it reports as not
   * running, records completions. MergeCompleted removes all update state (→ None).
   */
  async checkMergeState(): Promise<MergeResult> {
    return this.locked('check merge state', async () => {
      const r = await checkMergeState(this.ctx);
      if (r.state === UpdateState.MergeCompleted) await this.removeAllUpdateState();
      return r;
    });
  }

  /**
   * ProcessUpdateState: checks until nothing is merging, then acknowledges a failure. The lock is
   * released between polls; a poll that finds it busy is tried again at the next one.
   */
  async processUpdateState(options: { onPoll?: (r: MergeResult) => void; signal?: AbortSignal } = {}): Promise<MergeResult> {
    for (;;) {
      let r: MergeResult | undefined;
      try {
        r = await this.checkMergeState();
      } catch (err) {
        if (!(err instanceof LockBusyError)) throw err;
      }
      if (r) options.onPoll?.(r);
      if (r && r.state === UpdateState.MergeFailed) {
        await this.locked('acknowledge merge failure', async () => {
          const state = await this.updateState();
          if (state === UpdateState.Merging || state === UpdateState.MergeNeedsReboot) await this.writeMergeFailed(r.failureCode);
        });
      }
      if (r && r.state !== UpdateState.Merging) return r;
      if (options.signal?.aborted) return r ?? result(await this.updateState());
      await new Promise((resolve) => setTimeout(resolve, this.options.pollIntervalMs ?? 2000));
    }
  }

  /** Removes the COWs and statuses; refused while merging or while the daemon serves the snapshots. */
  async cancelUpdate(): Promise<void> {
    await this.locked('cancel update', () => this.cancelLocked('cancel the update'));
  }

  private async cancelLocked(what: string): Promise<void> {
    const state = await this.updateState();
    if (MERGE_STATES.has(state)) {
      throw new VabError('ESTATE', `cannot ${what}: the update is ${updateStateText(state)}; a merge cannot be undone, it must finish first`);
    }
    if (state === UpdateState.Unverified && (await this.snapshotsLive())) {
      throw new VabError('ESTATE', `cannot ${what}: the device is running from its snapshots (snapuserd serves them); stop it first`);
    }
    await this.removeAllUpdateState();
  }

  /**
   * State None goes first: from then on nothing maps the snapshots, and whatever a crash leaves
   * behind is removed by the next cancel or begin (which list what is left).
   */
  private async removeAllUpdateState(): Promise<void> {
    if ((await this.updateState()) !== UpdateState.None) await this.store.writeUpdateStatus(emptyUpdateStatus());
    for (const name of await this.store.listSnapshots()) await this.store.deleteSnapshot(name);
    await fs.rm(this.layout.bootIndicator, { force: true });
    await fs.rm(this.layout.rollbackIndicator, { force: true });
  }

  /** Whether the daemon has a handler for any snapshot (Android: booted into the target slot). */
  private async snapshotsLive(): Promise<boolean> {
    if (!this.options.daemon) return false;
    for (const name of await this.store.listSnapshots()) {
      const reply = await ask(this.ctx, `getstatus,${name}`);
      if (reply !== undefined && reply !== 'snapshot-merge-failed') return true;
    }
    return false;
  }

  private async writeMergeFailed(code: MergeFailureCode): Promise<void> {
    const update = await this.store.readUpdateStatus();
    await this.store.writeUpdateStatus({ ...update, state: UpdateState.MergeFailed, merge_failure_code: code });
  }

  private async requireState(what: string, wanted: UpdateState) {
    const update = await this.store.readUpdateStatus();
    if (update.state !== wanted) {
      throw new VabError('ESTATE', `cannot ${what}: the update is ${updateStateText(update.state)}, it must be ${updateStateText(wanted)}`, { file: this.layout.stateFile });
    }
    return update;
  }

  private async locked<T>(what: string, body: () => Promise<T>): Promise<T> {
    const lock = await MetadataLock.acquire(this.layout.lockFile, this.options.command ?? what);
    try {
      return await body();
    } finally {
      await lock.release();
    }
  }
}

function snapshotStatusFor(p: PartitionSnapshot): SnapshotStatus {
  return {
    ...emptySnapshotStatus(p.name),
    state: SnapshotState.CREATED,
    device_size: p.deviceSize,
    snapshot_size: p.deviceSize,
    cow_file_size: p.estimatedCowSize ?? 0,
    using_snapuserd: true,
    old_partition_size: p.oldPartitionSize,
    compression_algorithm: p.compressionAlgorithm ?? 'none',
    estimated_cow_size: p.estimatedCowSize ?? 0,
    estimated_ops_buffer_size: p.estimatedOpsBufferSize ?? 0,
    compression_factor: p.compressionFactor ?? 0,
    read_ahead_size: p.readAheadSizeKib ?? 32,
  };
}

/** The partition's writes are finished only if its COW exists and starts with a valid header. */
async function checkCow(file: string): Promise<void> {
  const handle = await openFile(file, 'r').catch((err: unknown) => {
    throw new VabError('ESTATE', `cannot finish the update: ${file} cannot be opened (${(err as Error).message})`, { cause: err });
  });
  try {
    const head = Buffer.alloc(Math.min(COW_HEADER_V3_SIZE, await handle.size()));
    await handle.read(head, 0, head.length, 0);
    decodeHeader(head, { file });
  } finally {
    await handle.close();
  }
}
