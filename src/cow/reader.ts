import { CodecError, CowCodec, createCodec } from './codec';
import { corrupt, unsupported } from './errors';
import { openFile, RandomAccessFile, readExactly } from './file';
import { COW_HEADER_V3_SIZE, CowHeader, CowOpType } from './format';
import { decodeHeader } from './header';
import { computeMergeOrder, MergeOrder, MergeOrderProblem, verifyMergeOrder } from './merge-order';
import { BlockIndex, CowOpTable } from './op-table';
import type { ParsedCow } from './parsed';
import { parseV2 } from './parser-v2';
import { parseV3 } from './parser-v3';

export interface CowReaderOptions {
  /**
   * Parse only up to this label's resume point (v3) or label op (v2), as a writer resuming after a
   * crash does. Such a parse skips the merge-order checks, as libsnapshot's does.
   */
  label?: bigint;
}

/** Size limits of the devices a COW is used with, for `checkRanges`. */
export interface CowRanges {
  /** Blocks in the new image: every op must produce blocks below this. */
  deviceBlocks?: number;
  /** Bytes in the source (old) image: every Copy and Xor op must read below this. */
  sourceBytes?: number;
}

/**
 * A parsed, validated COW: header, ops (canonical table, whatever the version), block index and
 * merge order. Opening checks the whole structure, so a reader that opened can serve reads without
 * meeting a malformed op; only payload bytes are checked lazily, when they are decompressed.
 */
export class CowReader {
  readonly header: CowHeader;
  readonly ops: CowOpTable;
  readonly index: BlockIndex;
  readonly codec: CowCodec;

  private constructor(
    readonly file: RandomAccessFile,
    readonly parsed: ParsedCow,
    private readonly ownsFile: boolean,
  ) {
    this.header = parsed.header;
    this.ops = parsed.ops;
    this.index = new BlockIndex(parsed.ops, (op) => ({ file: file.path, offset: parsed.recordOffset(op), op }));
    const maxUnit = Math.max(this.header.maxCompressionSize, this.header.blockSize);
    this.codec = createCodec(this.header.compressionAlgorithm, undefined, maxUnit);
  }

  static async open(path: string, options: CowReaderOptions = {}): Promise<CowReader> {
    const file = await openFile(path, 'r');
    try {
      return await CowReader.fromFile(file, options, true);
    } catch (err) {
      await file.close();
      throw err;
    }
  }

  static async fromFile(file: RandomAccessFile, options: CowReaderOptions = {}, ownsFile = false): Promise<CowReader> {
    const fileSize = await file.size();
    const head = Buffer.alloc(Math.min(COW_HEADER_V3_SIZE, fileSize));
    await readExactly(file, head, 0, head.length, 0, 'header');
    const header = decodeHeader(head, { file: file.path });
    let parsed: ParsedCow;
    if (header.majorVersion === 1 || header.majorVersion === 2) parsed = await parseV2(file, header, fileSize, options.label);
    else if (header.majorVersion === 3) parsed = await parseV3(file, header, fileSize, options.label);
    else throw unsupported(`unknown COW version ${header.majorVersion}.${header.minorVersion}`, { file: file.path, offset: 8 });
    const reader = new CowReader(file, parsed, ownsFile);
    if (options.label === undefined) computeMergeOrder(parsed, reader.index, file.path);
    return reader;
  }

  get path(): string {
    return this.file.path;
  }

  get blockSize(): number {
    return this.header.blockSize;
  }

  /** Bytes of the whole data area in use (end of the last payload minus its start). */
  get dataEnd(): number {
    return this.parsed.dataEnd;
  }

  /** Memory held per op by the op table and the block index. */
  bytesPerOp(): number {
    return this.ops.count === 0 ? 0 : (this.ops.byteLength() + this.index.order.byteLength) / this.ops.count;
  }

  /** The merge order; computed on each call (4 bytes per op) so an idle reader does not hold it. */
  mergeOrder(): MergeOrder {
    return computeMergeOrder(this.parsed, this.index, this.path);
  }

  verifyMergeOrder(order: MergeOrder = this.mergeOrder()): MergeOrderProblem | undefined {
    return verifyMergeOrder(order, this.ops, this.blockSize);
  }

  /** Bytes an op's payload expands to: one block, or block_size << bits for a multi-block Replace. */
  unitSize(op: number): number {
    return this.blockSize << this.ops.compressionBits(op);
  }

  /** Rejects ops that fall outside the devices the COW will be used with. */
  checkRanges(ranges: CowRanges): void {
    const { ops } = this;
    for (let op = 0; op < ops.count; op++) {
      const where = { file: this.path, offset: this.parsed.recordOffset(op), op };
      if (ranges.deviceBlocks !== undefined && ops.newBlock[op] + ops.span(op) > ranges.deviceBlocks) {
        throw corrupt(`${ops.describe(op)} is past the end of the ${ranges.deviceBlocks}-block device`, where);
      }
      if (ranges.sourceBytes === undefined) continue;
      const type = ops.type(op);
      const end = type === CowOpType.Copy ? (ops.source[op] + 1) * this.blockSize : type === CowOpType.Xor ? ops.source[op] + this.blockSize : 0;
      if (end > ranges.sourceBytes) throw corrupt(`${ops.describe(op)} reads source bytes up to ${end}, past the ${ranges.sourceBytes}-byte source`, where);
    }
  }

  /**
   * Reads and expands op's payload into `dst` (exactly unitSize(op) bytes). `scratch` holds the
   * compressed bytes on the way; it must be at least dataLength long.
   */
  async readPayload(op: number, dst: Uint8Array, scratch: Uint8Array): Promise<void> {
    const length = this.ops.dataLength[op];
    const offset = this.ops.dataOffset[op];
    if (this.ops.isRaw(op)) {
      await readExactly(this.file, dst, 0, length, offset, 'op data', op);
      return;
    }
    await readExactly(this.file, scratch, 0, length, offset, 'op data', op);
    this.expandPayload(op, scratch.subarray(0, length), dst);
  }

  /** Expands payload bytes already read from the file into `dst` (exactly unitSize(op) bytes). */
  expandPayload(op: number, payload: Uint8Array, dst: Uint8Array): void {
    if (this.ops.isRaw(op)) {
      if (payload.length !== dst.length) throw corrupt(`raw data is ${payload.length} bytes, expected ${dst.length}`, this.dataWhere(op));
      dst.set(payload);
      return;
    }
    try {
      this.codec.decompressInto(payload, dst);
    } catch (err) {
      if (err instanceof CodecError) throw corrupt(`data does not decompress to ${dst.length} bytes: ${err.message}`, { ...this.dataWhere(op), cause: err });
      throw err;
    }
  }

  private dataWhere(op: number): { file: string; offset: number; op: number } {
    return { file: this.path, offset: this.ops.dataOffset[op], op };
  }

  async close(): Promise<void> {
    if (this.ownsFile) await this.file.close();
  }
}
