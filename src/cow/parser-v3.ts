import { corrupt, CowWhere, truncated } from './errors';
import { readExactly, RandomAccessFile } from './file';
import { COW_OP_V3_SIZE, CowCompression, CowHeader, CowOpType, dataOffset, opOffset, opTypeName, RESUME_POINT_SIZE, resumeOffset, sequenceOffset } from './format';
import { validateHeaderV3 } from './header';
import { decodeResumePoint, ResumePoint } from './op';
import { CowOpTable } from './op-table';
import type { ParsedCow } from './parsed';

const OPS_PER_READ = 65536;
const TWO_POW_32 = 0x1_0000_0000;

/**
 * Parses a v3 COW the way CowParserV3 does: op_count ops (or, when resuming a writer, the ops up to
 * a label's resume point), with every Replace op's data offset equal to the running data cursor.
 * It also checks what Android leaves unchecked but vab relies on: op types, reserved bits, the
 * compression factor, data lengths, and that every payload lies inside the file.
 */
export async function parseV3(file: RandomAccessFile, header: CowHeader, fileSize: number, label?: bigint): Promise<ParsedCow> {
  const where = { file: file.path };
  validateHeaderV3(header, fileSize, where);
  const resumePoints = await readResumePoints(file, header);
  let opCount = header.opCount;
  if (label !== undefined) {
    const point = resumePoints.find((p) => p.label === label);
    if (!point) throw corrupt(`no resume point for label ${label} (have ${resumePoints.map((p) => p.label).join(', ') || 'none'})`, { ...where, offset: resumeOffset(header) });
    if (point.opIndex > header.opCountMax) throw corrupt(`resume point ${label} names op ${point.opIndex}, beyond op_count_max ${header.opCountMax}`, { ...where, offset: resumeOffset(header) });
    opCount = point.opIndex;
    // op_count_max is not held to the file size; the ops a label names must be in the file
    // before a table for them is allocated.
    const opsEnd = opOffset(opCount, header);
    if (opsEnd > fileSize) throw truncated(`resume point ${label} names ${opCount} ops, whose records end at ${opsEnd}, past the end of the file (${fileSize} bytes)`, { ...where, offset: fileSize });
  }
  const ops = new CowOpTable(opCount);
  const dataEnd = await readOps(file, header, fileSize, opCount, ops);
  const sequence = new Uint32Array(header.sequenceDataCount);
  if (sequence.length > 0) {
    await readExactly(file, new Uint8Array(sequence.buffer), 0, sequence.byteLength, sequenceOffset(header), 'sequence area');
    if (!littleEndianHost) byteSwap32(sequence);
  }
  return { header, ops, sequence, resumePoints, fileSize, dataEnd, recordOffset: (op) => opOffset(op, header) };
}

async function readOps(file: RandomAccessFile, h: CowHeader, fileSize: number, opCount: number, ops: CowOpTable): Promise<number> {
  const chunk = Buffer.allocUnsafe(Math.min(opCount, OPS_PER_READ) * COW_OP_V3_SIZE);
  const maxUnit = Math.max(h.maxCompressionSize, h.blockSize);
  let cursor = dataOffset(h);
  for (let first = 0; first < opCount; first += OPS_PER_READ) {
    const n = Math.min(OPS_PER_READ, opCount - first);
    await readExactly(file, chunk, 0, n * COW_OP_V3_SIZE, opOffset(first, h), 'op area', first);
    for (let k = 0; k < n; k++) {
      const at = k * COW_OP_V3_SIZE;
      const index = first + k;
      const dataLength = chunk.readUInt32LE(at);
      const newBlock = chunk.readUInt32LE(at + 4);
      const high = chunk.readUInt32LE(at + 12);
      const source = (high & 0xffff) * TWO_POW_32 + chunk.readUInt32LE(at + 8);
      const type = high >>> 28;
      const bits = (high >>> 25) & 7;
      // Built only for an error: a million ops must not cost a million objects.
      const where = (): CowWhere => ({ file: file.path, offset: opOffset(index, h), op: index });
      if ((high >>> 16) & 0x1ff) throw corrupt(`unused bits 48..56 of source_info are set`, where());
      if (bits !== 0 && type !== CowOpType.Replace) throw corrupt(`compression factor ${bits} on a ${opTypeName(type)} op (only replace ops span blocks)`, where());
      const unit = h.blockSize << bits;
      if (unit > maxUnit) throw corrupt(`compression unit ${unit} exceeds max_compression_size ${maxUnit}`, where());
      if (newBlock + (1 << bits) > TWO_POW_32) throw corrupt(`blocks ${newBlock}+${1 << bits} run past 2^32`, where());
      switch (type) {
        case CowOpType.Copy:
        case CowOpType.Zero:
          if (dataLength !== 0) throw corrupt(`${opTypeName(type)} op with data_length ${dataLength}`, where());
          ops.push(type, 0, true, newBlock, 0, source, 0);
          break;
        case CowOpType.Replace:
        case CowOpType.Xor: {
          if (dataLength === 0 || dataLength > unit) throw corrupt(`data_length ${dataLength} is not within 1..${unit}`, where());
          const raw = dataLength === unit;
          if (!raw && h.compressionAlgorithm === CowCompression.None) throw corrupt(`data_length ${dataLength} is not ${unit} in an uncompressed COW`, where());
          if (type === CowOpType.Replace && source !== cursor) throw corrupt(`replace data at ${source}, expected ${cursor} (the data area is packed in op order)`, where());
          if (cursor + dataLength > fileSize) throw truncated(`data ${cursor}..${cursor + dataLength} runs past the end of the file (${fileSize} bytes)`, { ...where(), offset: cursor });
          ops.push(type, bits, raw, newBlock, dataLength, source, cursor);
          cursor += dataLength;
          break;
        }
        default:
          throw corrupt(`op type ${type} (${opTypeName(type)}) is not valid in a v3 op area`, where());
      }
    }
  }
  return cursor;
}

/**
 * Reads the resume buffer. Android reads resume_point_count entries, but that count is never
 * clamped to resume_point_max and would run into the op area after many labels, so vab reads at
 * most resume_point_max.
 */
async function readResumePoints(file: RandomAccessFile, h: CowHeader): Promise<ResumePoint[]> {
  const count = Math.min(h.resumePointCount, h.resumePointMax);
  if (count === 0) return [];
  const bytes = Buffer.allocUnsafe(count * RESUME_POINT_SIZE);
  await readExactly(file, bytes, 0, bytes.length, resumeOffset(h), 'resume buffer');
  const points: ResumePoint[] = [];
  for (let i = 0; i < count; i++) {
    const { label, opIndex } = decodeResumePoint(bytes, i * RESUME_POINT_SIZE);
    if (opIndex > BigInt(h.opCountMax)) {
      throw corrupt(`resume point ${i} (label ${label}) names op ${opIndex}, beyond op_count_max ${h.opCountMax}`, { file: file.path, offset: resumeOffset(h) + i * RESUME_POINT_SIZE });
    }
    points.push({ label, opIndex: Number(opIndex) });
  }
  return points;
}

const littleEndianHost = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

function byteSwap32(values: Uint32Array): void {
  const view = new DataView(values.buffer, values.byteOffset, values.byteLength);
  for (let i = 0; i < values.length; i++) values[i] = view.getUint32(i * 4, true);
}
