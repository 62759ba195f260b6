import { badArgument } from './errors';
import { openFile, RandomAccessFile, readExactly } from './file';
import { CowOpType } from './format';
import { CowReader } from './reader';

/** Largest single read the reader issues for a batch of adjacent blocks or payloads. */
const MAX_BATCH_BYTES = 1 << 20;
const MAX_BATCH_BLOCKS = 256;
/** Payload bytes read past a sequential caller's range, so its next small reads find them in memory. */
const READAHEAD_BYTES = 128 << 10;

/**
 * The new image as the COW describes it over its base (the old image): what snapuserd serves for
 * every read of an updated partition. For each block: the op's result (Copy from the base, Xor
 * against the base, Zero, Replace from the COW) or, where the COW has no op, the base block.
 *
 * `readBlocks` is the hot path: it walks the block index once per call, batches adjacent blocks of
 * the same kind into one read (base runs, contiguous copies, payloads stored back to back) and uses
 * scratch buffers that are reused across calls, so it allocates nothing per block.
 */
export class SnapshotReader {
  readonly blockSize: number;
  private readonly contexts: ReadContext[] = [];
  private lastEnd = -1;

  constructor(
    readonly cow: CowReader,
    readonly base: RandomAccessFile,
    /** Blocks in the new image. */
    readonly blockCount: number,
    private readonly ownsFiles = false,
  ) {
    this.blockSize = cow.blockSize;
  }

  /**
   * Opens a COW over its base. `deviceBlocks` (the new image's size) defaults to the larger of the
   * base and the COW's last block. Every op is checked against both sizes here, once.
   */
  static async open(cowPath: string, basePath: string, options: { deviceBlocks?: number; deviceBytes?: number } = {}): Promise<SnapshotReader> {
    const cow = await CowReader.open(cowPath);
    let base: RandomAccessFile | undefined;
    try {
      let blocks = options.deviceBlocks;
      if (options.deviceBytes !== undefined) {
        const bytes = options.deviceBytes;
        if (!Number.isSafeInteger(bytes) || bytes < 0 || bytes % cow.blockSize !== 0) throw badArgument(`size ${bytes} is not a multiple of the ${cow.blockSize}-byte block size`);
        blocks = bytes / cow.blockSize;
      }
      base = await openFile(basePath, 'r');
      return await SnapshotReader.over(cow, base, blocks, true);
    } catch (err) {
      await base?.close();
      await cow.close();
      throw err;
    }
  }

  static async over(cow: CowReader, base: RandomAccessFile, deviceBlocks?: number, ownsFiles = false): Promise<SnapshotReader> {
    const baseBytes = await base.size();
    const ops = cow.ops;
    const last = cow.index.order.length === 0 ? -1 : cow.index.order[cow.index.order.length - 1];
    const cowBlocks = last < 0 ? 0 : ops.newBlock[last] + ops.span(last);
    const blocks = deviceBlocks ?? Math.max(Math.ceil(baseBytes / cow.blockSize), cowBlocks);
    cow.checkRanges({ deviceBlocks: blocks, sourceBytes: baseBytes });
    return new SnapshotReader(cow, base, blocks, ownsFiles);
  }

  get byteLength(): number {
    return this.blockCount * this.blockSize;
  }

  /** Fills dst[dstOffset, dstOffset + count × block_size) with blocks [start, start + count) of the new image. */
  async readBlocks(start: number, count: number, dst: Uint8Array, dstOffset = 0): Promise<void> {
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(count) || start < 0 || count < 0 || start + count > this.blockCount) {
      throw badArgument(`blocks ${start}+${count} are outside the ${this.blockCount}-block image`);
    }
    if (dstOffset < 0 || dstOffset + count * this.blockSize > dst.length) throw badArgument('destination buffer is too small');
    const ctx = this.contexts.pop() ?? new ReadContext(this.cow);
    try {
      await this.fill(ctx, start, start + count, dst, dstOffset);
    } finally {
      this.contexts.push(ctx);
    }
  }

  private async fill(ctx: ReadContext, start: number, end: number, dst: Uint8Array, out0: number): Promise<void> {
    const { ops, index } = this.cow;
    const { order } = index;
    const bs = this.blockSize;
    // A read that starts where the last one ended is likely followed by the next: read payloads ahead.
    const readahead = start === this.lastEnd;
    this.lastEnd = end;
    const kFirst = index.firstEndingAfter(start);
    let kData = kFirst;
    while (kData < order.length && ops.newBlock[order[kData]] < end && ops.dataLength[order[kData]] === 0) kData++;
    if (kData < order.length && ops.newBlock[order[kData]] < end) {
      // The payload read runs alongside the base reads.
      await settleAll([this.loadBaseLayer(start, end, dst, out0), ctx.payloadOf(order[kData], kData, end, readahead).then(() => undefined)]);
    } else {
      await this.loadBaseLayer(start, end, dst, out0);
    }
    for (let k = kFirst; k < order.length && ops.newBlock[order[k]] < end; k++) {
      const op = order[k];
      const type = ops.type(op);
      if (type === CowOpType.Copy) continue;
      const opStart = ops.newBlock[op];
      const out = out0 + (Math.max(start, opStart) - start) * bs;
      if (type === CowOpType.Zero) {
        dst.fill(0, out, out + bs);
      } else if (type === CowOpType.Xor) {
        this.cow.expandPayload(op, await ctx.payloadOf(op, k, end, readahead), ctx.block);
        xorInto(dst, out, ctx.block, ctx.blockWords);
      } else if (opStart >= start && opStart + ops.span(op) <= end) {
        this.cow.expandPayload(op, await ctx.payloadOf(op, k, end, readahead), dst.subarray(out, out + this.cow.unitSize(op)));
      } else {
        // A multi-block unit entered or left part-way: expand it whole, keep it for the next read.
        const first = Math.max(start, opStart) - opStart;
        const take = Math.min(opStart + ops.span(op), end) - Math.max(start, opStart);
        dst.set((await ctx.unitOf(op)).subarray(first * bs, (first + take) * bs), out);
      }
    }
  }

  /**
   * Fills dst with blocks [start, end) as far as the base decides them: base blocks where the COW
   * has no op (and the old bytes an in-place Xor applies to), and the sources of Copy and Xor ops,
   * read concurrently. Zero, Replace and Xor data are left to the caller. With `onlyIfTouched`,
   * a range no op touches is not read at all and the result is false.
   */
  async loadBaseLayer(start: number, end: number, dst: Uint8Array, out0 = 0, onlyIfTouched = false): Promise<boolean> {
    const { ops, index } = this.cow;
    const { order } = index;
    const bs = this.blockSize;
    const kFirst = index.firstEndingAfter(start);
    let kEnd = kFirst;
    let covered = 0;
    for (; kEnd < order.length && ops.newBlock[order[kEnd]] < end; kEnd++) {
      const op = order[kEnd];
      covered += Math.min(end, ops.newBlock[op] + ops.span(op)) - Math.max(start, ops.newBlock[op]);
    }
    if (onlyIfTouched && kEnd === kFirst) return false;
    // One read of the whole range serves every block the COW does not change; ops overwrite theirs.
    const bulk = covered < end - start;
    if (bulk) await this.readBase(dst, out0, (end - start) * bs, start * bs);
    let reads: Promise<void>[] | undefined;
    for (let k = kFirst; k < kEnd; ) {
      const op = order[k];
      const type = ops.type(op);
      const out = out0 + (Math.max(start, ops.newBlock[op]) - start) * bs;
      if (type === CowOpType.Copy) {
        let n = 1;
        while (k + n < kEnd && n < MAX_BATCH_BLOCKS && this.continues(order[k + n - 1], order[k + n], type)) n++;
        (reads ??= []).push(this.readBase(dst, out, n * bs, ops.source[op] * bs));
        k += n;
        continue;
      }
      if (type === CowOpType.Xor && !(bulk && ops.source[op] === ops.newBlock[op] * bs)) {
        (reads ??= []).push(this.readBase(dst, out, bs, ops.source[op]));
      }
      k++;
    }
    if (reads) await settleAll(reads);
    return true;
  }

  /** Whether op `next` extends a run of Zero or Copy ops ending with `prev`. */
  private continues(prev: number, next: number, type: CowOpType): boolean {
    const ops = this.cow.ops;
    if (ops.type(next) !== type || ops.newBlock[next] !== ops.newBlock[prev] + 1) return false;
    return type === CowOpType.Zero || ops.source[next] === ops.source[prev] + 1;
  }

  /** Reads base bytes; bytes past the end of the base read as zeros (an image that grew). */
  private async readBase(dst: Uint8Array, out: number, length: number, position: number): Promise<void> {
    const got = await this.base.read(dst, out, length, position);
    if (got < length) dst.fill(0, out + got, out + length);
  }

  async close(): Promise<void> {
    if (!this.ownsFiles) return;
    await this.base.close();
    await this.cow.close();
  }
}

/** Per-call scratch, pooled so concurrent reads never share buffers and steady state allocates nothing. */
class ReadContext {
  readonly block: Buffer;
  readonly blockWords: Int32Array;
  private window: Buffer;
  private windowStart = 0;
  private windowEnd = 0;
  private unit: Buffer;
  private unitOp = -1;

  constructor(private readonly cow: CowReader) {
    const maxUnit = Math.max(cow.header.maxCompressionSize, cow.blockSize);
    this.window = Buffer.allocUnsafe(Math.max(MAX_BATCH_BYTES, maxUnit, 65536));
    // Its own ArrayBuffer, so the Int32Array view over it is aligned.
    this.block = Buffer.from(new ArrayBuffer(cow.blockSize));
    this.blockWords = new Int32Array(this.block.buffer, 0, cow.blockSize >> 2);
    this.unit = Buffer.allocUnsafe(maxUnit);
  }

  /**
   * Op's payload bytes. Payloads of the ops that follow it in block order usually lie right after
   * it in the data area, so one read fetches those of the call's other ops too and, with
   * `readahead`, up to READAHEAD_BYTES of the ops after them. Payloads never change while the COW
   * is open, so the window stays valid across calls.
   */
  async payloadOf(op: number, k: number, endBlock: number, readahead: boolean): Promise<Buffer> {
    const { ops, index } = this.cow;
    const start = ops.dataOffset[op];
    const length = ops.dataLength[op];
    if (start < this.windowStart || start + length > this.windowEnd) {
      let end = start + length;
      const limit = readahead ? READAHEAD_BYTES : 0;
      for (let j = k + 1; j < index.order.length && (ops.newBlock[index.order[j]] < endBlock || end - start < limit); j++) {
        const next = index.order[j];
        if (ops.dataLength[next] === 0) continue;
        if (ops.dataOffset[next] !== end || end + ops.dataLength[next] - start > this.window.length) break;
        end += ops.dataLength[next];
      }
      if (end - start > this.window.length) this.window = Buffer.allocUnsafe(end - start);
      await readExactly(this.cow.file, this.window, 0, end - start, start, 'op data', op);
      this.windowStart = start;
      this.windowEnd = end;
    }
    return this.window.subarray(start - this.windowStart, start - this.windowStart + length);
  }

  /** The whole expanded unit of a multi-block op; the last one is kept for reads that walk through it. */
  async unitOf(op: number): Promise<Buffer> {
    if (this.unitOp !== op) {
      this.unitOp = -1;
      const unit = this.unit.subarray(0, this.cow.unitSize(op));
      await this.cow.readPayload(op, unit, this.window);
      this.windowStart = this.windowEnd = 0; // readPayload used the window as scratch
      this.unitOp = op;
    }
    return this.unit.subarray(0, this.cow.unitSize(op));
  }
}

/** Waits for every read (none may still be filling a buffer when this returns), then throws the first failure. */
async function settleAll(reads: Promise<unknown>[]): Promise<void> {
  if (reads.length === 1) {
    await reads[0];
    return;
  }
  const results = await Promise.allSettled(reads);
  for (const r of results) if (r.status === 'rejected') throw r.reason;
}

/** XORs one block into dst, a 32-bit word at a time when dst is aligned. */
export function xorInto(dst: Uint8Array, at: number, data: Buffer, words: Int32Array): void {
  if (((dst.byteOffset + at) & 3) === 0 && (data.length & 3) === 0) {
    const target = new Int32Array(dst.buffer, dst.byteOffset + at, data.length >> 2);
    for (let i = 0; i < words.length; i++) target[i] ^= words[i];
    return;
  }
  for (let i = 0; i < data.length; i++) dst[at + i] ^= data[i];
}
