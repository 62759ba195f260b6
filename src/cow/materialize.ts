import type { RandomAccessFile } from './file';
import { CowOpType } from './format';
import { MaterializeScratch, readZeroPadded, settleAll, xorInto } from './materialize-support';
import type { CowReader } from './reader';

export { MaterializeScratch, readZeroPadded, settleAll, xorInto };

/** Largest run of adjacent Copy blocks read from the source in one read. */
const MAX_BATCH_BLOCKS = 256;

/** Where the new content of an ordered (Copy/Xor) op's block is found at this moment of a merge. */
export enum OrderedLocation {
  /** Not merged: build it from the source block (and the Xor payload). */
  Source = 0,
  /** Merged: the base holds the new block at new_block. */
  Base = 1,
  /** Its window is being merged: the staged copy in the scratch region is the one to trust (spec §2.6). */
  Scratch = 2,
}

/**
 * A view of merge progress, so that reads during a merge see the new image whatever the merge has
 * overwritten. Replace and Zero ops need none: their content comes from the COW either way.
 */
export interface MergeProgress {
  /** False while nothing is merged or staged: reads then skip the per-op lookup. */
  readonly active: boolean;
  locate(op: number): OrderedLocation;
  /** Copies op's staged new block into dst at `at`. */
  readScratch(op: number, dst: Uint8Array, at: number): Promise<void>;
}

export const NOTHING_MERGED: MergeProgress = {
  active: false,
  locate: () => OrderedLocation.Source,
  readScratch: () => Promise.reject(new Error('nothing is staged')),
};

/**
 * The payload bytes of an op, from whatever buffering suits the caller. `k` is the op's position in
 * block order and `endBlock` the end of the caller's range, for sources that read ahead.
 */
export type PayloadSource = (op: number, k: number, endBlock: number) => Buffer | Promise<Buffer>;

/**
 * The one place that turns COW ops into bytes of the new image. A block's content is, by op:
 * Replace → its (possibly multi-block) payload; Zero → zeros; Copy → the source block;
 * Xor → `block_size` source bytes at a byte offset, XORed with the payload; no op → the base block.
 * `source` is what Copy/Xor read (Android's backing device), `base` what unchanged and merged
 * blocks come from; offline they are one file.
 *
 * Work is split in two passes so callers can overlap them: `loadBaseLayer` does the file reads
 * (base and sources), `patch` the decompression. `readBlocks` does both.
 */
export class Materializer {
  readonly blockSize: number;

  constructor(
    readonly cow: CowReader,
    readonly source: RandomAccessFile,
    readonly base: RandomAccessFile = source,
    public progress: MergeProgress = NOTHING_MERGED,
  ) {
    this.blockSize = cow.blockSize;
  }

  /** Fills dst with blocks [start, end): base layer and COW data. */
  async readBlocks(start: number, end: number, dst: Uint8Array, out0: number, payloads: PayloadSource, scratch: MaterializeScratch, view: MergeProgress = this.progress): Promise<void> {
    await this.loadBaseLayer(start, end, dst, out0, false, view);
    await this.patch(start, end, dst, out0, payloads, scratch, view);
  }

  /** The first op position at or after `start` in block order with payload data before `end`, or -1. */
  firstPayload(start: number, end: number): number {
    const { ops, index } = this.cow;
    const { order } = index;
    let k = index.firstEndingAfter(start);
    while (k < order.length && ops.newBlock[order[k]] < end && ops.dataLength[order[k]] === 0) k++;
    return k < order.length && ops.newBlock[order[k]] < end ? k : -1;
  }

  /**
   * Fills dst with blocks [start, end) as far as files decide them: base blocks where the COW has no
   * op (and the old bytes an in-place Xor applies to), and the sources of Copy and Xor ops (or, in a
   * merge, their merged or staged blocks), read concurrently. Zero, Replace and Xor data are left to
   * `patch`. With `opBlocksOnly` (a caller whose copy of the base already holds the other blocks),
   * blocks without an op are not read; a range no op touches then reads nothing and gives false.
   * With `scratch`, the ops' reads go to its side buffer and are copied in once every read is done,
   * so they need not wait for the read of the whole range.
   */
  async loadBaseLayer(
    start: number,
    end: number,
    dst: Uint8Array,
    out0 = 0,
    opBlocksOnly = false,
    view: MergeProgress = this.progress,
    scratch?: MaterializeScratch,
  ): Promise<boolean> {
    const { ops, index } = this.cow;
    const { order } = index;
    const bs = this.blockSize;
    const progress = view.active ? view : undefined;
    const kFirst = index.firstEndingAfter(start);
    let kEnd = kFirst;
    let covered = 0;
    for (; kEnd < order.length && ops.newBlock[order[kEnd]] < end; kEnd++) {
      const op = order[kEnd];
      covered += Math.min(end, ops.newBlock[op] + ops.span(op)) - Math.max(start, ops.newBlock[op]);
    }
    if (opBlocksOnly && kEnd === kFirst) return false;
    // One read of the whole range serves every block the COW does not change; ops overwrite theirs.
    const bulk = !opBlocksOnly && covered < end - start;
    const aside = bulk && scratch ? scratch.aside((end - start) * bs) : undefined;
    const reads: Promise<void>[] = [];
    if (bulk) {
      const whole = readZeroPadded(this.base, dst, out0, (end - start) * bs, start * bs);
      if (aside) reads.push(whole);
      else await whole;
    }
    // [side offset, dst offset, length] of each read that went aside.
    const placed: number[] = [];
    let asideAt = 0;
    const read = (from: (into: Uint8Array, at: number) => Promise<void>, out: number, length: number): void => {
      if (!aside) {
        reads.push(from(dst, out));
        return;
      }
      reads.push(from(aside, asideAt));
      placed.push(asideAt, out, length);
      asideAt += length;
    };
    const inPlace = this.source === this.base && bulk;
    for (let k = kFirst; k < kEnd; ) {
      const op = order[k];
      const type = ops.type(op);
      const out = out0 + (Math.max(start, ops.newBlock[op]) - start) * bs;
      const where = progress && (type === CowOpType.Copy || type === CowOpType.Xor) ? progress.locate(op) : OrderedLocation.Source;
      if (where === OrderedLocation.Base) {
        read((into, at) => readZeroPadded(this.base, into, at, bs, ops.newBlock[op] * bs), out, bs);
      } else if (where === OrderedLocation.Scratch) {
        read((into, at) => progress!.readScratch(op, into, at), out, bs);
      } else if (type === CowOpType.Copy) {
        let n = 1;
        while (k + n < kEnd && n < MAX_BATCH_BLOCKS && this.copyContinues(order[k + n - 1], order[k + n], progress)) n++;
        read((into, at) => readZeroPadded(this.source, into, at, n * bs, ops.source[op] * bs), out, n * bs);
        k += n;
        continue;
      } else if (type === CowOpType.Xor && !(inPlace && ops.source[op] === ops.newBlock[op] * bs)) {
        read((into, at) => readZeroPadded(this.source, into, at, bs, ops.source[op]), out, bs);
      }
      k++;
    }
    if (reads.length > 0) await settleAll(reads);
    for (let i = 0; i < placed.length; i += 3) dst.set(aside!.subarray(placed[i], placed[i] + placed[i + 2]), placed[i + 1]);
    return true;
  }

  /**
   * Expands every Replace op lying wholly inside [start, end) into the scratch's staging space, back
   * to back in block order, while dst may still be receiving its base layer: so decompression runs
   * alongside the reads instead of after them. `patch` with `staged` then copies them into place.
   */
  async stageReplaces(start: number, end: number, payloads: PayloadSource, scratch: MaterializeScratch): Promise<void> {
    const { cow } = this;
    const { ops, index } = cow;
    const { order } = index;
    const stage = scratch.stage((end - start) * this.blockSize);
    let at = 0;
    for (let k = index.firstEndingAfter(start); k < order.length && ops.newBlock[order[k]] < end; k++) {
      const op = order[k];
      if (!wholeReplace(cow, op, start, end)) continue;
      const size = cow.unitSize(op);
      // Awaiting only a real promise: most payloads are in memory, and each await is a microtask turn.
      const bytes = payloads(op, k, end);
      cow.expandPayload(op, bytes instanceof Promise ? await bytes : bytes, stage.subarray(at, at + size));
      at += size;
    }
  }

  /**
   * Applies the ops that need COW data (Zero, Replace, and Xor whose block is built from its source)
   * to dst, which already holds the range's base layer. With `staged`, the Replace ops wholly inside
   * the range were expanded by stageReplaces and are copied from there.
   */
  async patch(start: number, end: number, dst: Uint8Array, out0: number, payloads: PayloadSource, scratch: MaterializeScratch, view: MergeProgress = this.progress, staged = false): Promise<void> {
    const { cow } = this;
    const { ops, index } = cow;
    const { order } = index;
    const bs = this.blockSize;
    const progress = view.active ? view : undefined;
    const stage = staged ? scratch.stage(0) : undefined;
    let stageAt = 0;
    for (let k = index.firstEndingAfter(start); k < order.length && ops.newBlock[order[k]] < end; k++) {
      const op = order[k];
      const type = ops.type(op);
      if (type === CowOpType.Copy) continue;
      const opStart = ops.newBlock[op];
      const out = out0 + (Math.max(start, opStart) - start) * bs;
      if (stage && wholeReplace(cow, op, start, end)) {
        const size = cow.unitSize(op);
        dst.set(stage.subarray(stageAt, stageAt + size), out);
        stageAt += size;
      } else if (type === CowOpType.Zero) {
        dst.fill(0, out, out + bs);
      } else if (type === CowOpType.Xor) {
        if (progress && progress.locate(op) !== OrderedLocation.Source) continue;
        const bytes = payloads(op, k, end);
        cow.expandPayload(op, bytes instanceof Promise ? await bytes : bytes, scratch.block);
        xorInto(dst, out, scratch.block, scratch.blockWords);
      } else if (opStart >= start && opStart + ops.span(op) <= end) {
        const bytes = payloads(op, k, end);
        cow.expandPayload(op, bytes instanceof Promise ? await bytes : bytes, dst.subarray(out, out + cow.unitSize(op)));
      } else {
        // A multi-block unit entered or left part-way: expand it whole, keep it for the next read.
        const first = Math.max(start, opStart) - opStart;
        const take = Math.min(opStart + ops.span(op), end) - Math.max(start, opStart);
        const unit = await scratch.unitOf(cow, op, () => payloads(op, k, end));
        dst.set(unit.subarray(first * bs, (first + take) * bs), out);
      }
    }
  }

  /**
   * Builds the new block of one ordered op from its source, as the merge does before staging a
   * window: Copy reads block `source`, Xor reads `block_size` bytes at byte `source` and XORs its
   * payload in.
   */
  async buildOrdered(op: number, dst: Uint8Array, at: number, payloads: PayloadSource, scratch: MaterializeScratch): Promise<void> {
    const { ops } = this.cow;
    const bs = this.blockSize;
    const type = ops.type(op);
    if (type === CowOpType.Copy) {
      await readZeroPadded(this.source, dst, at, bs, ops.source[op] * bs);
      return;
    }
    if (type !== CowOpType.Xor) throw new RangeError(`op ${op} is not a Copy or Xor op`);
    await readZeroPadded(this.source, dst, at, bs, ops.source[op]);
    this.cow.expandPayload(op, await payloads(op, -1, 0), scratch.block);
    xorInto(dst, at, scratch.block, scratch.blockWords);
  }

  /** Whether Copy op `next` continues a run of Copy ops from adjacent sources ending with `prev`. */
  private copyContinues(prev: number, next: number, progress: MergeProgress | undefined): boolean {
    const ops = this.cow.ops;
    if (ops.type(next) !== CowOpType.Copy || ops.newBlock[next] !== ops.newBlock[prev] + 1 || ops.source[next] !== ops.source[prev] + 1) return false;
    return !progress || progress.locate(next) === OrderedLocation.Source;
  }
}

/** Whether op is a Replace op whose whole unit lies inside blocks [start, end). */
function wholeReplace(cow: CowReader, op: number, start: number, end: number): boolean {
  const { ops } = cow;
  return ops.type(op) === CowOpType.Replace && ops.newBlock[op] >= start && ops.newBlock[op] + ops.span(op) <= end;
}
