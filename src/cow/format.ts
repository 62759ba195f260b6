/**
 * Android's COW ("copy-on-write") file format, as libsnapshot writes it (cow_format.h). Every
 * integer is little-endian; every struct is packed; nothing is aligned.
 *
 * v3 layout (the format vab writes):
 *
 *   0                 header (78 bytes, CowHeaderV3)
 *   header_size       scratch region (buffer_size: 2 MiB, or 0) used by the merge to stage blocks
 *   sequenceOffset    sequence area: sequence_data_count × u32 new_block values (merge order)
 *   resumeOffset      resume buffer: resume_point_max × ResumePoint {u64 label, u64 op_index}
 *   opOffset(0)       op area: op_count_max slots of 16 bytes; only the first op_count are valid
 *   dataOffset        data area: the payload of every Replace and Xor op, packed in op order
 *
 * v2 layout (read only): header (38 bytes), scratch, then ops (20 bytes each) interleaved with
 * their data, either op|data|op|data or in clusters of cluster_ops op slots followed by the
 * cluster's data, and an 84-byte footer. Labels, clusters and sequence data are ops there.
 *
 * v3 op record (CowOperationV3, 16 bytes):
 *
 *   0  u32 data_length   bytes of payload in the data area (0 for Copy and Zero)
 *   4  u32 new_block     block of the new image the op produces
 *   8  u64 source_info   bit-packed:
 *        63..60 type (4 bits)  59..57 compression factor (3 bits)  56..48 unused (zero)
 *        47..0  source: Copy = source block; Replace = absolute file offset of its data;
 *               Xor = byte offset in the source device (may be unaligned); Zero = 0
 *
 * Crash semantics: a v3 writer rewrites the header (and so op_count) only at a label or at
 * finalize, so after a crash a reader trusts op_count and ignores op slots and data past it; a
 * writer resumes from a resume point, discarding everything written after that label.
 */

export const COW_MAGIC = 0x436f77634f572121n;
/** The magic as it sits on disk ("!!WOcwoC"). */
export const COW_MAGIC_BYTES = Buffer.from([0x21, 0x21, 0x57, 0x4f, 0x63, 0x77, 0x6f, 0x43]);

/** The fixed prefix every version shares: magic, major, minor, header_size. */
export const COW_HEADER_PREFIX_SIZE = 14;
/** CowHeader (v1/v2) without the v3 extension. */
export const COW_HEADER_V2_SIZE = 38;
/** Up to and including num_merge_ops: the v1 header, which had no buffer_size. */
export const COW_HEADER_V1_SIZE = 34;
export const COW_HEADER_V3_SIZE = 78;
export const COW_OP_V2_SIZE = 20;
export const COW_OP_V3_SIZE = 16;
/** CowFooterOperation (20) + 64 unused bytes that once held two SHA-256 sums. */
export const COW_FOOTER_SIZE = 84;
export const COW_FOOTER_DATA_SIZE = 64;
export const RESUME_POINT_SIZE = 16;
/** v3 resume_point_max as libsnapshot writes it (kNumResumePoints). */
export const NUM_RESUME_POINTS = 4;
/** Scratch space for the merge's read-ahead (BUFFER_REGION_DEFAULT_SIZE). */
export const BUFFER_REGION_DEFAULT_SIZE = 2 * 1024 * 1024;
export const SCRATCH_METADATA_SIZE = 16;
export const DEFAULT_BLOCK_SIZE = 4096;
/** Largest v3 compression unit: block_size << 6 with 4 KiB blocks. */
export const MAX_COMPRESSION_BITS = 6;

/** Read-ahead state byte at the start of the scratch region (BufferState). */
export enum ReadAheadState {
  NotStarted = 0,
  InProgress = 1,
  Done = 2,
}

/** CowOperationType: a u8 in v2 ops, 4 bits in v3 source_info. */
export enum CowOpType {
  Copy = 1,
  Replace = 2,
  Zero = 3,
  Label = 4, // v2 only
  Cluster = 5, // v2 only
  Xor = 6,
  Sequence = 7, // v2 only
  Footer = 255, // v2 only
}

export const OP_TYPE_NAMES: Readonly<Record<number, string>> = {
  1: 'copy',
  2: 'replace',
  3: 'zero',
  4: 'label',
  5: 'cluster',
  6: 'xor',
  7: 'sequence',
  255: 'footer',
};

export function opTypeName(type: number): string {
  return OP_TYPE_NAMES[type] ?? `unknown(${type})`;
}

/** Ops that read the old image, so their merge order matters (IsOrderedOp). */
export function isOrderedOp(type: number): boolean {
  return type === CowOpType.Copy || type === CowOpType.Xor;
}

/** CowCompressionAlgorithm: a u8 per op in v2, a u32 for the whole file in v3. */
export enum CowCompression {
  None = 0,
  Gz = 1, // zlib-wrapped deflate (compress2), not gzip
  Brotli = 2,
  Lz4 = 3, // raw LZ4 block, no frame, no size prefix
  Zstd = 4, // one zstd frame per op
}

export type CompressionName = 'none' | 'gz' | 'brotli' | 'lz4' | 'zstd';
export const COMPRESSION_NAMES: readonly CompressionName[] = ['none', 'gz', 'brotli', 'lz4', 'zstd'];

export function compressionName(algorithm: number): string {
  return COMPRESSION_NAMES[algorithm] ?? `unknown(${algorithm})`;
}

export function compressionFromName(name: string): CowCompression | undefined {
  const index = COMPRESSION_NAMES.indexOf((name === '' ? 'none' : name) as CompressionName);
  return index < 0 ? undefined : (index as CowCompression);
}

/** The header fields vab keeps, for every version (fields a version lacks read as 0). */
export interface CowHeader {
  majorVersion: number;
  minorVersion: number;
  headerSize: number;
  footerSize: number;
  opSize: number;
  blockSize: number;
  clusterOps: number;
  numMergeOps: number;
  bufferSize: number;
  sequenceDataCount: number;
  resumePointCount: number;
  resumePointMax: number;
  opCount: number;
  opCountMax: number;
  compressionAlgorithm: number;
  maxCompressionSize: number;
}

export function sequenceOffset(h: CowHeader): number {
  return h.headerSize + h.bufferSize;
}

export function resumeOffset(h: CowHeader): number {
  return sequenceOffset(h) + 4 * h.sequenceDataCount;
}

export function opOffset(index: number, h: CowHeader): number {
  return resumeOffset(h) + RESUME_POINT_SIZE * h.resumePointMax + COW_OP_V3_SIZE * index;
}

export function dataOffset(h: CowHeader): number {
  return opOffset(h.opCountMax, h);
}

/** Where the merge's read-ahead data starts inside the scratch region (after its metadata). */
export function scratchMetadataOffset(h: CowHeader): number {
  return h.headerSize + 1;
}

export function scratchMetadataSize(h: CowHeader): number {
  return (h.bufferSize * SCRATCH_METADATA_SIZE) / h.blockSize;
}

export function scratchDataOffset(h: CowHeader): number {
  return h.headerSize + scratchMetadataSize(h);
}

/** Blocks one read-ahead window can stage (510 with a 2 MiB scratch and 4 KiB blocks). */
export function scratchWindowBlocks(h: CowHeader): number {
  return Math.floor((h.bufferSize - scratchMetadataSize(h)) / h.blockSize);
}
