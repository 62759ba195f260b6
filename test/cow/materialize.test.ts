import { CowReader } from '../../src/cow/reader';
import { CowWriter } from '../../src/cow/writer';
import { SnapshotReader } from '../../src/cow/snapshot-reader';
import { MergeProgress, OrderedLocation } from '../../src/cow/materialize';
import { MemoryFile, pseudoRandom, textLike } from './helpers';

const BS = 4096;
const BLOCKS = 16;

/** Copy 0 ← 5, Xor 1 ← old block 2 + 10 bytes, Copy 2 ← 3, Replace 6..7; the rest unchanged. */
async function build() {
  const old = textLike(BLOCKS * BS, 3);
  const expected = Buffer.from(old);
  const cowFile = new MemoryFile('m.cow');
  const writer = await CowWriter.createOn(cowFile, { compression: 'zstd', maxBlocks: BLOCKS, scratchSpace: false });
  await writer.addSequenceData([0, 1, 2]);
  await writer.addCopy(0, 5);
  old.copy(expected, 0, 5 * BS, 6 * BS);
  const changed = Buffer.from(old.subarray(BS, 2 * BS));
  changed.write('edited', 99);
  const xored = Buffer.alloc(BS);
  for (let i = 0; i < BS; i++) xored[i] = changed[i] ^ old[2 * BS + 10 + i];
  await writer.addXorBlocks(1, xored, 2, 10);
  changed.copy(expected, BS);
  await writer.addCopy(2, 3);
  old.copy(expected, 2 * BS, 3 * BS, 4 * BS);
  const replaced = pseudoRandom(2 * BS, 8);
  await writer.addRawBlocks(6, replaced);
  replaced.copy(expected, 6 * BS);
  await writer.finalize();
  return { old, expected, cow: await CowReader.fromFile(cowFile) };
}

describe('materializer merge-progress view', () => {
  it('serves merged blocks from base and staged ones from scratch, even after their sources were overwritten', async () => {
    const { old, expected, cow } = await build();
    const opOf = (block: number): number => cow.index.order.find((op) => cow.ops.newBlock[op] === block)!;
    // Mid-merge: block 0's op is merged (base holds NEW block 0), block 1's window is staged in
    // scratch, block 2's op is pending. The sources of 0 and 1 (old blocks 5 and 2) were overwritten.
    const base = Buffer.from(old);
    expected.copy(base, 0, 0, BS);
    base.fill(0xee, 5 * BS, 6 * BS);
    base.fill(0xdd, 2 * BS, 3 * BS);
    const staged = new Map([[opOf(1), expected.subarray(BS, 2 * BS)]]);
    const located: number[] = [];
    const progress: MergeProgress = {
      active: true,
      locate(op) {
        located.push(op);
        if (op === opOf(0)) return OrderedLocation.Base;
        return staged.has(op) ? OrderedLocation.Scratch : OrderedLocation.Source;
      },
      async readScratch(op, dst, at) {
        dst.set(staged.get(op)!, at);
      },
    };
    const snapshot = await SnapshotReader.over(cow, new MemoryFile('base', base), BLOCKS);
    // The default view ("nothing merged") would build blocks 0 and 1 from the overwritten sources.
    const naive = Buffer.alloc(BLOCKS * BS);
    await snapshot.readBlocks(0, BLOCKS, naive);
    expect(naive.subarray(0, BS).equals(expected.subarray(0, BS))).toBe(false);

    snapshot.setMergeProgress(progress);
    const whole = Buffer.alloc(BLOCKS * BS);
    await snapshot.readBlocks(0, BLOCKS, whole);
    expect(whole.equals(Buffer.concat([expected.subarray(0, 5 * BS), base.subarray(5 * BS, 6 * BS), expected.subarray(6 * BS)]))).toBe(true);
    for (let b = 0; b < 3; b++) {
      const one = Buffer.alloc(BS);
      await snapshot.readBlocks(b, 1, one);
      expect(one.equals(expected.subarray(b * BS, (b + 1) * BS))).toBe(true);
    }
    expect(new Set(located)).toEqual(new Set([opOf(0), opOf(1), opOf(2)]));
  });
});
