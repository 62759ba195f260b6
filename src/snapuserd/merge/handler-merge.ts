import { promises as fs } from 'node:fs';
import { openFile, RandomAccessFile } from '../../cow/file';
import { mergeFiles, openScratchFile, scratchPathFor } from '../../cow/merge';
import type { CowReader } from '../../cow/reader';
import { VabError } from '../../util/errors';
import type { Logger } from '../../util/log';
import type { MergeStatusString } from '../control/protocol';
import { MergeView } from './view';

/** Opens a file the merge writes: the base and the COW (a test swaps in a faulty one). */
export type MergeFileOpener = (file: string, role: 'cow' | 'base' | 'scratch') => Promise<RandomAccessFile>;

export const openMergeFile: MergeFileOpener = (file, role) => (role === 'scratch' ? openScratchFile(file) : openFile(file, 'r+'));

/** Where a handler's merge stands in this daemon's life. */
type State = 'idle' | 'queued' | 'merging' | 'paused' | 'complete' | 'failed' | 'stopped';

class MergeStopped extends Error {}

/**
 * One handler's merge: snapuserd's merge thread for it. It runs the shared in-place merge
 * (src/cow/merge.ts) with the hooks that keep reads right while it runs (see MergeView), stops at
 * its safe points when paused or deleted, and reports Android's status strings.
 */
export class HandlerMerge {
  private state: State = 'idle';
  private paused = false;
  private stopRequested = false;
  private wakePaused: Array<() => void> = [];
  private running: Promise<void> | undefined;
  private done: number;
  readonly total: number;
  /** Set before the merge starts: what reads of the handler go by while it runs. */
  view: MergeView | undefined;

  constructor(
    readonly misc: string,
    private readonly cow: CowReader,
    private readonly cowPath: string,
    private readonly basePath: string,
    private readonly logger: Logger,
    private readonly open: MergeFileOpener = openMergeFile,
  ) {
    this.total = cow.index.order.length;
    this.done = Math.min(cow.header.numMergeOps, this.total);
  }

  /** snapuserd's GetMergePercentage for one partition. */
  get percent(): number {
    return this.total === 0 ? 100 : (this.done * 100) / this.total;
  }

  get isComplete(): boolean {
    return this.done >= this.total && this.state !== 'failed';
  }

  get isRunning(): boolean {
    return this.state === 'merging' || this.state === 'paused';
  }

  /** Android's SnapshotHandler::GetMergeStatus. */
  status(): MergeStatusString {
    switch (this.state) {
      case 'idle':
      case 'stopped':
        return this.done >= this.total ? 'snapshot-merge-complete' : 'snapshot';
      case 'failed':
        return 'snapshot-merge-failed';
      case 'complete':
        return 'snapshot-merge-complete';
      default:
        return 'snapshot-merge';
    }
  }

  /** initiate_merge accepted: waits for a merge slot. */
  queue(): void {
    if (this.state === 'idle' || this.state === 'stopped' || this.state === 'failed') this.state = 'queued';
  }

  get isQueued(): boolean {
    return this.state === 'queued';
  }

  /** Runs the merge to its end (complete, failed or stopped); never rejects. */
  start(): Promise<void> {
    this.state = this.paused ? 'paused' : 'merging';
    this.stopRequested = false;
    this.running = this.run();
    return this.running;
  }

  pause(): void {
    this.paused = true;
    if (this.state === 'merging') this.state = 'paused';
  }

  /** Unlike Android's ResumeMergeThreads, this wakes a merge already waiting at a safe point. */
  resume(): void {
    this.paused = false;
    if (this.state === 'paused') this.state = 'merging';
    for (const wake of this.wakePaused.splice(0)) wake();
  }

  /** Stops at the next safe point (delete, daemon stop) and waits for it. */
  async stop(): Promise<void> {
    this.stopRequested = true;
    for (const wake of this.wakePaused.splice(0)) wake();
    if (this.state === 'queued') this.state = 'stopped';
    await this.running;
  }

  private async run(): Promise<void> {
    const files: RandomAccessFile[] = [];
    try {
      if (!this.view) throw new VabError('ESTATE', `${this.misc}: the merge has no view for reads`);
      const cowFile = await this.open(this.cowPath, 'cow');
      files.push(cowFile);
      const base = await this.open(this.basePath, 'base');
      files.push(base);
      let scratch: RandomAccessFile | undefined;
      if (this.cow.header.bufferSize === 0) {
        scratch = await this.open(scratchPathFor(this.cowPath), 'scratch');
        files.push(scratch);
      }
      this.logger.info(`snapuserd: ${this.misc}: merge ${this.done > 0 ? `resumed at ${this.done}` : 'started'} of ${this.total} ops`, { misc: this.misc, done: this.done, total: this.total });
      await mergeFiles(cowFile, base, {
        scratch,
        hooks: {
          staged: (start, ops, blocks) => this.view!.stage(start, ops.length, blocks),
          committed: (done) => {
            this.view!.committed(done);
            this.done = done;
          },
          safePoint: () => this.safePoint(),
        },
      });
      this.state = 'complete';
      this.logger.info(`snapuserd: ${this.misc}: merge complete`, { misc: this.misc, total: this.total });
      if (scratch) await fs.rm(scratchPathFor(this.cowPath), { force: true });
    } catch (err) {
      if (err instanceof MergeStopped) {
        this.state = 'stopped';
        this.logger.info(`snapuserd: ${this.misc}: merge stopped at ${this.done} of ${this.total} ops`, { misc: this.misc, done: this.done });
      } else {
        this.state = 'failed';
        this.logger.error(`snapuserd: ${this.misc}: merge failed: ${(err as Error).message}`, { misc: this.misc, done: this.done, code: err instanceof VabError ? err.code : undefined });
      }
    } finally {
      for (const file of files.reverse()) await file.close().catch(() => undefined);
    }
  }

  private async safePoint(): Promise<void> {
    while (this.paused && !this.stopRequested) await new Promise<void>((resolve) => this.wakePaused.push(resolve));
    if (this.stopRequested) throw new MergeStopped();
  }
}
