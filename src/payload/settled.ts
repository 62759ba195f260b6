import type { PartitionUpdate } from './manifest';

/**
 * For each operation of a partition, how much of the new image is final once it and every
 * operation before it have been written: everything below the lowest block a later operation
 * writes. A full payload settles op by op; an incremental one, whose ops jump about, settles in
 * leaps. Blocks no operation writes are final from the start (they stay zeros).
 *
 * A suffix minimum over the ops' extents: linear in the number of extents, whatever size the
 * partition claims.
 */
export function settledAfterEachOp(partition: PartitionUpdate, blockSize: number, imageBytes: number): number[] {
  const ops = partition.operations;
  const settled = new Array<number>(ops.length);
  let lowestLaterStart = Infinity;
  for (let index = ops.length - 1; index >= 0; index--) {
    settled[index] = Math.min(lowestLaterStart * blockSize, imageBytes);
    for (const extent of ops[index].dst_extents) {
      if (extent.num_blocks > 0) lowestLaterStart = Math.min(lowestLaterStart, extent.start_block);
    }
  }
  return settled;
}
