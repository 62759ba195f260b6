import { PartitionUpdate } from '../../src/payload/manifest';
import { settledAfterEachOp } from '../../src/payload/settled';
import { extent } from './support/build';

const BS = 4096;

function partition(dsts: Array<Array<[number, number]>>): PartitionUpdate {
  return { partition_name: 'system', operations: dsts.map((extents) => ({ type: 0, dst_extents: extents.map(([s, n]) => extent(s, n)) })) } as unknown as PartitionUpdate;
}

describe('settledAfterEachOp', () => {
  it('ops in block order settle one after another', () => {
    expect(settledAfterEachOp(partition([[[0, 2]], [[2, 3]], [[5, 1]]]), BS, 6 * BS)).toEqual([2 * BS, 5 * BS, 6 * BS]);
  });

  it('an op that writes early blocks late holds the prefix back until it has run', () => {
    // op 0 writes 2..4, op 1 writes 0..1, op 2 writes 4..6
    expect(settledAfterEachOp(partition([[[2, 2]], [[0, 2]], [[4, 2]]]), BS, 6 * BS)).toEqual([0, 4 * BS, 6 * BS]);
  });

  it('a block written twice is settled only after its last writer', () => {
    expect(settledAfterEachOp(partition([[[0, 4]], [[5, 1]], [[1, 1]]]), BS, 6 * BS)).toEqual([BS, BS, 6 * BS]);
  });

  it('blocks no op writes are settled from the start (they stay zeros)', () => {
    expect(settledAfterEachOp(partition([[[3, 1]], [[6, 2]]]), BS, 8 * BS)).toEqual([6 * BS, 8 * BS]);
  });

  it('a last block cut short of the block size ends at the image size; extents past the image are clamped', () => {
    expect(settledAfterEachOp(partition([[[0, 1]], [[1, 9]]]), BS, BS + 100)).toEqual([BS, BS + 100]);
  });

  it('several extents in one op', () => {
    expect(settledAfterEachOp(partition([[[0, 1], [3, 1]], [[1, 2]]]), BS, 4 * BS)).toEqual([BS, 4 * BS]);
  });

  it('costs nothing per block: a partition that claims 64 GiB with two ops', () => {
    const huge = 64 * 1024 * 1024 * 1024;
    expect(settledAfterEachOp(partition([[[5, 1]], [[0, 1]]]), BS, huge)).toEqual([0, huge]);
  });

  it('an extent of no blocks holds nothing back', () => {
    expect(settledAfterEachOp(partition([[[0, 1]], [[0, 0], [2, 1]]]), BS, 3 * BS)).toEqual([2 * BS, 3 * BS]);
  });
});
