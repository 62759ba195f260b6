import { MergeProgress, OrderedLocation } from '../../cow/materialize';

/** A window staged in scratch and not yet committed: merge-order positions [start, start + count). */
interface StagedWindow {
  start: number;
  count: number;
  /** The window's new blocks: a copy of its own, so a read can use it after the merge moved on. */
  blocks: Buffer;
}

/**
 * The merge as one read sees it, for the whole of that read (spec §2.6's per-window states):
 * positions below `done` are COMPLETED (the base holds the new block), the staged window is
 * RA_READY/IN_PROGRESS (its staged copy is the one to trust), the rest are PENDING (built from
 * their sources, which the merge order keeps intact until they merge).
 */
class ReadView implements MergeProgress {
  readonly active: boolean;

  constructor(
    private readonly positionOf: Int32Array,
    private readonly blockSize: number,
    private readonly done: number,
    private readonly window: StagedWindow | undefined,
    readonly epoch: number,
  ) {
    this.active = done > 0 || window !== undefined;
  }

  locate(op: number): OrderedLocation {
    const position = this.positionOf[op];
    if (position < this.done) return OrderedLocation.Base;
    const w = this.window;
    if (w && position >= w.start && position < w.start + w.count) return OrderedLocation.Scratch;
    return OrderedLocation.Source;
  }

  readScratch(op: number, dst: Uint8Array, at: number): Promise<void> {
    const w = this.window!;
    const i = this.positionOf[op] - w.start;
    dst.set(w.blocks.subarray(i * this.blockSize, (i + 1) * this.blockSize), at);
    return Promise.resolve();
  }
}

/**
 * What reads of a snapshot being merged go by. Every read takes a view at its start (`enter`) and
 * keeps it to its end (`leave`). Before the merge writes a staged window to the base, it waits
 * (`stage`) until every read that began before the window was staged has ended: such a read may be
 * reading the window's sources, which the window's writes overwrite.
 */
export class MergeView {
  private readonly positionOf: Int32Array;
  private done = 0;
  private window: StagedWindow | undefined;
  private epoch = 0;
  /** Reads in flight, by the epoch of the view they hold. */
  private readonly readers = new Map<number, number>();
  private drainWaiters: Array<{ before: number; wake: () => void }> = [];

  constructor(
    order: Uint32Array,
    opCount: number,
    private readonly blockSize: number,
  ) {
    this.positionOf = new Int32Array(opCount).fill(0x7fffffff);
    for (let position = 0; position < order.length; position++) this.positionOf[order[position]] = position;
  }

  enter(): ReadView {
    const view = new ReadView(this.positionOf, this.blockSize, this.done, this.window, this.epoch);
    this.readers.set(view.epoch, (this.readers.get(view.epoch) ?? 0) + 1);
    return view;
  }

  leave(view: ReadView): void {
    const left = (this.readers.get(view.epoch) ?? 1) - 1;
    if (left > 0) this.readers.set(view.epoch, left);
    else this.readers.delete(view.epoch);
    this.wakeDrained();
  }

  /** A window is staged: new reads take it from `blocks`; resolves once older reads are gone. */
  async stage(start: number, count: number, blocks: Buffer): Promise<void> {
    this.window = { start, count, blocks: Buffer.from(blocks.subarray(0, count * this.blockSize)) };
    this.epoch++;
    const before = this.epoch;
    if (!this.olderReaders(before)) return;
    await new Promise<void>((wake) => this.drainWaiters.push({ before, wake }));
  }

  /** At handler start: what an interrupted merge left (merged ops, and a staged window not yet committed). */
  restore(done: number, staged?: { start: number; count: number; blocks: Buffer }): void {
    this.done = done;
    this.window = staged && { start: staged.start, count: staged.count, blocks: staged.blocks };
  }

  /** Positions [0, done) are merged; a committed window is no longer needed. */
  committed(done: number): void {
    this.done = done;
    if (this.window && done >= this.window.start + this.window.count) this.window = undefined;
  }

  get mergedOps(): number {
    return this.done;
  }

  private olderReaders(before: number): boolean {
    for (const epoch of this.readers.keys()) if (epoch < before) return true;
    return false;
  }

  private wakeDrained(): void {
    if (this.drainWaiters.length === 0) return;
    const still: typeof this.drainWaiters = [];
    for (const waiter of this.drainWaiters) {
      if (this.olderReaders(waiter.before)) still.push(waiter);
      else waiter.wake();
    }
    this.drainWaiters = still;
  }
}

export type { ReadView };
