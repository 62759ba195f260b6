import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseCompression } from '../../src/cow/codec';
import { CompressPool } from '../../src/cow/compress-pool';
import { createCow } from '../../src/cow/create';
import { CowFormatError } from '../../src/cow/errors';
import { CowCompression } from '../../src/cow/format';
import { CowReader } from '../../src/cow/reader';
import { CowWriter } from '../../src/cow/writer';
import { pseudoRandom, textLike } from './helpers';

const BS = 4096;
let dir: string;
let oldPath: string;
let newPath: string;
let newImage: Buffer;

/**
 * 3 chunks of 256 blocks plus a partial one. Besides fresh, tweaked, zero and copied blocks, it
 * has swapped pairs (copy cycles the planner breaks into Replace ops after classifying the chunk)
 * inside a chunk with fresh blocks and inside a chunk with none, incompressible blocks, and zero
 * blocks in OLD (never a copy source). OLD is hashed on the threads too when there are threads.
 */
function buildImages(): { oldImage: Buffer; newImage: Buffer } {
  const blocks = 3 * 256 + 37;
  const olds: Buffer[] = [];
  for (let b = 0; b < blocks; b++) olds.push(b % 97 === 50 ? Buffer.alloc(BS) : b % 5 === 0 ? pseudoRandom(BS, b + 1) : textLike(BS, b + 1));
  const news: Buffer[] = olds.map((b) => Buffer.from(b));
  for (let b = 0; b < 256; b++) {
    if (b % 3 === 0) news[b] = textLike(BS, 5000 + b);
    if (b % 7 === 1) news[b] = Buffer.alloc(BS);
    if (b % 11 === 2) news[b] = pseudoRandom(BS, 9000 + b);
  }
  for (let b = 256; b < 512; b += 9) news[b].write('tweaked', (b * 31) % (BS - 8));
  const swap = (a: number, b: number) => {
    news[a] = Buffer.from(olds[b]);
    news[b] = Buffer.from(olds[a]);
  };
  swap(4, 5); // among fresh blocks
  swap(600, 601); // in a chunk with no other change
  news[700] = Buffer.from(olds[20]);
  for (let b = 768; b < blocks; b++) news[b] = textLike(BS, 7000 + b);
  return { oldImage: Buffer.concat(olds), newImage: Buffer.concat(news) };
}

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vab-cow-threads-'));
  const images = buildImages();
  newImage = images.newImage;
  oldPath = path.join(dir, 'old.img');
  newPath = path.join(dir, 'new.img');
  await fs.writeFile(oldPath, images.oldImage);
  await fs.writeFile(newPath, images.newImage);
});
afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

describe('createCow on worker threads', () => {
  const cases: Array<[string, number, boolean]> = [];
  for (const codec of ['gz', 'brotli,5', 'lz4', 'zstd', 'zstd,1']) for (const factor of [4096, 65536]) cases.push([codec, factor, false]);
  cases.push(['zstd', 16384, true], ['lz4', 4096, true], ['none', 4096, false]);

  test.each(cases)('%s, factor %d, xor %s: byte-identical to one thread', async (compression, factor, xor) => {
    const one = path.join(dir, `one-${compression}-${factor}-${xor}.cow`);
    const many = path.join(dir, `many-${compression}-${factor}-${xor}.cow`);
    const single = await createCow(oldPath, newPath, one, { compression, compressionFactor: factor, xor, threads: 1 });
    const multi = await createCow(oldPath, newPath, many, { compression, compressionFactor: factor, xor, threads: 3 });
    expect(single.threads).toBe(1);
    expect(multi.threads).toBe(compression === 'none' ? 1 : 3);
    expect(multi.ops).toEqual(single.ops);
    const [a, b] = await Promise.all([fs.readFile(one), fs.readFile(many)]);
    expect(b.equals(a)).toBe(true);
    expect(single.ops.replace).toBeGreaterThan(0);
    // The cycles really became Replace ops, and the COW reads back as NEW where it replaces.
    const cow = await CowReader.open(many);
    try {
      const replaced = (block: number) => cow.ops.type(cow.index.lookup(block)) === 2;
      expect([replaced(4), replaced(5)].filter(Boolean)).toHaveLength(1);
      expect([replaced(600), replaced(601)].filter(Boolean)).toHaveLength(1);
      const unit = Buffer.alloc(factor);
      const scratch = Buffer.alloc(2 * factor);
      for (let op = 0; op < cow.ops.count; op++) {
        if (cow.ops.type(op) !== 2) continue;
        const start = cow.ops.newBlock[op] * BS;
        const bytes = unit.subarray(0, cow.unitSize(op));
        await cow.readPayload(op, bytes, scratch);
        expect(bytes.equals(newImage.subarray(start, start + bytes.length))).toBe(true);
      }
    } finally {
      await cow.close();
    }
  });
});

describe('CompressPool errors', () => {
  test('a failure inside a worker rejects with a CowFormatError (EIO), not a hang', async () => {
    const pool = new CompressPool(2, { algorithm: CowCompression.None, level: 0 }, BS);
    try {
      const err = await pool.compress(new Uint8Array(BS), [BS]).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CowFormatError);
      expect((err as CowFormatError).code).toBe('EIO');
      expect((err as Error).message).toMatch(/compression thread failed: no compressor/);
    } finally {
      await pool.close();
    }
  });

  test('closing the pool rejects waiting jobs and later ones', async () => {
    const pool = new CompressPool(1, parseCompression('brotli,11'), 65536);
    const waiting = pool.compress(pseudoRandom(65536, 3), [65536]);
    await pool.close();
    await expect(waiting).rejects.toBeInstanceOf(CowFormatError);
    await expect(pool.compress(new Uint8Array(BS), [BS])).rejects.toBeInstanceOf(CowFormatError);
  });
});

describe('CowWriter.addCompressedReplace', () => {
  test('refuses payloads and units a Replace op cannot hold', async () => {
    const writer = await CowWriter.create(path.join(dir, 'checks.cow'), { compression: 'zstd', compressionFactor: 16384, maxBlocks: 64 });
    try {
      await expect(writer.addCompressedReplace(0, 1, new Uint8Array(0))).rejects.toThrow(/payload is 0 bytes/);
      await expect(writer.addCompressedReplace(0, 1, new Uint8Array(BS + 1))).rejects.toThrow(/payload is 4097 bytes/);
      await expect(writer.addCompressedReplace(0, 3, new Uint8Array(10))).rejects.toThrow(/not a power of two/);
      await expect(writer.addCompressedReplace(0, 8, new Uint8Array(10))).rejects.toThrow(/not a power of two up to 4/);
      await expect(writer.addCompressedReplace(62, 4, new Uint8Array(10))).rejects.toThrow(/new block/);
      expect(writer.opCount).toBe(0);
    } finally {
      await writer.close();
    }
  });
});
