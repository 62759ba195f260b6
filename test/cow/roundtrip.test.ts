import { CowReader } from '../../src/cow/reader';
import { CowWriter } from '../../src/cow/writer';
import { SnapshotReader } from '../../src/cow/snapshot-reader';
import { CowOpType, COMPRESSION_NAMES } from '../../src/cow/format';
import { MemoryFile, pseudoRandom, textLike } from './helpers';

const BS = 4096;
const BLOCKS = 200;

/** Builds a COW with every op type over a text-like base; returns it and the expected new image. */
async function buildCow(compression: string, factor: number) {
  const base = textLike(BLOCKS * BS, 11);
  const expected = Buffer.from(base);
  const cowFile = new MemoryFile('rt.cow');
  const writer = await CowWriter.createOn(cowFile, { compression, compressionFactor: factor, maxBlocks: BLOCKS, scratchSpace: false });
  await writer.addSequenceData([0, 1, 150]);
  await writer.addCopy(0, 100, 2); // blocks 0,1 from old 100,101
  base.copy(expected, 0, 100 * BS, 102 * BS);
  const similar = Buffer.from(base.subarray(150 * BS, 151 * BS));
  similar.write('changed', 100);
  const xored = Buffer.alloc(BS);
  // Block 150 as an Xor against old bytes starting 10 bytes into block 120 (unaligned).
  for (let i = 0; i < BS; i++) xored[i] = similar[i] ^ base[120 * BS + 10 + i];
  await writer.addXorBlocks(150, xored, 120, 10);
  similar.copy(expected, 150 * BS);
  // Replace runs of awkward lengths: units must split largest first.
  const runs: Array<[number, number]> = [[2, 1], [5, 20], [30, 64], [100, 37]];
  for (const [start, length] of runs) {
    const data = Buffer.concat([textLike((length - 1) * BS, start), pseudoRandom(BS, start)]);
    await writer.addRawBlocks(start, data);
    data.copy(expected, start * BS);
  }
  await writer.addZeroBlocks(160, 3);
  expected.fill(0, 160 * BS, 163 * BS);
  await writer.addLabel(1n);
  await writer.finalize();
  return { base, expected, cowFile, runs };
}

describe.each(COMPRESSION_NAMES.map((c) => [c]))('write then read with %s', (compression) => {
  it.each([4096, 8192, 16384, 32768, 65536, 131072, 262144])('compression factor %i', async (factor) => {
    const { base, expected, cowFile, runs } = await buildCow(compression, factor);
    const cow = await CowReader.fromFile(cowFile);
    expect(cow.header.compressionAlgorithm).toBe(COMPRESSION_NAMES.indexOf(compression as never));
    expect(cow.header.maxCompressionSize).toBe(factor);
    const unitBlocks = factor / BS;
    let replaceOps = 0;
    for (const [, length] of runs) {
      replaceOps += Math.floor(length / unitBlocks);
      for (let rest = length % unitBlocks; rest; rest &= rest - 1) replaceOps++;
    }
    expect(cow.ops.count).toBe(2 + 1 + replaceOps + 3);
    expect(cow.verifyMergeOrder()).toBeUndefined();
    const snapshot = await SnapshotReader.over(cow, new MemoryFile('base', base), BLOCKS);
    const whole = Buffer.alloc(BLOCKS * BS);
    await snapshot.readBlocks(0, BLOCKS, whole);
    expect(whole.equals(expected)).toBe(true);
    // Block by block, and in odd-sized windows that start inside multi-block units.
    for (const size of [1, 3, 7]) {
      const part = Buffer.alloc(size * BS);
      for (let b = 0; b + size <= BLOCKS; b += size) {
        await snapshot.readBlocks(b, size, part);
        expect(part.equals(expected.subarray(b * BS, (b + size) * BS))).toBe(true);
      }
    }
  });
});

describe('multi-block replace ops', () => {
  it('splits a 20-block run at 64 KiB into a 16-block op and a 4-block op', async () => {
    const file = new MemoryFile('split.cow');
    const writer = await CowWriter.createOn(file, { compressionFactor: 65536, maxBlocks: 64, scratchSpace: false });
    await writer.addRawBlocks(3, textLike(20 * BS, 1));
    await writer.finalize();
    const cow = await CowReader.fromFile(file);
    expect(Array.from({ length: cow.ops.count }, (_, i) => [cow.ops.newBlock[i], cow.ops.span(i)])).toEqual([[3, 16], [19, 4]]);
    expect(cow.ops.type(0)).toBe(CowOpType.Replace);
    expect(cow.index.lookup(18)).toBe(0);
    expect(cow.index.lookup(22)).toBe(1);
    expect(cow.index.lookup(23)).toBe(-1);
    expect(cow.index.lookup(2)).toBe(-1);
  });

  it('stores a unit raw when compression does not shrink it, and reads it back', async () => {
    const file = new MemoryFile('raw.cow');
    const writer = await CowWriter.createOn(file, { compression: 'zstd', compressionFactor: 16384, maxBlocks: 8, scratchSpace: false });
    const noise = pseudoRandom(4 * BS, 5);
    await writer.addRawBlocks(0, noise);
    await writer.finalize();
    const cow = await CowReader.fromFile(file);
    expect(cow.ops.dataLength[0]).toBe(16384);
    expect(cow.ops.isRaw(0)).toBe(true);
    const out = Buffer.alloc(4 * BS);
    await (await SnapshotReader.over(cow, new MemoryFile('b', Buffer.alloc(8 * BS)), 8)).readBlocks(0, 4, out);
    expect(out.equals(noise)).toBe(true);
  });
});

describe('writer validation', () => {
  it('validates every argument before writing anything', async () => {
    const file = new MemoryFile('v.cow');
    const writer = await CowWriter.createOn(file, { opCountMax: 4, maxBlocks: 10, scratchSpace: false });
    const before = file.contents();
    await expect(writer.addRawBlocks(0, Buffer.alloc(100))).rejects.toThrow(/multiple of 4096/);
    await expect(writer.addZeroBlocks(9, 2)).rejects.toThrow(/new block/);
    await expect(writer.addXorBlocks(0, Buffer.alloc(BS), 0, 4096)).rejects.toThrow(/xor offset/);
    await expect(writer.addZeroBlocks(0, 5)).rejects.toThrow(/op_count_max/);
    await expect(writer.addCopy(0, -1)).rejects.toThrow(/source block/);
    await writer.addZeroBlocks(0, 1);
    await expect(writer.addSequenceData([1])).rejects.toThrow(/before any op/);
    expect(file.contents().equals(before)).toBe(true);
    await writer.finalize();
    await expect(writer.addZeroBlocks(1, 1)).rejects.toThrow(/finalized/);
  });

  it('refuses bad options', async () => {
    await expect(CowWriter.createOn(new MemoryFile('o'), { compressionFactor: 12288, maxBlocks: 1 })).rejects.toThrow(/compression factor/);
    await expect(CowWriter.createOn(new MemoryFile('o'), { compressionFactor: 524288, maxBlocks: 1 })).rejects.toThrow(/compression factor/);
    await expect(CowWriter.createOn(new MemoryFile('o'), {})).rejects.toThrow(/op count max/);
    await expect(CowWriter.createOn(new MemoryFile('o'), { compression: 'xz', maxBlocks: 1 })).rejects.toThrow(/unknown compression/);
  });

  it('estimates op count and size without a file, as CreateCowEstimator does', async () => {
    const estimator = CowWriter.estimator({ compression: 'none', compressionFactor: 16384 });
    await estimator.addCopy(0, 5, 3);
    await estimator.addRawBlocks(10, Buffer.alloc(6 * BS, 1));
    await estimator.addZeroBlocks(20, 2);
    const real = new MemoryFile('e.cow');
    const writer = await CowWriter.createOn(real, { compressionFactor: 16384, opCountMax: estimator.estimate().opCount, maxBlocks: 64 });
    await writer.addCopy(0, 5, 3);
    await writer.addRawBlocks(10, Buffer.alloc(6 * BS, 1));
    await writer.addZeroBlocks(20, 2);
    await writer.finalize();
    expect(estimator.estimate()).toEqual({ opCount: 3 + 2 + 2, cowSize: (await real.size()) });
  });
});
