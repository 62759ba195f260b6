import { badArgument } from './errors';
import { openFile, RandomAccessFile, readExactly } from './file';
import { MaterializeScratch, Materializer, MergeProgress, NOTHING_MERGED, PayloadSource, settleAll } from './materialize';
import { CowReader } from './reader';

/** Largest single read the reader issues for a batch of adjacent payloads. */
const MAX_BATCH_BYTES = 1 << 20;
/** Payload bytes read past a sequential caller's range, so its next small reads find them in memory. */
const READAHEAD_BYTES = 256 << 10;

/**
 * The new image as the COW describes it over its base (the old image): what snapuserd serves for
 * every read of an updated partition. The bytes come from the Materializer; this class adds the
 * buffering a reader wants: per-call scratch reused across calls (no allocation per block), payloads
 * of adjacent ops fetched in one read, and read-ahead for sequential callers.
 */
export class SnapshotReader {
  readonly blockSize: number;
  readonly materializer: Materializer;
  private readonly contexts: ReadContext[] = [];
  private lastEnd = -1;

  constructor(
    readonly cow: CowReader,
    readonly base: RandomAccessFile,
    /** Blocks in the new image. */
    readonly blockCount: number,
    private readonly ownsFiles = false,
    /** What Copy and Xor ops read (Android's backing device); the base unless told otherwise. */
    readonly source: RandomAccessFile = base,
  ) {
    this.blockSize = cow.blockSize;
    this.materializer = new Materializer(cow, source, base);
  }

  /**
   * Opens a COW over its base. `deviceBlocks` (the new image's size) defaults to the larger of the
   * base and the COW's last block. Every op is checked against both sizes here, once.
   */
  static async open(
    cowPath: string,
    basePath: string,
    options: { deviceBlocks?: number; deviceBytes?: number; sourcePath?: string } = {},
  ): Promise<SnapshotReader> {
    const cow = await CowReader.open(cowPath);
    let base: RandomAccessFile | undefined;
    let source: RandomAccessFile | undefined;
    try {
      let blocks = options.deviceBlocks;
      if (options.deviceBytes !== undefined) {
        const bytes = options.deviceBytes;
        if (!Number.isSafeInteger(bytes) || bytes < 0 || bytes % cow.blockSize !== 0) throw badArgument(`size ${bytes} is not a multiple of the ${cow.blockSize}-byte block size`);
        blocks = bytes / cow.blockSize;
      }
      base = await openFile(basePath, 'r');
      if (options.sourcePath !== undefined && options.sourcePath !== basePath) source = await openFile(options.sourcePath, 'r');
      return await SnapshotReader.over(cow, base, blocks, true, source);
    } catch (err) {
      await source?.close();
      await base?.close();
      await cow.close();
      throw err;
    }
  }

  static async over(cow: CowReader, base: RandomAccessFile, deviceBlocks?: number, ownsFiles = false, source: RandomAccessFile = base): Promise<SnapshotReader> {
    const baseBytes = await base.size();
    const sourceBytes = source === base ? baseBytes : await source.size();
    const ops = cow.ops;
    const last = cow.index.order.length === 0 ? -1 : cow.index.order[cow.index.order.length - 1];
    const cowBlocks = last < 0 ? 0 : ops.newBlock[last] + ops.span(last);
    const blocks = deviceBlocks ?? Math.max(Math.ceil(baseBytes / cow.blockSize), cowBlocks);
    cow.checkRanges({ deviceBlocks: blocks, sourceBytes });
    return new SnapshotReader(cow, base, blocks, ownsFiles, source);
  }

  get byteLength(): number {
    return this.blockCount * this.blockSize;
  }

  /** Reads during a merge: see MergeProgress. The default view is "nothing merged". */
  setMergeProgress(progress: MergeProgress = NOTHING_MERGED): void {
    this.materializer.progress = progress;
  }

  /**
   * Fills dst[dstOffset, dstOffset + count × block_size) with blocks [start, start + count) of the
   * new image. `progress` is the merge's state as this read sees it, for the whole read (default:
   * the reader's own view, see setMergeProgress).
   */
  async readBlocks(start: number, count: number, dst: Uint8Array, dstOffset = 0, progress?: MergeProgress): Promise<void> {
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(count) || start < 0 || count < 0 || start + count > this.blockCount) {
      throw badArgument(`blocks ${start}+${count} are outside the ${this.blockCount}-block image`);
    }
    if (dstOffset < 0 || dstOffset + count * this.blockSize > dst.length) throw badArgument('destination buffer is too small');
    const ctx = this.contexts.pop() ?? new ReadContext(this.cow);
    try {
      await this.fill(ctx, start, start + count, dst, dstOffset, progress ?? this.materializer.progress);
    } finally {
      this.contexts.push(ctx);
    }
  }

  private async fill(ctx: ReadContext, start: number, end: number, dst: Uint8Array, out0: number, progress: MergeProgress): Promise<void> {
    // A read that starts where the last one ended is likely followed by the next: read payloads ahead.
    const readahead = start === this.lastEnd;
    this.lastEnd = end;
    const m = this.materializer;
    const payloads: PayloadSource = (op, k, endBlock) => ctx.payloadOf(op, k, endBlock, readahead);
    if (m.firstPayload(start, end) < 0) {
      await m.loadBaseLayer(start, end, dst, out0, false, progress);
      await m.patch(start, end, dst, out0, payloads, ctx.scratch, progress);
      return;
    }
    // Payloads are read and expanded aside while the base layer's reads fill dst, then copied in.
    await settleAll([m.loadBaseLayer(start, end, dst, out0, false, progress, ctx.scratch), m.stageReplaces(start, end, payloads, ctx.scratch)]);
    await m.patch(start, end, dst, out0, payloads, ctx.scratch, progress, true);
  }

  /** The base layer of blocks [start, end) (see Materializer.loadBaseLayer). */
  loadBaseLayer(start: number, end: number, dst: Uint8Array, out0 = 0, opBlocksOnly = false): Promise<boolean> {
    return this.materializer.loadBaseLayer(start, end, dst, out0, opBlocksOnly);
  }

  async close(): Promise<void> {
    if (!this.ownsFiles) return;
    if (this.source !== this.base) await this.source.close();
    await this.base.close();
    await this.cow.close();
  }
}

/** Per-call scratch, pooled so concurrent reads never share buffers and steady state allocates nothing. */
class ReadContext {
  readonly scratch: MaterializeScratch;
  private window: Buffer;
  private windowStart = 0;
  private windowEnd = 0;

  constructor(private readonly cow: CowReader) {
    const maxUnit = Math.max(cow.header.maxCompressionSize, cow.blockSize);
    this.window = Buffer.allocUnsafe(Math.max(MAX_BATCH_BYTES, maxUnit, 65536));
    this.scratch = new MaterializeScratch(cow);
  }

  /**
   * Op's payload bytes. Payloads of the ops that follow it in block order usually lie right after
   * it in the data area, so one read fetches those of the call's other ops too and, with
   * `readahead`, up to READAHEAD_BYTES of the ops after them. Payloads never change while the COW
   * is open, so the window stays valid across calls. `k` < 0: the op alone.
   */
  payloadOf(op: number, k: number, endBlock: number, readahead: boolean): Buffer | Promise<Buffer> {
    const start = this.cow.ops.dataOffset[op];
    const length = this.cow.ops.dataLength[op];
    // Most payloads are in the window already: no promise, no trip through the microtask queue.
    if (start >= this.windowStart && start + length <= this.windowEnd) return this.window.subarray(start - this.windowStart, start - this.windowStart + length);
    return this.fetch(op, k, endBlock, readahead);
  }

  private async fetch(op: number, k: number, endBlock: number, readahead: boolean): Promise<Buffer> {
    const { ops, index } = this.cow;
    const start = ops.dataOffset[op];
    const length = ops.dataLength[op];
    let end = start + length;
    const limit = readahead ? READAHEAD_BYTES : 0;
    for (let j = k + 1; k >= 0 && j < index.order.length && (ops.newBlock[index.order[j]] < endBlock || end - start < limit); j++) {
      const next = index.order[j];
      if (ops.dataLength[next] === 0) continue;
      if (ops.dataOffset[next] !== end || end + ops.dataLength[next] - start > this.window.length) break;
      end += ops.dataLength[next];
    }
    if (end - start > this.window.length) this.window = Buffer.allocUnsafe(end - start);
    // The window is invalid while it is being refilled (a failed read leaves it empty).
    this.windowStart = this.windowEnd = 0;
    await readExactly(this.cow.file, this.window, 0, end - start, start, 'op data', op);
    this.windowStart = start;
    this.windowEnd = end;
    return this.window.subarray(0, length);
  }
}

export { xorInto } from './materialize';
