import { badArgument } from './errors';
import { openFile, RandomAccessFile, readExactly } from './file';
import { CowOpType } from './format';
import { CowReader } from './reader';

/** Largest single read the reader issues for a batch of adjacent blocks or payloads. */
const MAX_BATCH_BYTES = 1 << 20;

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

  private async fill(ctx: ReadContext, block: number, end: number, dst: Uint8Array, out: number): Promise<void> {
    const { ops, index } = this.cow;
    const bs = this.blockSize;
    let k = index.firstEndingAfter(block);
    while (block < end) {
      const op = k < index.order.length ? index.order[k] : -1;
      const opStart = op < 0 ? Infinity : ops.newBlock[op];
      if (opStart > block) {
        const runEnd = Math.min(end, opStart);
        await this.readBase(dst, out, (runEnd - block) * bs, block * bs);
        out += (runEnd - block) * bs;
        block = runEnd;
        continue;
      }
      const type = ops.type(op);
      // How many ops from k on form one batch: same type, adjacent blocks, within [block, end).
      let n = 1;
      const maxOps = Math.min(end - block, MAX_BATCH_BYTES / bs);
      if (type !== CowOpType.Replace || ops.span(op) === 1) {
        while (n < maxOps && k + n < index.order.length && this.extends(index.order[k + n - 1], index.order[k + n], type)) n++;
      }
      if (type === CowOpType.Zero) {
        dst.fill(0, out, out + n * bs);
      } else if (type === CowOpType.Copy) {
        await this.readBase(dst, out, n * bs, ops.source[op] * bs);
      } else if (type === CowOpType.Xor) {
        await this.readXor(ctx, k, n, dst, out);
      } else if (ops.span(op) === 1) {
        await this.readPayloads(ctx, k, n, dst, out);
      } else {
        // One multi-block unit, possibly entered or left part-way.
        const first = block - opStart;
        const take = Math.min(ops.span(op) - first, end - block);
        if (first === 0 && take === ops.span(op)) await this.readPayloads(ctx, k, 1, dst, out);
        else dst.set((await ctx.unitOf(op)).subarray(first * bs, (first + take) * bs), out);
        n = 1;
        block += take;
        out += take * bs;
        k++;
        continue;
      }
      block += n;
      out += n * bs;
      k += n;
    }
  }

  /** Whether op `next` continues a batch ending with op `prev` (both at consecutive blocks). */
  private extends(prev: number, next: number, type: CowOpType): boolean {
    const ops = this.cow.ops;
    if (ops.type(next) !== type || ops.newBlock[next] !== ops.newBlock[prev] + 1) return false;
    if (type === CowOpType.Copy) return ops.source[next] === ops.source[prev] + 1;
    if (type === CowOpType.Replace) return ops.span(next) === 1 && ops.dataOffset[next] === ops.dataOffset[prev] + ops.dataLength[prev];
    if (type === CowOpType.Xor) return ops.dataOffset[next] === ops.dataOffset[prev] + ops.dataLength[prev];
    return true;
  }

  /** Reads base bytes; bytes past the end of the base read as zeros (an image that grew). */
  private async readBase(dst: Uint8Array, out: number, length: number, position: number): Promise<void> {
    const got = await this.base.read(dst, out, length, position);
    if (got < length) dst.fill(0, out + got, out + length);
  }

  /** n Replace ops whose payloads lie back to back: one read, then expand each into place. */
  private async readPayloads(ctx: ReadContext, k: number, n: number, dst: Uint8Array, out: number): Promise<void> {
    const { ops, index } = this.cow;
    const first = index.order[k];
    const unit = this.cow.unitSize(first);
    let allRaw = true;
    for (let i = 0; i < n && allRaw; i++) allRaw = ops.isRaw(index.order[k + i]);
    if (allRaw) {
      // Raw payloads at adjacent blocks, stored back to back: read them straight into place.
      await ctx.readInto(first, index.order[k + n - 1], dst, out);
      return;
    }
    const bytes = await ctx.readData(first, index.order[k + n - 1]);
    let at = 0;
    for (let i = 0; i < n; i++) {
      const op = index.order[k + i];
      const length = ops.dataLength[op];
      this.cow.expandPayload(op, bytes.subarray(at, at + length), dst.subarray(out + i * unit, out + (i + 1) * unit));
      at += length;
    }
  }

  /** n Xor ops at consecutive blocks: read each op's source bytes, expand payloads, XOR them in. */
  private async readXor(ctx: ReadContext, k: number, n: number, dst: Uint8Array, out: number): Promise<void> {
    const { ops, index } = this.cow;
    const bs = this.blockSize;
    let sourceRun = 0;
    for (let i = 0; i < n; i += sourceRun) {
      const op = index.order[k + i];
      sourceRun = 1;
      while (i + sourceRun < n && ops.source[index.order[k + i + sourceRun]] === ops.source[op] + sourceRun * bs) sourceRun++;
      await this.readBase(dst, out + i * bs, sourceRun * bs, ops.source[op]);
    }
    const bytes = await ctx.readData(index.order[k], index.order[k + n - 1]);
    const aligned = ((dst.byteOffset + out) & 3) === 0 && (bs & 3) === 0;
    const words = aligned ? new Int32Array(dst.buffer, dst.byteOffset + out, (n * bs) >> 2) : undefined;
    let at = 0;
    for (let i = 0; i < n; i++) {
      const op = index.order[k + i];
      const length = ops.dataLength[op];
      this.cow.expandPayload(op, bytes.subarray(at, at + length), ctx.block);
      if (words) xorWords(words, i * (bs >> 2), ctx.blockWords);
      else xorBytes(dst, out + i * bs, ctx.block);
      at += length;
    }
  }

  async close(): Promise<void> {
    if (!this.ownsFiles) return;
    await this.base.close();
    await this.cow.close();
  }
}

/** Per-call scratch, pooled so concurrent reads never share buffers and steady state allocates nothing. */
class ReadContext {
  payload: Buffer;
  readonly block: Buffer;
  readonly blockWords: Int32Array;
  private unit: Buffer;
  private unitOp = -1;

  constructor(private readonly cow: CowReader) {
    const maxUnit = Math.max(cow.header.maxCompressionSize, cow.blockSize);
    this.payload = Buffer.allocUnsafe(Math.max(MAX_BATCH_BYTES, maxUnit, 65536));
    // Its own ArrayBuffer, so the Int32Array view over it is aligned.
    this.block = Buffer.from(new ArrayBuffer(cow.blockSize));
    this.blockWords = new Int32Array(this.block.buffer, 0, cow.blockSize >> 2);
    this.unit = Buffer.allocUnsafe(maxUnit);
  }

  /** The payloads of ops first..last, which lie back to back in the file, in one read. */
  async readData(first: number, last: number): Promise<Buffer> {
    const length = this.span(first, last);
    if (length > this.payload.length) this.payload = Buffer.allocUnsafe(length);
    await this.readInto(first, last, this.payload, 0);
    return this.payload.subarray(0, length);
  }

  async readInto(first: number, last: number, dst: Uint8Array, at: number): Promise<void> {
    const start = this.cow.ops.dataOffset[first];
    await readExactly(this.cow.file, dst, at, this.span(first, last), start, 'op data', first);
  }

  private span(first: number, last: number): number {
    const ops = this.cow.ops;
    return ops.dataOffset[last] + ops.dataLength[last] - ops.dataOffset[first];
  }

  /** The whole expanded unit of a multi-block op; the last one is kept for reads that walk through it. */
  async unitOf(op: number): Promise<Buffer> {
    if (this.unitOp !== op) {
      this.unitOp = -1;
      const unit = this.unit.subarray(0, this.cow.unitSize(op));
      await this.cow.readPayload(op, unit, this.payload);
      this.unitOp = op;
    }
    return this.unit.subarray(0, this.cow.unitSize(op));
  }
}

function xorWords(dst: Int32Array, at: number, data: Int32Array): void {
  for (let i = 0; i < data.length; i++) dst[at + i] ^= data[i];
}

function xorBytes(dst: Uint8Array, at: number, data: Uint8Array): void {
  for (let i = 0; i < data.length; i++) dst[at + i] ^= data[i];
}
