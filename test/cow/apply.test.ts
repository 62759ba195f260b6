import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { applyCow } from '../../src/cow/apply';
import { CowWriter } from '../../src/cow/writer';
import { pseudoRandom, textLike } from './helpers';

// Images of several 2 MiB chunks, so the chunked pipeline, its base copy and units that straddle a
// chunk boundary are all exercised.
const BS = 4096;
const CHUNK_BLOCKS = 512;
let dir: string;
beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vab-cow-apply-'));
});
afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

/** The new image, built by hand from the same edits the COW records. */
class Edits {
  readonly image: Buffer;
  constructor(
    readonly base: Buffer,
    blocks: number,
  ) {
    this.image = Buffer.alloc(blocks * BS);
    base.copy(this.image, 0, 0, Math.min(base.length, this.image.length));
  }
  block(t: number): Buffer {
    return this.image.subarray(t * BS, (t + 1) * BS);
  }
}

async function build(name: string, baseBlocks: number, newBlocks: number, edit: (w: CowWriter, e: Edits) => Promise<void>): Promise<{ basePath: string; cowPath: string; expected: Buffer }> {
  const base = textLike(baseBlocks * BS, 3);
  const basePath = path.join(dir, `${name}.base`);
  const cowPath = path.join(dir, `${name}.cow`);
  await fs.writeFile(basePath, base);
  const edits = new Edits(base, newBlocks);
  const writer = await CowWriter.create(cowPath, { compression: 'zstd', compressionFactor: 65536, opCountMax: 4096, maxBlocks: newBlocks });
  await edit(writer, edits);
  await writer.finalize();
  await writer.close();
  return { basePath, cowPath, expected: edits.image };
}

async function replace(w: CowWriter, e: Edits, t: number, count: number, seed: number): Promise<void> {
  const data = pseudoRandom(count * BS, seed);
  data.fill(0x41, 0, BS); // compressible in part, so both raw and compressed units occur
  await w.addRawBlocks(t, data);
  data.copy(e.image, t * BS);
}

async function outcome(basePath: string, cowPath: string, size: number, fsync = false): Promise<Buffer> {
  const outPath = path.join(dir, 'out.img');
  await applyCow(cowPath, basePath, outPath, { size, fsync });
  const out = await fs.readFile(outPath);
  expect((await fs.readdir(dir)).filter((n) => n.includes('.tmp-'))).toEqual([]);
  return out;
}

describe('applyCow over several chunks', () => {
  it('patches a few chunks of a mostly unchanged image (the base-copy path), shrinking it', async () => {
    const { basePath, cowPath, expected } = await build('sparse', 5 * CHUNK_BLOCKS, 4 * CHUNK_BLOCKS + 7, async (w, e) => {
      await w.addCopy(CHUNK_BLOCKS + 3, 9);
      e.base.copy(e.image, (CHUNK_BLOCKS + 3) * BS, 9 * BS, 10 * BS);
      await w.addZeroBlocks(CHUNK_BLOCKS + 4, 2);
      e.image.fill(0, (CHUNK_BLOCKS + 4) * BS, (CHUNK_BLOCKS + 6) * BS);
      await replace(w, e, 4 * CHUNK_BLOCKS + 2, 3, 7);
    });
    expect((await outcome(basePath, cowPath, expected.length)).equals(expected)).toBe(true);
  });

  it('rewrites every chunk of a densely changed image, with units across chunk boundaries, xor and growth', async () => {
    const newBlocks = 3 * CHUNK_BLOCKS + 40;
    const { basePath, cowPath, expected } = await build('dense', 2 * CHUNK_BLOCKS + 5, newBlocks, async (w, e) => {
      // A 16-block unit over the first boundary, another over the second.
      await replace(w, e, CHUNK_BLOCKS - 8, 16, 1);
      await replace(w, e, 2 * CHUNK_BLOCKS - 3, 16, 2);
      const overlaps = (t: number, from: number, to: number): boolean => t + 3 >= from && t < to;
      for (let t = 20; t + 3 < newBlocks; t += 37) {
        if (overlaps(t, CHUNK_BLOCKS - 8, CHUNK_BLOCKS + 8) || overlaps(t, 2 * CHUNK_BLOCKS - 3, 2 * CHUNK_BLOCKS + 13)) continue;
        const from = (t * 7) % (2 * CHUNK_BLOCKS);
        await w.addCopy(t, from);
        e.base.copy(e.image, t * BS, from * BS, (from + 1) * BS);
        await w.addZeroBlocks(t + 1, 1);
        e.block(t + 1).fill(0);
        // Xor against old bytes at an unaligned offset elsewhere in the base.
        const source = ((t * 13) % (2 * CHUNK_BLOCKS)) * BS + 100;
        const wanted = textLike(BS, t);
        const delta = Buffer.from(wanted);
        for (let i = 0; i < BS; i++) delta[i] ^= e.base[source + i];
        await w.addXorBlocks(t + 2, delta, Math.floor(source / BS), source % BS);
        wanted.copy(e.image, (t + 2) * BS);
        await replace(w, e, t + 3, 1, t);
      }
    });
    expect((await outcome(basePath, cowPath, expected.length)).equals(expected)).toBe(true);
  });

  it('patches a copy of a base shorter than the output: ops past its end land, untouched blocks past it read as zeros', async () => {
    // 4 of 10 chunks touched: the base-copy path.
    const newBlocks = 10 * CHUNK_BLOCKS;
    const { basePath, cowPath, expected } = await build('grow', 2 * CHUNK_BLOCKS + 3, newBlocks, async (w, e) => {
      await replace(w, e, CHUNK_BLOCKS - 1, 2, 11); // across a chunk boundary
      await replace(w, e, 2 * CHUNK_BLOCKS + 2, 4, 12); // across the base's end
      await w.addCopy(9 * CHUNK_BLOCKS + 1, 2 * CHUNK_BLOCKS + 2); // the base's last block, far past its end
      e.base.copy(e.image, (9 * CHUNK_BLOCKS + 1) * BS, (2 * CHUNK_BLOCKS + 2) * BS, (2 * CHUNK_BLOCKS + 3) * BS);
    });
    expect(expected.subarray((2 * CHUNK_BLOCKS + 6) * BS, (9 * CHUNK_BLOCKS + 1) * BS).every((b) => b === 0)).toBe(true);
    expect((await outcome(basePath, cowPath, expected.length)).equals(expected)).toBe(true);
  });

  it('rewrites every chunk of a densely changed image shorter than its base, and with fsync writes the same bytes', async () => {
    const newBlocks = 2 * CHUNK_BLOCKS + 9;
    const { basePath, cowPath, expected } = await build('shrink', 3 * CHUNK_BLOCKS, newBlocks, async (w, e) => {
      for (let t = 1; t < newBlocks; t += 3) await replace(w, e, t, 1, t);
    });
    expect((await outcome(basePath, cowPath, expected.length)).equals(expected)).toBe(true);
    expect((await outcome(basePath, cowPath, expected.length, true)).equals(expected)).toBe(true);
  });

  it('replaces an existing, longer output whole, with and without fsync', async () => {
    const { basePath, cowPath, expected } = await build('over', 4 * CHUNK_BLOCKS, 4 * CHUNK_BLOCKS, async (w, e) => {
      await replace(w, e, 3 * CHUNK_BLOCKS + 5, 2, 21);
    });
    const outPath = path.join(dir, 'existing.img');
    for (const fsync of [false, true]) {
      await fs.writeFile(outPath, Buffer.alloc(9 * CHUNK_BLOCKS * BS, 0x5a)); // longer than the new image
      await applyCow(cowPath, basePath, outPath, { size: expected.length, fsync });
      expect((await fs.readFile(outPath)).equals(expected)).toBe(true);
    }
    expect((await fs.readdir(dir)).filter((n) => n.includes('.tmp-'))).toEqual([]);
  });

  it('leaves no temporary file when a payload is corrupt on the base-copy path', async () => {
    const { basePath, cowPath, expected } = await build('corrupt-sparse', 6 * CHUNK_BLOCKS, 6 * CHUNK_BLOCKS, async (w, e) => {
      await replace(w, e, 5 * CHUNK_BLOCKS + 1, 1, 31);
    });
    const cow = await fs.readFile(cowPath);
    cow.fill(0xee, cow.length - 64);
    await fs.writeFile(cowPath, cow);
    const outPath = path.join(dir, 'never-sparse.img');
    await expect(applyCow(cowPath, basePath, outPath, { size: expected.length, fsync: true })).rejects.toThrow(/decompress/);
    await expect(fs.stat(outPath)).rejects.toMatchObject({ code: 'ENOENT' });
    expect((await fs.readdir(dir)).filter((n) => n.includes('.tmp-'))).toEqual([]);
  });

  it('leaves neither the output nor a temporary file when a payload deep in the image is corrupt', async () => {
    const { basePath, cowPath, expected } = await build('corrupt', 3 * CHUNK_BLOCKS, 3 * CHUNK_BLOCKS, async (w, e) => {
      for (let t = 0; t < 3 * CHUNK_BLOCKS; t += 50) await replace(w, e, t, 1, t);
    });
    const cow = await fs.readFile(cowPath);
    // The last payload sits at the end of the data area (the end of the file): garble its tail.
    cow.fill(0xee, cow.length - 64);
    await fs.writeFile(cowPath, cow);
    const outPath = path.join(dir, 'never.img');
    await expect(applyCow(cowPath, basePath, outPath, { size: expected.length })).rejects.toThrow(/decompress/);
    await expect(fs.stat(outPath)).rejects.toMatchObject({ code: 'ENOENT' });
    expect((await fs.readdir(dir)).filter((n) => n.includes('.tmp-'))).toEqual([]);
  });
});
