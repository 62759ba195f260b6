import { COW_OP_V2_SIZE, COW_OP_V3_SIZE, RESUME_POINT_SIZE } from './format';

/**
 * source_info of a v3 op, split into its 32-bit halves so no BigInt is needed on the hot path.
 * The high word holds: bits 31..28 type, 27..25 compression factor, 24..16 unused, 15..0 the top
 * 16 bits of the 48-bit source.
 */
const TYPE_SHIFT = 28; // bit 60 of source_info
const TYPE_MASK = 0xf;
const COMPRESSION_SHIFT = 25; // bit 57 of source_info
const COMPRESSION_MASK = 0x7;
const UNUSED_SHIFT = 16; // bits 48..56
const UNUSED_MASK = 0x1ff;
const SOURCE_HIGH_MASK = 0xffff;
const TWO_POW_32 = 0x1_0000_0000;
/** The largest value the 48-bit source field holds. */
export const MAX_OP_SOURCE = 2 ** 48 - 1;

/** One op as it sits in a v3 op slot. */
export interface CowOpV3 {
  type: number;
  /** log2(unit / block_size): how many blocks a Replace op covers (1 << bits). */
  compressionBits: number;
  newBlock: number;
  source: number;
  dataLength: number;
  /** Bits 48..56 of source_info; always 0 in a valid op. */
  unused?: number;
}

export function encodeOpV3(op: CowOpV3, target: Buffer = Buffer.alloc(COW_OP_V3_SIZE), offset = 0): Buffer {
  if (!Number.isSafeInteger(op.source) || op.source < 0 || op.source > MAX_OP_SOURCE) {
    throw new RangeError(`COW op source ${op.source} does not fit in 48 bits`);
  }
  if (op.newBlock < 0 || op.newBlock >= TWO_POW_32 || op.dataLength < 0 || op.dataLength >= TWO_POW_32) {
    throw new RangeError(`COW op new_block ${op.newBlock} or data_length ${op.dataLength} does not fit in 32 bits`);
  }
  const high =
    ((op.type & TYPE_MASK) << TYPE_SHIFT) |
    ((op.compressionBits & COMPRESSION_MASK) << COMPRESSION_SHIFT) |
    (((op.unused ?? 0) & UNUSED_MASK) << UNUSED_SHIFT) |
    Math.floor(op.source / TWO_POW_32);
  target.writeUInt32LE(op.dataLength, offset);
  target.writeUInt32LE(op.newBlock, offset + 4);
  target.writeUInt32LE(op.source % TWO_POW_32, offset + 8);
  target.writeUInt32LE(high >>> 0, offset + 12);
  return target;
}

export function decodeOpV3(source: Buffer, offset = 0): CowOpV3 {
  const high = source.readUInt32LE(offset + 12);
  return {
    type: high >>> TYPE_SHIFT,
    compressionBits: (high >>> COMPRESSION_SHIFT) & COMPRESSION_MASK,
    newBlock: source.readUInt32LE(offset + 4),
    source: (high & SOURCE_HIGH_MASK) * TWO_POW_32 + source.readUInt32LE(offset + 8),
    dataLength: source.readUInt32LE(offset),
    unused: (high >>> UNUSED_SHIFT) & UNUSED_MASK,
  };
}

/** One op as it sits in a v1/v2 stream (CowOperationV2). */
export interface CowOpV2 {
  type: number;
  compression: number;
  dataLength: number;
  /** u64 on disk; kept as bigint because Label ops use all 64 bits of source. */
  newBlock: bigint;
  source: bigint;
}

export function decodeOpV2(source: Buffer, offset = 0): CowOpV2 {
  return {
    type: source.readUInt8(offset),
    compression: source.readUInt8(offset + 1),
    dataLength: source.readUInt16LE(offset + 2),
    newBlock: source.readBigUInt64LE(offset + 4),
    source: source.readBigUInt64LE(offset + 12),
  };
}

export function encodeOpV2(op: CowOpV2, target: Buffer = Buffer.alloc(COW_OP_V2_SIZE), offset = 0): Buffer {
  target.writeUInt8(op.type, offset);
  target.writeUInt8(op.compression, offset + 1);
  target.writeUInt16LE(op.dataLength, offset + 2);
  target.writeBigUInt64LE(op.newBlock, offset + 4);
  target.writeBigUInt64LE(op.source, offset + 12);
  return target;
}

/** A v3 resume point: the op count at the moment label `label` was emitted. */
export interface ResumePoint {
  label: bigint;
  opIndex: number;
}

export function encodeResumePoint(point: ResumePoint, target: Buffer = Buffer.alloc(RESUME_POINT_SIZE), offset = 0): Buffer {
  target.writeBigUInt64LE(point.label, offset);
  target.writeBigUInt64LE(BigInt(point.opIndex), offset + 8);
  return target;
}

export function decodeResumePoint(source: Buffer, offset = 0): { label: bigint; opIndex: bigint } {
  return { label: source.readBigUInt64LE(offset), opIndex: source.readBigUInt64LE(offset + 8) };
}
