import type { PartitionUpdate } from './manifest';

/**
 * For each operation of a partition, how much of the new image is final once it and every
 * operation before it have been written: the longest prefix of blocks that no later operation
 * writes. A full payload settles op by op; an incremental one, whose ops jump about, settles in
 * leaps. Blocks no operation writes are final from the start (they stay zeros).
 *
 * One pass over the destination blocks, then one sweep: linear in the partition's size.
 */
export function settledAfterEachOp(partition: PartitionUpdate, blockSize: number, imageBytes: number): number[] {
  const blocks = Math.ceil(imageBytes / blockSize);
  const lastWriter = new Int32Array(blocks).fill(-1);
  partition.operations.forEach((op, index) => {
    for (const extent of op.dst_extents) {
      // Extents past the image are refused by validation; clamping keeps this safe on its own.
      const end = Math.min(blocks, extent.start_block + extent.num_blocks);
      if (extent.start_block < end) lastWriter.fill(index, extent.start_block, end);
    }
  });
  const settled: number[] = [];
  let frontier = 0;
  for (let index = 0; index < partition.operations.length; index++) {
    while (frontier < blocks && lastWriter[frontier] <= index) frontier++;
    settled.push(Math.min(frontier * blockSize, imageBytes));
  }
  return settled;
}
