import { corrupt, CowWhere, truncated } from './errors';
import { readExactly, RandomAccessFile } from './file';
import { COW_FOOTER_DATA_SIZE, COW_OP_V2_SIZE, CowCompression, CowHeader, CowOpType, isOrderedOp, opTypeName } from './format';
import { validateHeaderV2 } from './header';
import { CowOpTable } from './op-table';
import type { ParsedCow } from './parsed';

const WINDOW = 1 << 20;
const MAX_SOURCE = 2n ** 48n - 1n;
const MAX_BLOCK = 2n ** 32n - 1n;

/**
 * Parses a v1/v2 COW the way CowParserV2 does: ops are read cluster by cluster (or op, data, op,
 * data when cluster_ops is 0) until the footer, and then translated into the canonical table the
 * way Translate does (one compression algorithm per file, 48-bit sources, 32-bit blocks). Without a
 * label the footer is required and must count the ops; with one, parsing stops at that label.
 */
export async function parseV2(file: RandomAccessFile, header: CowHeader, fileSize: number, label?: bigint): Promise<ParsedCow> {
  const h = { ...header };
  validateHeaderV2(h, fileSize, { file: file.path });
  if (h.majorVersion < 2 || h.bufferSize === 0) h.bufferSize = 0; // v1 had no scratch region
  const reader = new WindowReader(file, fileSize);
  const clusterOps = h.clusterOps;
  let pos = h.headerSize + h.bufferSize;
  let dataPos = pos + (clusterOps ? clusterOps : 1) * COW_OP_V2_SIZE;
  const ops = new CowOpTable(1024);
  const recordOffsets: number[] = [];
  const sequenceParts: Array<{ offset: number; length: number; op: number }> = [];
  let streamOps = 0;
  let lastLabel: bigint | undefined;
  let footer: ParsedCow['footer'];
  let dataEnd = pos;
  let algorithm = CowCompression.None;

  parse: for (;;) {
    const inCluster = Math.min(clusterOps || 1, Math.floor((fileSize - pos) / COW_OP_V2_SIZE));
    if (inCluster === 0) break;
    for (let k = 0; k < inCluster; k++) {
      const record = await reader.slice(pos, COW_OP_V2_SIZE);
      const where: CowWhere = { file: file.path, offset: pos, op: streamOps };
      const type = record.readUInt8(0);
      const compression = record.readUInt8(1);
      const dataLength = record.readUInt16LE(2);
      const newBlock = record.readBigUInt64LE(4);
      const source = record.readBigUInt64LE(12);
      const opDataPos = dataPos;
      pos += COW_OP_V2_SIZE;
      if (type === CowOpType.Cluster) {
        if (source > BigInt(fileSize)) throw truncated(`cluster op skips ${source} bytes, past the end of the file`, where);
        pos += Number(source);
        dataPos += dataLength + clusterOps * COW_OP_V2_SIZE;
      } else {
        if (clusterOps === 0 && (type === CowOpType.Replace || type === CowOpType.Xor)) pos += dataLength;
        dataPos += dataLength + (clusterOps === 0 ? COW_OP_V2_SIZE : 0);
      }
      if (type === CowOpType.Footer) {
        await reader.slice(pos, COW_FOOTER_DATA_SIZE); // the 64 unused bytes must be there
        footer = { opsSize: Number(record.readBigUInt64LE(4)), numOps: Number(source) };
        break parse;
      }
      streamOps++;
      if (type === CowOpType.Cluster) break;
      if (type === CowOpType.Label) {
        lastLabel = source;
        if (label !== undefined && source === label) break parse;
        continue;
      }
      if (compression !== CowCompression.None) {
        if (compression > CowCompression.Zstd) throw corrupt(`unknown compression ${compression}`, where);
        if (algorithm === CowCompression.None) algorithm = compression;
        else if (algorithm !== compression) throw corrupt(`mixes compression ${algorithm} and ${compression}, which Android does not support`, where);
      }
      if (type !== CowOpType.Sequence && newBlock > MAX_BLOCK) throw corrupt(`new_block ${newBlock} does not fit in 32 bits`, where);
      if (source > MAX_SOURCE) throw corrupt(`source ${source} does not fit in 48 bits`, where);
      const src = Number(source);
      switch (type) {
        case CowOpType.Sequence:
          if (dataLength % 4 !== 0) throw corrupt(`sequence op with data_length ${dataLength}, not a multiple of 4`, where);
          checkData(src, dataLength, fileSize, where);
          sequenceParts.push({ offset: src, length: dataLength, op: streamOps - 1 });
          break;
        case CowOpType.Copy:
        case CowOpType.Zero:
          if (dataLength !== 0) throw corrupt(`${opTypeName(type)} op with data_length ${dataLength}`, where);
          recordOffsets.push(where.offset!);
          ops.push(type, 0, true, Number(newBlock), 0, src, 0);
          break;
        case CowOpType.Replace:
        case CowOpType.Xor: {
          const at = type === CowOpType.Replace ? src : opDataPos;
          if (dataLength === 0) throw corrupt(`${opTypeName(type)} op with no data`, where);
          const raw = isStoredRaw(compression, dataLength, h.blockSize);
          if (compression === CowCompression.None && dataLength !== h.blockSize) throw corrupt(`uncompressed data_length ${dataLength} is not ${h.blockSize}`, where);
          checkData(at, dataLength, fileSize, where);
          recordOffsets.push(where.offset!);
          ops.push(type, 0, raw, Number(newBlock), dataLength, src, at);
          dataEnd = Math.max(dataEnd, at + dataLength);
          break;
        }
        default:
          throw corrupt(`unknown op type ${type}`, where);
      }
    }
  }

  if (label !== undefined) {
    if (lastLabel !== label) throw corrupt(`label ${label} not found (last label ${lastLabel ?? 'none'})`, { file: file.path, offset: pos });
  } else {
    if (!footer) throw truncated('no COW footer found: the stream ends without one', { file: file.path, offset: pos });
    if (footer.numOps !== streamOps) throw corrupt(`footer counts ${footer.numOps} ops, the stream has ${streamOps}`, { file: file.path, offset: pos });
    if (footer.opsSize !== streamOps * COW_OP_V2_SIZE) throw corrupt(`footer ops_size ${footer.opsSize} is not ${streamOps} × ${COW_OP_V2_SIZE}`, { file: file.path, offset: pos });
  }
  ops.trim();
  h.compressionAlgorithm = algorithm;
  h.maxCompressionSize = h.blockSize;
  h.opCount = ops.count;
  const sequence = await readSequence(file, sequenceParts);
  return { header: h, ops, sequence, resumePoints: [], footer, lastLabel, fileSize, dataEnd, recordOffset: (op) => recordOffsets[op] ?? 0 };
}

/**
 * How a v2 reader tells raw from compressed data: an op marked uncompressed is raw; lz4 and zstd
 * fall back to raw when compression does not help, so a full block is raw; gz and brotli always
 * compress, even when the result is exactly one block long (b/310191184).
 */
function isStoredRaw(compression: number, dataLength: number, blockSize: number): boolean {
  if (compression === CowCompression.None) return true;
  if (compression === CowCompression.Lz4 || compression === CowCompression.Zstd) return dataLength === blockSize;
  return false;
}

function checkData(offset: number, length: number, fileSize: number, where: CowWhere): void {
  if (offset + length > fileSize) throw truncated(`data ${offset}..${offset + length} runs past the end of the file (${fileSize} bytes)`, { ...where, offset });
}

async function readSequence(file: RandomAccessFile, parts: Array<{ offset: number; length: number; op: number }>): Promise<Uint32Array> {
  const total = parts.reduce((sum, p) => sum + p.length / 4, 0);
  const bytes = Buffer.allocUnsafe(total * 4);
  let at = 0;
  for (const part of parts) {
    await readExactly(file, bytes, at, part.length, part.offset, 'sequence data', part.op);
    at += part.length;
  }
  const out = new Uint32Array(total);
  for (let i = 0; i < total; i++) out[i] = bytes.readUInt32LE(i * 4);
  return out;
}

/** Serves small records from a 1 MiB window so a v2 stream costs one read per window, not per op. */
class WindowReader {
  private window = Buffer.alloc(0);
  private start = 0;

  constructor(
    private readonly file: RandomAccessFile,
    private readonly fileSize: number,
  ) {}

  async slice(offset: number, length: number): Promise<Buffer> {
    if (offset + length > this.fileSize) throw truncated(`record at ${offset} runs past the end of the file`, { file: this.file.path, offset });
    if (offset < this.start || offset + length > this.start + this.window.length) {
      const size = Math.min(Math.max(WINDOW, length), this.fileSize - offset);
      const buffer = Buffer.allocUnsafe(size);
      await readExactly(this.file, buffer, 0, size, offset, 'op stream');
      this.window = buffer;
      this.start = offset;
    }
    return this.window.subarray(offset - this.start, offset - this.start + length);
  }
}

/** The ordered part of the merge order for v2, as GetSequenceDataV2 builds it (see merge-order.ts). */
export function v2OrderedBlocks(ops: CowOpTable, sequence: Uint32Array): Uint32Array {
  if (sequence.length > 0) return sequence;
  const ordered: number[] = [];
  for (let i = 0; i < ops.count; i++) if (isOrderedOp(ops.type(i))) ordered.push(ops.newBlock[i]);
  return Uint32Array.from(ordered);
}
