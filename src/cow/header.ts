import { corrupt, CowWhere, truncated, unsupported } from './errors';
import {
  COW_FOOTER_SIZE,
  COW_HEADER_PREFIX_SIZE,
  COW_HEADER_V1_SIZE,
  COW_HEADER_V3_SIZE,
  COW_MAGIC,
  COW_OP_V2_SIZE,
  COW_OP_V3_SIZE,
  CowHeader,
  MAX_COMPRESSION_BITS,
} from './format';

const TWO_POW_32 = 0x1_0000_0000;

/** Field table for the 78-byte v3 header: [name, offset, size]. The v2 header is its first 38 bytes. */
const HEADER_FIELDS: ReadonlyArray<readonly [keyof CowHeader, number, 2 | 4 | 8]> = [
  ['majorVersion', 8, 2],
  ['minorVersion', 10, 2],
  ['headerSize', 12, 2],
  ['footerSize', 14, 2],
  ['opSize', 16, 2],
  ['blockSize', 18, 4],
  ['clusterOps', 22, 4],
  ['numMergeOps', 26, 8],
  ['bufferSize', 34, 4],
  ['sequenceDataCount', 38, 8],
  ['resumePointCount', 46, 4],
  ['resumePointMax', 50, 4],
  ['opCount', 54, 8],
  ['opCountMax', 62, 8],
  ['compressionAlgorithm', 70, 4],
  ['maxCompressionSize', 74, 4],
];

export function emptyHeader(): CowHeader {
  const h = {} as CowHeader;
  for (const [name] of HEADER_FIELDS) h[name] = 0;
  return h;
}

/** Encodes all 78 bytes; a v3 file stores exactly this. */
export function encodeHeaderV3(h: CowHeader, target: Buffer = Buffer.alloc(COW_HEADER_V3_SIZE), offset = 0): Buffer {
  target.writeBigUInt64LE(COW_MAGIC, offset);
  for (const [name, at, size] of HEADER_FIELDS) writeField(target, offset + at, size, h[name], name);
  return target;
}

/**
 * Decodes a header the way libsnapshot's ReadCowHeader does: the prefix must carry the magic and
 * a header_size of at most 78; the first header_size bytes are read over a zeroed header, so
 * fields a shorter (older) header lacks read as 0.
 */
export function decodeHeader(source: Buffer, where: CowWhere = {}): CowHeader {
  if (source.length < COW_HEADER_PREFIX_SIZE) {
    throw truncated(`header prefix needs ${COW_HEADER_PREFIX_SIZE} bytes, the file has ${source.length}`, { ...where, offset: 0 });
  }
  if (source.readBigUInt64LE(0) !== COW_MAGIC) {
    throw corrupt(`bad magic 0x${source.readBigUInt64LE(0).toString(16)}, expected 0x${COW_MAGIC.toString(16)}`, { ...where, offset: 0 });
  }
  const headerSize = source.readUInt16LE(12);
  if (headerSize > COW_HEADER_V3_SIZE) {
    throw unsupported(`header_size ${headerSize} is larger than any known header (${COW_HEADER_V3_SIZE})`, { ...where, offset: 12 });
  }
  if (headerSize < COW_HEADER_PREFIX_SIZE) {
    throw corrupt(`header_size ${headerSize} is smaller than the header prefix`, { ...where, offset: 12 });
  }
  if (source.length < headerSize) {
    throw truncated(`header needs ${headerSize} bytes, the file has ${source.length}`, { ...where, offset: source.length });
  }
  const padded = Buffer.alloc(COW_HEADER_V3_SIZE);
  source.copy(padded, 0, 0, headerSize);
  const h = emptyHeader();
  for (const [name, at, size] of HEADER_FIELDS) h[name] = readField(padded, at, size, name, where);
  return h;
}

/**
 * Checks what the v3 parser checks, plus what vab needs to read safely: sizes that add up within
 * the file, a known compression algorithm, a usable block size.
 */
export function validateHeaderV3(h: CowHeader, fileSize: number, where: CowWhere): void {
  const at = (offset: number): CowWhere => ({ ...where, offset });
  if (h.majorVersion !== 3 || h.minorVersion !== 0) throw unsupported(`version ${h.majorVersion}.${h.minorVersion} is not 3.0`, at(8));
  if (h.headerSize !== COW_HEADER_V3_SIZE) throw corrupt(`header_size ${h.headerSize} is not ${COW_HEADER_V3_SIZE} for v3`, at(12));
  if (h.footerSize !== 0) throw corrupt(`footer_size ${h.footerSize} must be 0 in v3`, at(14));
  if (h.opSize !== COW_OP_V3_SIZE) throw corrupt(`op_size ${h.opSize} is not ${COW_OP_V3_SIZE}`, at(16));
  if (h.clusterOps !== 0) throw corrupt(`cluster_ops ${h.clusterOps} must be 0 in v3`, at(22));
  validateBlockSize(h.blockSize, at(18));
  if (h.compressionAlgorithm > 4) throw unsupported(`unknown compression algorithm ${h.compressionAlgorithm}`, at(70));
  const maxUnit = h.blockSize << MAX_COMPRESSION_BITS;
  if (h.maxCompressionSize !== 0 && (h.maxCompressionSize % h.blockSize !== 0 || !isPowerOfTwo(h.maxCompressionSize) || h.maxCompressionSize > maxUnit)) {
    throw corrupt(`max_compression_size ${h.maxCompressionSize} is not a power of two from ${h.blockSize} to ${maxUnit}`, at(74));
  }
  if (h.opCount > h.opCountMax) throw corrupt(`op_count ${h.opCount} exceeds op_count_max ${h.opCountMax}`, at(54));
  if (h.resumePointCount > 0 && h.resumePointMax === 0) throw corrupt(`resume_point_count ${h.resumePointCount} with no resume buffer`, at(46));
  // Only what a reader reads must be in the file: a COW without ops or labels may end early.
  const resumeAt = h.headerSize + h.bufferSize + 4 * h.sequenceDataCount;
  const regions: Array<[string, number]> = [
    ['scratch region', h.headerSize + h.bufferSize],
    ['sequence area', resumeAt],
    ['resume buffer', resumeAt + 16 * Math.min(h.resumePointCount, h.resumePointMax)],
    ['op area', h.opCount === 0 ? 0 : resumeAt + 16 * h.resumePointMax + 16 * h.opCount],
  ];
  for (const [name, end] of regions) {
    if (end > fileSize) throw truncated(`${name} ends at ${end}, past the end of the file (${fileSize} bytes)`, at(fileSize));
  }
}

export function validateHeaderV2(h: CowHeader, fileSize: number, where: CowWhere): void {
  const at = (offset: number): CowWhere => ({ ...where, offset });
  if (h.majorVersion !== 1 && h.majorVersion !== 2) throw unsupported(`version ${h.majorVersion}.${h.minorVersion} is not 1 or 2`, at(8));
  if (h.minorVersion !== 0) throw unsupported(`minor version ${h.minorVersion} is not 0`, at(10));
  if (h.headerSize < COW_HEADER_V1_SIZE) throw corrupt(`header_size ${h.headerSize} is too small for v${h.majorVersion}`, at(12));
  if (h.footerSize !== COW_FOOTER_SIZE) throw corrupt(`footer_size ${h.footerSize} is not ${COW_FOOTER_SIZE}`, at(14));
  if (h.opSize !== COW_OP_V2_SIZE) throw corrupt(`op_size ${h.opSize} is not ${COW_OP_V2_SIZE}`, at(16));
  if (h.clusterOps === 1) throw corrupt('cluster_ops 1 is invalid: a cluster needs room for an op and its cluster op', at(22));
  validateBlockSize(h.blockSize, at(18));
  if (h.headerSize + h.bufferSize > fileSize) {
    throw truncated(`scratch region ends at ${h.headerSize + h.bufferSize}, past the end of the file (${fileSize} bytes)`, at(fileSize));
  }
}

function validateBlockSize(blockSize: number, where: CowWhere): void {
  // v2 stores a data length in a u16, so Android refuses blocks over 65535 bytes.
  if (!isPowerOfTwo(blockSize) || blockSize < 512 || blockSize > 32768) {
    throw unsupported(`block_size ${blockSize} is not a power of two from 512 to 32768`, where);
  }
}

export function isPowerOfTwo(n: number): boolean {
  return n > 0 && Number.isInteger(n) && (n & (n - 1)) === 0 && n <= 0x4000_0000;
}

function writeField(target: Buffer, offset: number, size: 2 | 4 | 8, value: number, name: string): void {
  if (!Number.isSafeInteger(value) || value < 0 || (size < 8 && value >= 2 ** (8 * size))) {
    throw new RangeError(`COW header field ${name} cannot hold ${value}`);
  }
  if (size === 2) target.writeUInt16LE(value, offset);
  else if (size === 4) target.writeUInt32LE(value, offset);
  else {
    target.writeUInt32LE(value % TWO_POW_32, offset);
    target.writeUInt32LE(Math.floor(value / TWO_POW_32), offset + 4);
  }
}

function readField(source: Buffer, offset: number, size: 2 | 4 | 8, name: string, where: CowWhere): number {
  if (size === 2) return source.readUInt16LE(offset);
  if (size === 4) return source.readUInt32LE(offset);
  const high = source.readUInt32LE(offset + 4);
  if (high > 0x1f_ffff) throw corrupt(`header field ${name} is beyond 2^53`, { ...where, offset });
  return high * TWO_POW_32 + source.readUInt32LE(offset);
}
