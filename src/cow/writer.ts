import path from 'node:path';
import { fsyncDirectory } from '../util/atomic';
import { CompressionSpec, CowCodec, createCodec, parseCompression } from './codec';
import { badArgument, CowFormatError } from './errors';
import { openFile, RandomAccessFile, readExactly } from './file';
import {
  BUFFER_REGION_DEFAULT_SIZE,
  COW_HEADER_V3_SIZE,
  COW_OP_V3_SIZE,
  CowCompression,
  CowHeader,
  CowOpType,
  DEFAULT_BLOCK_SIZE,
  MAX_COMPRESSION_BITS,
  NUM_RESUME_POINTS,
  dataOffset,
  opOffset,
  RESUME_POINT_SIZE,
  resumeOffset,
  sequenceOffset,
} from './format';
import { decodeHeader, emptyHeader, encodeHeaderV3, isPowerOfTwo } from './header';
import { encodeOpV3, encodeResumePoint, MAX_OP_SOURCE, ResumePoint } from './op';
import { parseV3 } from './parser-v3';

export interface CowWriterOptions {
  blockSize?: number;
  /** "none", "gz", "brotli", "lz4", "zstd", optionally with ",level"; or a parsed spec. */
  compression?: string | CompressionSpec;
  /** Largest unit one Replace op compresses (max_compression_size): 4 KiB .. 256 KiB. */
  compressionFactor?: number;
  /** Capacity of the op area. Required unless maxBlocks is given (then one slot per block). */
  opCountMax?: number;
  /** Blocks in the new image: ops past it are refused. */
  maxBlocks?: number;
  /** Reserve the 2 MiB scratch region the merge stages blocks in (default true). */
  scratchSpace?: boolean;
  /** Ops and data are cached and written in batches of about this many blocks (cluster_ops). */
  batchBlocks?: number;
  /**
   * The file is new, empty and nobody opens it before it is renamed into place (createCow): then
   * only its final state has to be durable, so the fsyncs that order header against ops are
   * skipped (finalize still fsyncs once), and the scratch region is left to read as zeros.
   */
  unpublished?: boolean;
}

export interface CowSizeEstimate {
  opCount: number;
  /** File size the COW would have. */
  cowSize: number;
}

const TWO_POW_32 = 0x1_0000_0000;

/**
 * Writes a v3 COW as libsnapshot's CowWriterV3 lays it out. Every add* call validates all its
 * arguments before anything is cached or written. Ops and data are cached and written in batches;
 * the header (and so op_count) is written only by addLabel and finalize, after an fsync that makes
 * every op it counts durable, so a crash leaves the COW as of the last label or finalize.
 */
export class CowWriter {
  private readonly header: CowHeader;
  private readonly codec: CowCodec;
  private readonly batchBlocks: number;
  private resumePoints: ResumePoint[] = [];
  private nextDataPos: number;
  private cachedOps: Buffer = Buffer.alloc(0);
  private cachedOpCount = 0;
  private cachedData: Buffer = Buffer.alloc(0);
  private cachedDataLength = 0;
  private finalized = false;

  private constructor(
    private readonly file: RandomAccessFile | undefined,
    header: CowHeader,
    compression: CompressionSpec,
    private readonly maxBlocks: number | undefined,
    batchBlocks: number,
    private readonly unpublished = false,
  ) {
    this.header = header;
    this.codec = createCodec(compression.algorithm, compression.level, header.maxCompressionSize);
    this.batchBlocks = batchBlocks;
    this.nextDataPos = dataOffset(header);
  }

  /** Creates (or replaces) the COW at `cowPath`: header and zeroed scratch region, fsynced. */
  static async create(cowPath: string, options: CowWriterOptions): Promise<CowWriter> {
    const file = await openFile(cowPath, 'w+');
    try {
      const writer = await CowWriter.createOn(file, options);
      await fsyncDirectory(path.dirname(path.resolve(cowPath)));
      return writer;
    } catch (err) {
      await file.close();
      throw err;
    }
  }

  static async createOn(file: RandomAccessFile, options: CowWriterOptions): Promise<CowWriter> {
    const { header, compression, maxBlocks, batchBlocks } = headerFromOptions(options, false);
    const unpublished = options.unpublished ?? false;
    const writer = new CowWriter(file, header, compression, maxBlocks, batchBlocks, unpublished);
    await file.write(encodeHeaderV3(header), 0, COW_HEADER_V3_SIZE, 0);
    if (unpublished) {
      // An empty file grown by truncation reads as zeros: the scratch region costs no write.
      await file.truncate(header.headerSize + header.bufferSize);
      return writer;
    }
    if (header.bufferSize > 0) await file.write(Buffer.alloc(header.bufferSize), 0, header.bufferSize, header.headerSize);
    await file.sync();
    return writer;
  }

  /** A writer that writes nothing and counts what a COW would hold (CreateCowEstimator). */
  static estimator(options: Omit<CowWriterOptions, 'opCountMax'>): CowWriter {
    const { header, compression, maxBlocks, batchBlocks } = headerFromOptions(options, true);
    return new CowWriter(undefined, header, compression, maxBlocks, batchBlocks);
  }

  /**
   * Reopens a COW after a crash or a pause, at resume point `label` (default: the newest one).
   * Everything written after that label is discarded; the trimmed state is made durable before any
   * new op can be written, so a second crash cannot resurrect ops from the first attempt.
   */
  static async resume(cowPath: string, options: { label?: bigint; compression?: string | CompressionSpec } = {}): Promise<CowWriter> {
    const file = await openFile(cowPath, 'r+');
    try {
      return await CowWriter.resumeOn(file, options);
    } catch (err) {
      await file.close();
      throw err;
    }
  }

  static async resumeOn(file: RandomAccessFile, options: { label?: bigint; compression?: string | CompressionSpec } = {}): Promise<CowWriter> {
    const fileSize = await file.size();
    const head = Buffer.alloc(Math.min(COW_HEADER_V3_SIZE, fileSize));
    await readExactly(file, head, 0, head.length, 0, 'header');
    const header = decodeHeader(head, { file: file.path });
    const points = (await parseV3(file, header, fileSize)).resumePoints;
    const point = options.label === undefined ? points[points.length - 1] : points.find((p) => p.label === options.label);
    if (!point) throw new CowFormatError('ESTATE', `no resume point${options.label === undefined ? '' : ` for label ${options.label}`} to resume from`, { file: file.path });
    const parsed = await parseV3(file, header, fileSize, point.label);
    const spec = options.compression === undefined ? { algorithm: header.compressionAlgorithm, level: -1 } : toSpec(options.compression);
    if (spec.algorithm !== header.compressionAlgorithm) throw badArgument(`the COW is compressed with algorithm ${header.compressionAlgorithm}, not ${spec.algorithm}`);
    if (spec.level < 0) spec.level = createCodec(spec.algorithm).level;
    const writer = new CowWriter(file, header, spec, undefined, 1024);
    header.opCount = point.opIndex;
    writer.resumePoints = points.filter((p) => p.label <= point.label && p.opIndex <= point.opIndex);
    writer.nextDataPos = parsed.dataEnd;
    await writer.writeResumePointsAndHeader();
    return writer;
  }

  get opCount(): number {
    return this.header.opCount + this.cachedOpCount;
  }

  /** The newest resume point's label (where a resumed writer goes on from), if any. */
  get lastLabel(): bigint | undefined {
    return this.resumePoints[this.resumePoints.length - 1]?.label;
  }

  get headerSnapshot(): Readonly<CowHeader> {
    return { ...this.header };
  }

  /** Copy ops: new blocks [newBlock, newBlock+count) from old blocks [oldBlock, oldBlock+count). */
  async addCopy(newBlock: number, oldBlock: number, count = 1): Promise<void> {
    this.checkBlocks(newBlock, count, 'copy');
    checkInteger(oldBlock, 0, MAX_OP_SOURCE - count + 1, 'copy source block');
    this.checkCapacity(count);
    for (let i = 0; i < count; i++) this.cacheOp(CowOpType.Copy, 0, newBlock + i, oldBlock + i, 0);
    await this.flushIfFull();
  }

  /** Replace ops for whole blocks of new data, in units of up to the compression factor. */
  async addRawBlocks(newBlock: number, data: Uint8Array): Promise<void> {
    const count = this.blocksIn(data, 'replace data');
    this.checkBlocks(newBlock, count, 'replace');
    this.checkCapacity(this.replaceOpCount(count));
    const maxBits = Math.log2(this.header.maxCompressionSize / this.header.blockSize);
    let done = 0;
    while (done < count) {
      let bits = maxBits;
      while (bits > 0 && 1 << bits > count - done) bits--;
      const unitBytes = this.header.blockSize << bits;
      const start = done * this.header.blockSize;
      const payload = this.compressUnit(data.subarray(start, start + unitBytes));
      this.cacheOp(CowOpType.Replace, bits, newBlock + done, this.nextDataPos + this.cachedDataLength, payload.length);
      this.cacheData(payload);
      done += 1 << bits;
      await this.flushIfFull();
    }
  }

  /**
   * One Replace op whose unit was compressed elsewhere (another thread) with this writer's codec:
   * `payload` is what compressing the unit of `blockCount` blocks gave, or the raw unit when that
   * did not shrink it. The COW comes out as if addRawBlocks had compressed the unit here.
   */
  async addCompressedReplace(newBlock: number, blockCount: number, payload: Uint8Array): Promise<void> {
    this.checkBlocks(newBlock, blockCount, 'replace');
    const unitBlocks = this.header.maxCompressionSize / this.header.blockSize;
    if (blockCount > unitBlocks || (blockCount & (blockCount - 1)) !== 0) throw badArgument(`replace unit of ${blockCount} blocks is not a power of two up to ${unitBlocks}`);
    const unitBytes = blockCount * this.header.blockSize;
    const raw = this.codec.algorithm === CowCompression.None;
    if (payload.length === 0 || payload.length > unitBytes || (raw && payload.length !== unitBytes)) {
      throw badArgument(`replace payload is ${payload.length} bytes, not ${raw ? '' : '1 to '}${unitBytes}`);
    }
    this.checkCapacity(1);
    this.cacheOp(CowOpType.Replace, Math.log2(blockCount), newBlock, this.nextDataPos + this.cachedDataLength, payload.length);
    this.cacheData(payload);
    await this.flushIfFull();
  }

  /**
   * Xor ops: each new block is stored as (new XOR old), the old bytes starting at byte
   * (oldBlock + i) × block_size + offset of the source device. Always one op per block.
   */
  async addXorBlocks(newBlock: number, data: Uint8Array, oldBlock: number, offset: number): Promise<void> {
    const count = this.blocksIn(data, 'xor data');
    this.checkBlocks(newBlock, count, 'xor');
    checkInteger(offset, 0, this.header.blockSize - 1, 'xor offset');
    checkInteger(oldBlock, 0, Math.floor((MAX_OP_SOURCE - offset) / this.header.blockSize) - count, 'xor source block');
    this.checkCapacity(count);
    for (let i = 0; i < count; i++) {
      const start = i * this.header.blockSize;
      const payload = this.compressUnit(data.subarray(start, start + this.header.blockSize));
      this.cacheOp(CowOpType.Xor, 0, newBlock + i, (oldBlock + i) * this.header.blockSize + offset, payload.length);
      this.cacheData(payload);
      await this.flushIfFull();
    }
  }

  async addZeroBlocks(newBlock: number, count: number): Promise<void> {
    this.checkBlocks(newBlock, count, 'zero');
    this.checkCapacity(count);
    for (let i = 0; i < count; i++) this.cacheOp(CowOpType.Zero, 0, newBlock + i, 0, 0);
    await this.flushIfFull();
  }

  /** The merge order's ordered part: new_block values. Only allowed before any op or label. */
  async addSequenceData(blocks: ArrayLike<number>): Promise<void> {
    this.checkOpen();
    if (this.opCount > 0 || this.resumePoints.length > 0) throw new CowFormatError('ESTATE', 'sequence data must be written before any op or label', { file: this.file?.path });
    for (let i = 0; i < blocks.length; i++) checkInteger(blocks[i], 0, TWO_POW_32 - 1, `sequence entry ${i}`);
    this.header.sequenceDataCount = blocks.length;
    this.nextDataPos = dataOffset(this.header);
    const bytes = Buffer.alloc(blocks.length * 4);
    for (let i = 0; i < blocks.length; i++) bytes.writeUInt32LE(blocks[i], i * 4);
    if (this.file) await this.file.write(bytes, 0, bytes.length, sequenceOffset(this.header));
  }

  /** Records a resume point at the current op count and makes everything so far durable. */
  async addLabel(label: bigint): Promise<void> {
    this.checkOpen();
    checkInteger(label, 0n, 2n ** 64n - 1n, 'label');
    await this.flush();
    this.resumePoints = this.resumePoints.filter((p) => p.label < label);
    this.resumePoints.push({ label, opIndex: this.header.opCount });
    while (this.resumePoints.length > this.header.resumePointMax) this.resumePoints.shift();
    await this.writeResumePointsAndHeader();
  }

  /** Writes every cached op, then the header; truncates anything past the data; fsyncs. */
  async finalize(): Promise<void> {
    this.checkOpen();
    await this.flush();
    if (this.file) {
      if (!this.unpublished) await this.file.sync();
      await this.file.write(encodeHeaderV3(this.header), 0, COW_HEADER_V3_SIZE, 0);
      // The file ends where the data does: stale bytes from a resumed attempt go, a COW with no
      // data still spans its whole op area.
      if ((await this.file.size()) !== this.nextDataPos) await this.file.truncate(this.nextDataPos);
      await this.file.sync();
    }
    this.finalized = true;
  }

  estimate(): CowSizeEstimate {
    return { opCount: this.opCount, cowSize: this.nextDataPos + this.cachedDataLength };
  }

  async close(): Promise<void> {
    await this.file?.close();
  }

  private async writeResumePointsAndHeader(): Promise<void> {
    this.header.resumePointCount = this.resumePoints.length;
    if (!this.file) return;
    const bytes = Buffer.alloc(this.resumePoints.length * RESUME_POINT_SIZE);
    this.resumePoints.forEach((p, i) => encodeResumePoint(p, bytes, i * RESUME_POINT_SIZE));
    await this.file.write(bytes, 0, bytes.length, resumeOffset(this.header));
    // Ops, data and resume points first, then the header that points at them.
    await this.file.sync();
    await this.file.write(encodeHeaderV3(this.header), 0, COW_HEADER_V3_SIZE, 0);
    await this.file.sync();
  }

  private compressUnit(unit: Uint8Array): Uint8Array {
    if (this.codec.algorithm === CowCompression.None) return unit;
    const packed = this.codec.compress(unit);
    // A unit that does not shrink is stored raw; readers recognise it by its full length.
    return packed.length >= unit.length ? unit : packed;
  }

  private cacheOp(type: CowOpType, bits: number, newBlock: number, source: number, dataLength: number): void {
    const at = this.cachedOpCount * COW_OP_V3_SIZE;
    if (at + COW_OP_V3_SIZE > this.cachedOps.length) this.cachedOps = growBuffer(this.cachedOps, at + COW_OP_V3_SIZE);
    encodeOpV3({ type, compressionBits: bits, newBlock, source, dataLength }, this.cachedOps, at);
    this.cachedOpCount++;
    if (!this.file) this.growEstimate();
  }

  private cacheData(payload: Uint8Array): void {
    const end = this.cachedDataLength + payload.length;
    if (this.file) {
      if (end > this.cachedData.length) this.cachedData = growBuffer(this.cachedData, end);
      this.cachedData.set(payload, this.cachedDataLength);
    }
    this.cachedDataLength = end;
  }

  /** An estimator grows its op area as ops arrive, moving the data area along (as Android's does). */
  private growEstimate(): void {
    const count = this.header.opCount + this.cachedOpCount;
    if (count > this.header.opCountMax) {
      this.nextDataPos += (count - this.header.opCountMax) * COW_OP_V3_SIZE;
      this.header.opCountMax = count;
    }
  }

  private async flushIfFull(): Promise<void> {
    const limit = this.batchBlocks * this.header.blockSize;
    if (this.cachedDataLength >= limit || this.cachedOpCount * COW_OP_V3_SIZE >= limit) await this.flush();
  }

  private async flush(): Promise<void> {
    if (this.cachedOpCount === 0) return;
    if (this.file) {
      await this.file.write(this.cachedOps, 0, this.cachedOpCount * COW_OP_V3_SIZE, opOffset(this.header.opCount, this.header));
      if (this.cachedDataLength > 0) await this.file.write(this.cachedData, 0, this.cachedDataLength, this.nextDataPos);
    }
    this.header.opCount += this.cachedOpCount;
    this.nextDataPos += this.cachedDataLength;
    this.cachedOpCount = 0;
    this.cachedDataLength = 0;
  }

  private replaceOpCount(blocks: number): number {
    return replaceOpCount(blocks, this.header.maxCompressionSize / this.header.blockSize);
  }

  private blocksIn(data: Uint8Array, what: string): number {
    if (data.length === 0 || data.length % this.header.blockSize !== 0) throw badArgument(`${what} is ${data.length} bytes, not a positive multiple of ${this.header.blockSize}`);
    return data.length / this.header.blockSize;
  }

  private checkBlocks(newBlock: number, count: number, what: string): void {
    this.checkOpen();
    checkInteger(count, 1, TWO_POW_32, `${what} block count`);
    const limit = this.maxBlocks ?? TWO_POW_32;
    checkInteger(newBlock, 0, limit - count, `${what} new block`);
  }

  private checkCapacity(ops: number): void {
    if (!this.file) return;
    if (this.opCount + ops > this.header.opCountMax) {
      throw new CowFormatError('ESTATE', `${ops} more ops would exceed op_count_max ${this.header.opCountMax} (${this.opCount} already)`, { file: this.file.path });
    }
  }

  private checkOpen(): void {
    if (this.finalized) throw new CowFormatError('ESTATE', 'the COW writer is finalized', { file: this.file?.path });
  }
}

/**
 * How many Replace ops a run of `blocks` blocks becomes when units hold up to `unitBlocks` blocks:
 * whole units, then the tail split largest first (20 blocks at 16 per unit: 16 + 4).
 */
export function replaceOpCount(blocks: number, unitBlocks: number): number {
  let ops = Math.floor(blocks / unitBlocks);
  for (let rest = blocks % unitBlocks; rest > 0; rest &= rest - 1) ops++;
  return ops;
}

function headerFromOptions(options: CowWriterOptions, estimating: boolean) {
  const blockSize = options.blockSize ?? DEFAULT_BLOCK_SIZE;
  if (!isPowerOfTwo(blockSize) || blockSize < 512 || blockSize > 32768) throw badArgument(`block size ${blockSize} is not a power of two from 512 to 32768`);
  const factor = options.compressionFactor ?? blockSize;
  const maxFactor = blockSize << MAX_COMPRESSION_BITS;
  if (!isPowerOfTwo(factor) || factor < blockSize || factor > maxFactor) throw badArgument(`compression factor ${factor} is not a power of two from ${blockSize} to ${maxFactor}`);
  const maxBlocks = options.maxBlocks;
  if (maxBlocks !== undefined) checkInteger(maxBlocks, 1, TWO_POW_32, 'max blocks');
  const opCountMax = options.opCountMax ?? (estimating ? 0 : maxBlocks);
  if (opCountMax === undefined) throw badArgument('op count max is required when max blocks is not given');
  checkInteger(opCountMax, 0, 2 ** 40, 'op count max');
  const batchBlocks = options.batchBlocks ?? 1024;
  checkInteger(batchBlocks, 1, 1 << 20, 'batch blocks');
  const compression = toSpec(options.compression ?? 'none');
  const header = emptyHeader();
  Object.assign(header, {
    majorVersion: 3,
    headerSize: COW_HEADER_V3_SIZE,
    opSize: COW_OP_V3_SIZE,
    blockSize,
    bufferSize: options.scratchSpace === false ? 0 : BUFFER_REGION_DEFAULT_SIZE,
    resumePointMax: NUM_RESUME_POINTS,
    opCountMax,
    compressionAlgorithm: compression.algorithm,
    maxCompressionSize: factor,
  });
  return { header, compression, maxBlocks, batchBlocks };
}

function toSpec(compression: string | CompressionSpec): CompressionSpec {
  return typeof compression === 'string' ? parseCompression(compression) : { ...compression };
}

function checkInteger<T extends number | bigint>(value: T, min: T, max: T, what: string): void {
  const ok = typeof value === 'bigint' ? true : Number.isSafeInteger(value);
  if (!ok || value < min || value > max) throw badArgument(`${what} ${value} is not an integer from ${min} to ${max}`);
}

function growBuffer(old: Buffer, needed: number): Buffer {
  const next = Buffer.allocUnsafe(Math.max(needed, old.length * 2, 4096));
  old.copy(next);
  return next;
}
