import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createCow } from '../../src/cow/create';
import { mergeFiles, mergeInPlace, scratchPathFor } from '../../src/cow/merge';
import { CowReader } from '../../src/cow/reader';
import { MemoryFile, textLike } from './helpers';
import { atEveryPowerCut } from '../../src/cow/testing/memory-file';

const BS = 4096;
const BLOCKS = 40;

let dir: string;
let oldImage: Buffer;
let newImage: Buffer;
let cowBytes: Buffer;

/** OLD → NEW with a chain of shifted blocks, a swap, edits for xor, zeros and fresh data. */
beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vab-cow-merge-'));
  oldImage = Buffer.concat(Array.from({ length: BLOCKS }, (_, i) => textLike(BS, i + 1)));
  newImage = Buffer.from(oldImage);
  const block = (img: Buffer, i: number) => img.subarray(i * BS, (i + 1) * BS);
  for (let i = 0; i < 10; i++) block(oldImage, i + 1).copy(block(newImage, i)); // chain
  block(oldImage, 20).copy(block(newImage, 21)); // swap 20 <-> 21
  block(oldImage, 21).copy(block(newImage, 20));
  for (const i of [25, 26, 27]) block(newImage, i).write('an edit', 200); // xor candidates
  newImage.fill(0, 30 * BS, 33 * BS);
  textLike(4 * BS, 99).copy(newImage, 34 * BS);
  await fs.writeFile(path.join(dir, 'old'), oldImage);
  await fs.writeFile(path.join(dir, 'new'), newImage);
  await createCow(path.join(dir, 'old'), path.join(dir, 'new'), path.join(dir, 'cow'), { compression: 'zstd', compressionFactor: 8192, xor: true });
  cowBytes = await fs.readFile(path.join(dir, 'cow'));
});
afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

describe('merging a COW into its base in place', () => {
  it('merges in one go and records progress in num_merge_ops', async () => {
    const cow = new MemoryFile('cow', cowBytes);
    const base = new MemoryFile('base', oldImage);
    const result = await mergeFiles(cow, base);
    expect(base.contents().equals(newImage)).toBe(true);
    expect(result.merged).toBe(result.total);
    const reader = await CowReader.fromFile(cow);
    expect(reader.header.numMergeOps).toBe(result.total);
    expect(reader.ops.count).toBe(result.total);
    expect((await mergeFiles(cow, base)).merged).toBe(0);
  });

  /** Cuts the merge at every write in turn, keeping unsynced writes as `keep` says, merges again from what is left; returns the cuts. */
  const cutEverywhereAndMergeAgain = (keep: Parameters<typeof atEveryPowerCut>[3]) =>
    atEveryPowerCut(
      { cow: cowBytes, base: oldImage },
      (f) => mergeFiles(f.cow, f.base),
      async (f, cut) => {
        await mergeFiles(f.cow, f.base);
        expect([cut, f.base.contents().equals(newImage)]).toEqual([cut, true]);
      },
      keep,
    );

  it.each([
    [false, false],
    [true, true],
    [true, false],
    [false, true],
  ])('survives a power cut at every write (unsynced COW writes kept: %s, base: %s)', async (keepCow, keepBase) => {
    expect(await cutEverywhereAndMergeAgain((name) => (name === 'cow' ? keepCow : keepBase))).toBeGreaterThanOrEqual(10);
  });

  it.each([1, 2, 3])('survives a power cut at every write with each unsynced write kept or lost at random (seed %i)', async (seed) => {
    let x = seed;
    const random = (): number => {
      x = (x * 1103515245 + 12345) >>> 0;
      return x / 2 ** 32;
    };
    expect(await cutEverywhereAndMergeAgain(() => random)).toBeGreaterThanOrEqual(6);
  });

  it('refuses to merge the copies of a COW without a scratch region when no scratch file is given', async () => {
    await createCow(path.join(dir, 'old'), path.join(dir, 'new'), path.join(dir, 'plain.cow'), { scratchSpace: false });
    const base = new MemoryFile('base', oldImage);
    await expect(mergeFiles(new MemoryFile('cow', await fs.readFile(path.join(dir, 'plain.cow'))), base)).rejects.toThrow(/no scratch region .* cannot be merged safely/);
    expect(base.contents().equals(oldImage)).toBe(true);
  });

  it('merges a COW without a scratch region through a scratch file, surviving a power cut at every write', async () => {
    const plain = await fs.readFile(path.join(dir, 'plain.cow'));
    const whole = new MemoryFile('base', oldImage);
    await mergeFiles(new MemoryFile('cow', plain), whole, { scratch: new MemoryFile('scratch') });
    expect(whole.contents().equals(newImage)).toBe(true);
    const cuts = await atEveryPowerCut(
      { cow: plain, base: oldImage, scratch: Buffer.alloc(0) },
      (f) => mergeFiles(f.cow, f.base, { scratch: f.scratch }),
      async (f, cut) => {
        await mergeFiles(f.cow, f.base, { scratch: f.scratch });
        expect([cut, f.base.contents().equals(newImage)]).toEqual([cut, true]);
      },
      () => false,
    );
    expect(cuts).toBeGreaterThanOrEqual(6);
  });

  it('mergeInPlace keeps its scratch file beside the COW and removes it when done', async () => {
    const base = path.join(dir, 'plain.base');
    await fs.writeFile(base, oldImage);
    await fs.copyFile(path.join(dir, 'plain.cow'), path.join(dir, 'plain2.cow'));
    await mergeInPlace(path.join(dir, 'plain2.cow'), base);
    expect((await fs.readFile(base)).equals(newImage)).toBe(true);
    await expect(fs.stat(scratchPathFor(path.join(dir, 'plain2.cow')))).rejects.toThrow(/ENOENT/);
  });

  it('refuses a merge order that is not safe in place', async () => {
    const bad = Buffer.from(cowBytes);
    // Swap the sequence entries of blocks 0 and 1: block 1's copy would then run first and
    // overwrite the block that block 0's copy reads.
    const seq = 78 + bad.readUInt32LE(34);
    const count = Number(bad.readBigUInt64LE(38));
    const entries = Array.from({ length: count }, (_, k) => bad.readUInt32LE(seq + 4 * k));
    const [i0, i1] = [entries.indexOf(0), entries.indexOf(1)];
    expect(i0).toBeLessThan(i1);
    bad.writeUInt32LE(1, seq + 4 * i0);
    bad.writeUInt32LE(0, seq + 4 * i1);
    await expect(mergeFiles(new MemoryFile('cow', bad), new MemoryFile('base', oldImage))).rejects.toThrow(/not safe in place/);
  });
});
