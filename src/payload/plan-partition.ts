import { createHash } from 'node:crypto';
import { bsdiff } from './bsdiff';
import { Compression, compress } from './codecs';
import { ImageFileReader } from './image-io';
import { Extent, InstallOperation, OpType } from './manifest';
import { CopyRun } from './partition-io';

/**
 * Turns one partition's new image (and, for deltas, its old one) into install operations.
 * Full: one op per chunk, REPLACE_<codec> (or REPLACE when compression does not help); a chunk of
 * zeros is compressed like any other, since full payloads may not hold ZERO. Delta: each new
 * block found anywhere in the old image is a SOURCE_COPY; zero runs are ZERO where the minor
 * version allows it; runs of other blocks become BROTLI_BSDIFF against the old blocks at the
 * same place when that is allowed and the patch is smaller than the compressed data,
 * REPLACE_<codec> otherwise.
 */

export const REPLACE_TYPE: Record<Compression, OpType> = {
  zstd: OpType.REPLACE_ZSTD,
  xz: OpType.REPLACE_XZ,
  bz2: OpType.REPLACE_BZ,
  brotli: OpType.REPLACE, // never used for replace ops; here to make the table total
};

/** Receives op blobs in order; returns the blob's offset in the data area. */
export interface BlobSink {
  append(blob: Buffer): Promise<number>;
}

export interface PlanOptions {
  blockSize: number;
  compression: Exclude<Compression, 'brotli'>;
  /** Whether ZERO ops may be written (minor version 4 and newer deltas). */
  zeroOps: boolean;
  /** Whether BROTLI_BSDIFF ops may be written (minor version 4 and newer). */
  diffOps: boolean;
  /** Blocks per replace or diff op (AOSP uses 2 MiB chunks for full payloads). */
  chunkBlocks: number;
  onProgress?: (bytes: number) => void;
}

export interface PartitionPlan {
  operations: InstallOperation[];
  /** SOURCE_COPY runs, for the merge sequence. */
  copies: CopyRun[];
  /** SHA-256 of the new image (and the old one), taken while reading them. */
  newHash: Buffer;
  oldHash?: Buffer;
}

/** An image being read in block order; `size` is its length in bytes. */
export interface PlanImage {
  reader: ImageFileReader;
  size: number;
}

/** Chunks compressed concurrently in full payloads. */
const COMPRESS_AHEAD = 3;

type BlockClass = { kind: 'zero' } | { kind: 'copy'; src: number } | { kind: 'data' };

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest();

export async function planPartition(target: PlanImage, source: PlanImage | undefined, sink: BlobSink, options: PlanOptions): Promise<PartitionPlan> {
  return source ? planDelta(target, source, sink, options) : planFull(target, sink, options);
}

/** Reads an image chunk by chunk, hashing it on the way; returns the image's SHA-256. */
async function forEachChunk(image: PlanImage, options: Pick<PlanOptions, 'blockSize' | 'chunkBlocks' | 'onProgress'>, visit: (start: number, count: number, data: Buffer) => Promise<void>): Promise<Buffer> {
  const { blockSize, chunkBlocks } = options;
  const hash = createHash('sha256');
  const blocks = Math.ceil(image.size / blockSize);
  for (let start = 0; start < blocks; start += chunkBlocks) {
    const count = Math.min(chunkBlocks, blocks - start);
    const data = await image.reader.read(start, count);
    hash.update(data.subarray(0, Math.min(data.length, image.size - start * blockSize)));
    await visit(start, count, data);
    options.onProgress?.(count * blockSize);
  }
  return hash.digest();
}

/** One op per chunk: ZERO when the whole chunk is zero and ZERO is allowed, a replace op otherwise. */
async function planFull(target: PlanImage, sink: BlobSink, options: PlanOptions): Promise<PartitionPlan> {
  const operations: InstallOperation[] = [];
  // Several chunks compress at once (xz runs on libuv's threads); blobs still go out in op order.
  const compressing: Array<Promise<{ op: InstallOperation; blob?: Buffer }>> = [];
  const settle = async (keep: number) => {
    while (compressing.length > keep) {
      const { op, blob } = await compressing.shift()!;
      operations.push(blob ? await withBlob(op, blob, sink) : op);
    }
  };
  const zeroChunk = Buffer.alloc(options.chunkBlocks * options.blockSize);
  const newHash = await forEachChunk(target, options, async (start, count, data) => {
    const allZero = data.equals(zeroChunk.subarray(0, data.length));
    const next = allZero && options.zeroOps ? Promise.resolve({ op: zeroOp(start, count) }) : replaceOp(data, start, count, options);
    next.catch(() => undefined); // reported by settle(), in order
    compressing.push(next);
    await settle(COMPRESS_AHEAD);
  });
  await settle(0);
  return { operations, copies: [], newHash };
}

/** Per block: zero, found in the old image (copy), or new data (diff or replace), grouped in runs. */
async function planDelta(target: PlanImage, source: PlanImage, sink: BlobSink, options: PlanOptions): Promise<PartitionPlan> {
  const { blockSize } = options;
  const old = await indexBlocks(source, blockSize);
  const oldImage = { reader: source.reader, blocks: old.keys.length };
  const operations: InstallOperation[] = [];
  const copies: CopyRun[] = [];
  const zeroBlock = Buffer.alloc(blockSize);
  const newHash = await forEachChunk(target, options, async (chunkStart, count, data) => {
    const classes: BlockClass[] = [];
    for (let i = 0; i < count; i++) {
      const block = data.subarray(i * blockSize, (i + 1) * blockSize);
      if (block.equals(zeroBlock)) {
        classes.push({ kind: 'zero' });
        continue;
      }
      const key = blockKey(block);
      // An unchanged block stays where it is (a copy onto itself costs nothing to merge).
      const src = old.keys[chunkStart + i] === key ? chunkStart + i : old.index.get(key);
      classes.push(src !== undefined ? { kind: 'copy', src } : { kind: 'data' });
    }
    for (const group of groupRuns(classes)) {
      const start = chunkStart + group.first;
      const bytes = data.subarray(group.first * blockSize, (group.first + group.count) * blockSize);
      if (group.kind === 'zero' && options.zeroOps) operations.push(zeroOp(start, group.count));
      else if (group.kind === 'zero') operations.push(await replaceWithBlob(bytes, start, group.count, sink, options));
      else if (group.kind === 'copy') operations.push(await copyOp(source.reader, group.sources, start, copies));
      else operations.push(await dataOp(bytes, start, group.count, oldImage, sink, options));
    }
  });
  return { operations, copies, newHash, oldHash: old.hash };
}

/** Each old block's content key, the first block holding each content, and the image's hash. */
async function indexBlocks(image: PlanImage, blockSize: number): Promise<{ keys: string[]; index: Map<string, number>; hash: Buffer }> {
  const keys: string[] = [];
  const index = new Map<string, number>();
  const hash = await forEachChunk(image, { blockSize, chunkBlocks: 1024 }, async (start, count, data) => {
    for (let i = 0; i < count; i++) {
      const key = blockKey(data.subarray(i * blockSize, (i + 1) * blockSize));
      keys.push(key);
      if (!index.has(key)) index.set(key, start + i);
    }
  });
  return { keys, index, hash };
}

function blockKey(block: Buffer): string {
  return createHash('sha256').update(block).digest('base64');
}

interface Group {
  kind: BlockClass['kind'];
  first: number;
  count: number;
  sources: number[];
}

function groupRuns(classes: readonly BlockClass[]): Group[] {
  const groups: Group[] = [];
  classes.forEach((c, i) => {
    const last = groups[groups.length - 1];
    if (last && last.kind === c.kind) {
      last.count++;
      if (c.kind === 'copy') last.sources.push(c.src);
    } else {
      groups.push({ kind: c.kind, first: i, count: 1, sources: c.kind === 'copy' ? [c.src] : [] });
    }
  });
  return groups;
}

function extent(start: number, blocks: number): Extent {
  return { start_block: start, num_blocks: blocks };
}

function zeroOp(start: number, blocks: number): InstallOperation {
  return { type: OpType.ZERO, src_extents: [], dst_extents: [extent(start, blocks)] };
}

async function withBlob(op: InstallOperation, blob: Buffer, sink: BlobSink): Promise<InstallOperation> {
  op.data_offset = await sink.append(blob);
  op.data_length = blob.length;
  op.data_sha256_hash = sha256(blob);
  return op;
}

/** A replace op for a chunk and its blob (compressed, or raw when compression does not help). */
async function replaceOp(data: Buffer, start: number, blocks: number, options: PlanOptions): Promise<{ op: InstallOperation; blob: Buffer }> {
  const packed = await compress(options.compression, data);
  const useRaw = packed.length >= data.length;
  return { op: { type: useRaw ? OpType.REPLACE : REPLACE_TYPE[options.compression], src_extents: [], dst_extents: [extent(start, blocks)] }, blob: useRaw ? data : packed };
}

async function replaceWithBlob(data: Buffer, start: number, blocks: number, sink: BlobSink, options: PlanOptions): Promise<InstallOperation> {
  const { op, blob } = await replaceOp(data, start, blocks, options);
  return withBlob(op, blob, sink);
}

async function copyOp(source: ImageFileReader, sources: readonly number[], dstStart: number, copies: CopyRun[]): Promise<InstallOperation> {
  const srcExtents: Extent[] = [];
  for (const block of sources) {
    const last = srcExtents[srcExtents.length - 1];
    if (last && last.start_block + last.num_blocks === block) last.num_blocks++;
    else srcExtents.push(extent(block, 1));
  }
  let dst = dstStart;
  for (const e of srcExtents) {
    copies.push({ src: e.start_block, dst, blocks: e.num_blocks });
    dst += e.num_blocks;
  }
  const hash = createHash('sha256');
  for (const e of srcExtents) hash.update(await source.read(e.start_block, e.num_blocks));
  return { type: OpType.SOURCE_COPY, src_extents: srcExtents, dst_extents: [extent(dstStart, sources.length)], src_sha256_hash: hash.digest() };
}

async function dataOp(data: Buffer, start: number, blocks: number, source: { reader: ImageFileReader; blocks: number }, sink: BlobSink, options: PlanOptions): Promise<InstallOperation> {
  const replace = await replaceOp(data, start, blocks, options);
  // The old blocks at the same place are the diff base: images updated in place keep their layout.
  const srcBlocks = Math.min(blocks, source.blocks - start);
  if (srcBlocks > 0 && options.diffOps) {
    const old = await source.reader.read(start, srcBlocks);
    const patch = await bsdiff(old, data);
    if (patch.length < replace.blob.length) {
      const op: InstallOperation = { type: OpType.BROTLI_BSDIFF, src_extents: [extent(start, srcBlocks)], dst_extents: [extent(start, blocks)], src_sha256_hash: sha256(old) };
      return withBlob(op, patch, sink);
    }
  }
  return withBlob(replace.op, replace.blob, sink);
}
