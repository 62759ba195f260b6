import { CowReader } from '../../src/cow/reader';
import { CowWriter } from '../../src/cow/writer';
import { MemoryFile, textLike } from './helpers';

const BS = 4096;

async function newBlocksInMergeOrder(build: (w: CowWriter) => Promise<void>): Promise<{ order: number[]; ordered: number; problem?: string }> {
  const file = new MemoryFile('order.cow');
  const writer = await CowWriter.createOn(file, { maxBlocks: 64, scratchSpace: false });
  await build(writer);
  await writer.finalize();
  const cow = await CowReader.fromFile(file);
  const order = cow.mergeOrder();
  return { order: Array.from(order.ops, (op) => cow.ops.newBlock[op]), ordered: order.orderedCount, problem: cow.verifyMergeOrder(order)?.message };
}

describe('merge order (PrepMergeOps, user-space merge)', () => {
  it('v3 without sequence data: every op in COW order', async () => {
    const result = await newBlocksInMergeOrder(async (w) => {
      await w.addCopy(9, 1);
      await w.addCopy(3, 2);
      await w.addRawBlocks(7, textLike(BS, 1));
      await w.addZeroBlocks(5, 1);
    });
    expect(result).toEqual({ order: [9, 3, 7, 5], ordered: 4, problem: undefined });
  });

  it('v3 with sequence data: the sequence, then every other op by ascending block', async () => {
    const result = await newBlocksInMergeOrder(async (w) => {
      await w.addSequenceData([3, 9]);
      await w.addZeroBlocks(8, 1);
      await w.addCopy(9, 1);
      await w.addRawBlocks(2, textLike(BS, 1));
      await w.addCopy(3, 2);
    });
    expect(result).toEqual({ order: [3, 9, 2, 8], ordered: 2, problem: undefined });
  });

  it('finds an op that reads a block an earlier op overwrote', async () => {
    const result = await newBlocksInMergeOrder(async (w) => {
      await w.addSequenceData([2, 3]);
      await w.addCopy(2, 7);
      await w.addCopy(3, 2);
    });
    expect(result.problem).toMatch(/copy new_block 3 reads block 2, which op 0 \(copy new_block 2\) already overwrote/);
  });

  it('treats a misaligned xor as reading two blocks', async () => {
    const result = await newBlocksInMergeOrder(async (w) => {
      await w.addSequenceData([5, 6]);
      await w.addCopy(5, 9);
      await w.addXorBlocks(6, textLike(BS, 2), 4, 100); // reads bytes of blocks 4 and 5
    });
    expect(result.problem).toMatch(/reads block 5/);
  });

  it('finds ordered ops after unordered ones', async () => {
    const result = await newBlocksInMergeOrder(async (w) => {
      await w.addZeroBlocks(1, 1);
      await w.addCopy(4, 9);
    });
    expect(result.problem).toMatch(/ordered ops must all come first/);
  });
});
