import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { applyCow } from '../../src/cow/apply';
import { createCow } from '../../src/cow/create';
import { inspectCow } from '../../src/cow/inspect';
import { mergeInPlace } from '../../src/cow/merge';
import { CowReader } from '../../src/cow/reader';
import { SnapshotReader } from '../../src/cow/snapshot-reader';
import { COMPRESSION_NAMES } from '../../src/cow/format';
import { pseudoRandom, textLike } from './helpers';

const BS = 4096;
let dir: string;
beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vab-cow-create-'));
});
afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

type OldBlock = { kind: 'zero' } | { kind: 'text' | 'noise'; seed: number };
type NewBlock = { kind: 'same' | 'zero' } | { kind: 'copy'; from: number } | { kind: 'tweak'; at: number } | { kind: 'fresh'; seed: number };

function oldBlock(b: OldBlock): Buffer {
  if (b.kind === 'zero') return Buffer.alloc(BS);
  return b.kind === 'text' ? textLike(BS, b.seed) : pseudoRandom(BS, b.seed);
}

function images(olds: OldBlock[], news: NewBlock[]): { oldImage: Buffer; newImage: Buffer } {
  const oldImage = Buffer.concat(olds.map(oldBlock));
  const block = (t: number) => (t < olds.length ? oldImage.subarray(t * BS, (t + 1) * BS) : Buffer.alloc(BS, 0x5a));
  const newImage = Buffer.concat(
    news.map((b, t) => {
      switch (b.kind) {
        case 'same':
          return Buffer.from(block(t));
        case 'zero':
          return Buffer.alloc(BS);
        case 'copy':
          return Buffer.from(block(b.from % olds.length));
        case 'tweak': {
          const out = Buffer.from(block(t));
          out.write('tweaked!', b.at % (BS - 8));
          return out;
        }
        case 'fresh':
          return textLike(BS, 1000 + b.seed);
      }
    }),
  );
  return { oldImage, newImage };
}

const oldArb: fc.Arbitrary<OldBlock> = fc.oneof(
  fc.constant({ kind: 'zero' as const }),
  fc.record({ kind: fc.constantFrom('text' as const, 'noise' as const), seed: fc.integer({ min: 1, max: 6 }) }),
);
const newArb: fc.Arbitrary<NewBlock> = fc.oneof(
  fc.constantFrom({ kind: 'same' as const }, { kind: 'zero' as const }),
  fc.record({ kind: fc.constant('copy' as const), from: fc.nat(100) }),
  fc.record({ kind: fc.constant('tweak' as const), at: fc.nat(4000) }),
  fc.record({ kind: fc.constant('fresh' as const), seed: fc.nat(5) }),
);

async function check(olds: OldBlock[], news: NewBlock[], compression: string, factor: number, xor: boolean): Promise<void> {
  const { oldImage, newImage } = images(olds, news);
  const [oldPath, newPath, cowPath, outPath, mergedPath] = ['old', 'new', 'cow', 'out', 'merged'].map((n) => path.join(dir, `${n}.img`));
  await fs.writeFile(oldPath, oldImage);
  await fs.writeFile(newPath, newImage);
  await createCow(oldPath, newPath, cowPath, { compression, compressionFactor: factor, xor });

  await applyCow(cowPath, oldPath, outPath, { size: newImage.length });
  expect((await fs.readFile(outPath)).equals(newImage)).toBe(true);

  const snapshot = await SnapshotReader.open(cowPath, oldPath, { deviceBytes: newImage.length });
  try {
    const one = Buffer.alloc(BS);
    for (let t = 0; t < news.length; t++) {
      await snapshot.readBlocks(t, 1, one);
      expect([t, one.equals(newImage.subarray(t * BS, (t + 1) * BS))]).toEqual([t, true]);
    }
  } finally {
    await snapshot.close();
  }

  const report = await inspectCow(cowPath);
  expect(report.valid).toBe(true);
  await fs.writeFile(mergedPath, oldImage);
  await mergeInPlace(cowPath, mergedPath, { size: newImage.length });
  expect((await fs.readFile(mergedPath)).equals(newImage)).toBe(true);
}

describe('create then apply', () => {
  it('turns any OLD into any NEW, offline, block by block and merged in place', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(oldArb, { minLength: 1, maxLength: 24 }),
        fc.array(newArb, { minLength: 1, maxLength: 28 }),
        fc.constantFrom(...COMPRESSION_NAMES),
        fc.constantFrom(4096, 8192, 65536),
        fc.boolean(),
        (olds, news, compression, factor, xor) => check(olds, news, compression === 'brotli' ? 'brotli,4' : compression, factor, xor),
      ),
      { numRuns: 60 },
    );
  });

  it('breaks a cycle of copies (a swap) so the merge stays safe in place', async () => {
    const olds: OldBlock[] = [1, 2, 3, 4].map((seed) => ({ kind: 'text', seed }));
    const news: NewBlock[] = [{ kind: 'copy', from: 1 }, { kind: 'copy', from: 0 }, { kind: 'copy', from: 3 }, { kind: 'copy', from: 2 }];
    await check(olds, news, 'none', 4096, false);
    const cow = await CowReader.open(path.join(dir, 'cow.img'));
    // Each 2-cycle loses one copy to a replace op.
    expect(cow.mergeOrder().orderedCount).toBe(2);
    await cow.close();
  });

  it('orders a chain of copies so every block is read before it is overwritten', async () => {
    const olds: OldBlock[] = [1, 2, 3, 4, 5].map((seed) => ({ kind: 'text', seed }));
    // new[t] = old[t+1]: each copy reads the block the next one overwrites.
    const news: NewBlock[] = [1, 2, 3, 4].map((from) => ({ kind: 'copy', from }));
    await check(olds, news, 'lz4', 4096, false);
    const cow = await CowReader.open(path.join(dir, 'cow.img'));
    const order = cow.mergeOrder();
    expect(Array.from(order.ops.subarray(0, order.orderedCount), (op) => cow.ops.newBlock[op])).toEqual([0, 1, 2, 3]);
    expect(cow.verifyMergeOrder(order)).toBeUndefined();
    await cow.close();
  });

  it('refuses a NEW image that is not whole blocks', async () => {
    await fs.writeFile(path.join(dir, 'odd.img'), Buffer.alloc(BS + 1));
    await expect(createCow(path.join(dir, 'odd.img'), path.join(dir, 'odd.img'), path.join(dir, 'odd.cow'))).rejects.toThrow(/not a multiple/);
    await expect(fs.stat(path.join(dir, 'odd.cow'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
