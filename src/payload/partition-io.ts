import type { Extent } from './manifest';

/**
 * Where operations put their output. Operation appliers only ever talk to these two interfaces,
 * so the same appliers can fill an image file (`vab payload extract`) or a COW file (`vab apply`).
 * Block numbers are in the payload's block size. Calls for one partition are made one at a
 * time, in operation order; a writer may rely on that.
 */
export interface PartitionWriter {
  readonly blockSize: number;
  /** New content for `data.length / blockSize` blocks starting at `dstBlock`. */
  write(dstBlock: number, data: Buffer): Promise<void>;
  /** ZERO and DISCARD: the blocks read back as zeros. */
  zero(dstBlock: number, numBlocks: number): Promise<void>;
  /**
   * SOURCE_COPY of one contiguous run: blocks `srcBlock..` of the old image become blocks
   * `dstBlock..`. `data` holds those source blocks, already verified against the op's source
   * hash, so a writer that cannot express a copy simply writes it.
   */
  copy(srcBlock: number, dstBlock: number, numBlocks: number, data: Buffer): Promise<void>;
}

/** The old image of a partition, for incremental payloads. */
export interface SourceReader {
  /** Exactly `numBlocks * blockSize` bytes; blocks past the end of the image read as zeros. */
  read(startBlock: number, numBlocks: number): Promise<Buffer>;
  /** The image's path, when it is a file another thread may read too (to check hashes there). */
  readonly file?: string;
}

export function totalBlocks(extents: readonly Extent[]): number {
  return extents.reduce((sum, e) => sum + e.num_blocks, 0);
}

/** Reads the extents in order as one stream (an extent may repeat, and is then read twice). */
export async function readExtents(source: SourceReader, extents: readonly Extent[], blockSize: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (const extent of extents) parts.push(await source.read(extent.start_block, extent.num_blocks));
  const data = parts.length === 1 ? parts[0] : Buffer.concat(parts);
  if (data.length !== totalBlocks(extents) * blockSize) throw new Error(`source reader returned ${data.length} bytes for ${totalBlocks(extents)} blocks`);
  return data;
}

/** Writes `data` across the extents in order; `data` fills them exactly. */
export async function writeExtents(writer: PartitionWriter, extents: readonly Extent[], data: Buffer): Promise<void> {
  let at = 0;
  for (const extent of extents) {
    const length = extent.num_blocks * writer.blockSize;
    await writer.write(extent.start_block, data.subarray(at, at + length));
    at += length;
  }
}

/** A contiguous source run copied to a contiguous destination run. */
export interface CopyRun {
  src: number;
  dst: number;
  blocks: number;
}

/**
 * Pairs the source and destination extents of a copy into runs that are contiguous on both
 * sides, so each run is one `copy()` (and one COW copy op downstream).
 */
export function pairRuns(src: readonly Extent[], dst: readonly Extent[]): CopyRun[] {
  const runs: CopyRun[] = [];
  let si = 0;
  let di = 0;
  let sOff = 0;
  let dOff = 0;
  while (si < src.length && di < dst.length) {
    const blocks = Math.min(src[si].num_blocks - sOff, dst[di].num_blocks - dOff);
    if (blocks > 0) {
      const run = { src: src[si].start_block + sOff, dst: dst[di].start_block + dOff, blocks };
      const last = runs[runs.length - 1];
      if (last && last.src + last.blocks === run.src && last.dst + last.blocks === run.dst) last.blocks += blocks;
      else runs.push(run);
    }
    sOff += blocks;
    dOff += blocks;
    if (sOff === src[si].num_blocks) {
      si++;
      sOff = 0;
    }
    if (dOff === dst[di].num_blocks) {
      di++;
      dOff = 0;
    }
  }
  return runs;
}
