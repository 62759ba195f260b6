import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createCow } from '../../src/cow/create';
import { CowOpType } from '../../src/cow/format';
import { SnapshotReader } from '../../src/cow/snapshot-reader';
import { pseudoRandom, textLike } from './helpers';

// Reads through the COW against NEW itself, at boundaries that cut base runs, copy runs and
// multi-block Replace units anywhere: every read starts all its IO at once and expands payloads
// aside, so any mix-up of where a piece lands shows up as a byte mismatch.
const BS = 4096;
const OLD_BLOCKS = 700;
const NEW_BLOCKS = 760; // grows past OLD
let dir: string;
let oldImage: Buffer;
let newImage: Buffer;
let cowPath: string;
let oldPath: string;

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vab-cow-reader-'));
  oldImage = textLike(OLD_BLOCKS * BS, 5);
  newImage = Buffer.alloc(NEW_BLOCKS * BS);
  oldImage.copy(newImage);
  const roll = pseudoRandom(NEW_BLOCKS, 9);
  for (let t = 0; t < NEW_BLOCKS; t++) {
    const block = newImage.subarray(t * BS, (t + 1) * BS);
    const r = roll[t] % 10;
    if (r < 2) textLike(BS, 100 + t).copy(block); // replaced, often in runs that make 4-block units
    else if (r === 2) block.fill(0);
    else if (r === 3) oldImage.copy(block, 0, ((t * 37) % OLD_BLOCKS) * BS, ((t * 37) % OLD_BLOCKS + 1) * BS); // moved
    else if (r === 4) for (let i = 0; i < BS; i += 97) block[i] ^= 0x5a; // resembles its old self: xor
  }
  // A run of blocks moved together, so adjacent copy sources are read in one go.
  oldImage.copy(newImage, 300 * BS, 40 * BS, 52 * BS);
  oldPath = path.join(dir, 'old.img');
  const newPath = path.join(dir, 'new.img');
  cowPath = path.join(dir, 'x.cow');
  await fs.writeFile(oldPath, oldImage);
  await fs.writeFile(newPath, newImage);
  await createCow(oldPath, newPath, cowPath, { compression: 'zstd', compressionFactor: 4 * BS, xor: true, threads: 1 });
});

afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

async function expectRead(reader: SnapshotReader, start: number, count: number, dstOffset = 0): Promise<void> {
  const dst = Buffer.alloc(dstOffset + count * BS + 7, 0xcc);
  await reader.readBlocks(start, count, dst, dstOffset);
  const got = dst.subarray(dstOffset, dstOffset + count * BS);
  const want = newImage.subarray(start * BS, (start + count) * BS);
  if (!got.equals(want)) {
    let block = 0;
    while (got.subarray(block * BS, (block + 1) * BS).equals(want.subarray(block * BS, (block + 1) * BS))) block++;
    throw new Error(`read ${start}+${count}: block ${start + block} differs from NEW`);
  }
  // Nothing written around the range.
  expect(dst.subarray(0, dstOffset).every((b) => b === 0xcc)).toBe(true);
  expect(dst.subarray(dstOffset + count * BS).every((b) => b === 0xcc)).toBe(true);
}

describe('SnapshotReader against NEW, byte for byte', () => {
  it('the COW has every kind of op, multi-block units and a grown tail', async () => {
    const reader = await SnapshotReader.open(cowPath, oldPath);
    try {
      const counts = new Map<CowOpType, number>();
      for (let op = 0; op < reader.cow.ops.count; op++) counts.set(reader.cow.ops.type(op), (counts.get(reader.cow.ops.type(op)) ?? 0) + 1);
      for (const type of [CowOpType.Copy, CowOpType.Replace, CowOpType.Zero, CowOpType.Xor]) expect(counts.get(type)).toBeGreaterThan(0);
      let multiBlock = 0;
      for (let op = 0; op < reader.cow.ops.count; op++) if (reader.cow.ops.span(op) > 1) multiBlock++;
      expect(multiBlock).toBeGreaterThan(0);
      expect(reader.blockCount).toBe(NEW_BLOCKS);
    } finally {
      await reader.close();
    }
  });

  it('sequential reads of odd sizes, so each read ends inside a unit or a run', async () => {
    const reader = await SnapshotReader.open(cowPath, oldPath);
    try {
      const sizes = [1, 3, 7, 13, 2, 64, 5, 256, 11];
      for (let t = 0, i = 0; t < NEW_BLOCKS; i++) {
        const count = Math.min(sizes[i % sizes.length], NEW_BLOCKS - t);
        await expectRead(reader, t, count, (i % 3) * 512);
        t += count;
      }
    } finally {
      await reader.close();
    }
  });

  it('random ranges, and ranges read concurrently, give NEW', async () => {
    const reader = await SnapshotReader.open(cowPath, oldPath);
    try {
      const picks = pseudoRandom(400, 17);
      for (let i = 0; i < picks.length; i += 2) {
        const start = (picks[i] * 3 + picks[i + 1]) % NEW_BLOCKS;
        const count = 1 + ((picks[i + 1] * 7) % Math.min(300, NEW_BLOCKS - start));
        await expectRead(reader, start, count);
      }
      const ranges: Array<[number, number]> = [[0, 300], [295, 20], [698, 62], [1, 1], [100, 250], [640, 100]];
      await Promise.all(ranges.map(([start, count]) => expectRead(reader, start, count)));
    } finally {
      await reader.close();
    }
  });
});
