import { promises as fs } from 'node:fs';
import path from 'node:path';
import { isVabError } from '../../src/util/errors';
import { extractPayload } from '../../src/payload/extract';
import { ImageFile, ImageFileReader } from '../../src/payload/image-io';
import { OpType } from '../../src/payload/manifest';
import { createHash } from 'node:crypto';
import { buildPayload, extent } from './support/build';
import { randomBytes, tempDir } from './support/images';

const BLOCK = 4096;
const OPS = 64;
const BLOCKS_PER_OP = 4;

/**
 * A real file whose first datasync fails with EIO and whose later syncs succeed: what Linux does
 * after a writeback error, which it reports to one fsync only and then forgets.
 */
class LosingFile {
  writes = 0;
  datasyncs = 0;
  syncs = 0;
  private failed = false;

  constructor(
    private readonly inner: ImageFile,
    private readonly failFirstDatasync: boolean,
  ) {}

  static opener(layer: { files: LosingFile[]; failFirstDatasync: boolean }) {
    return async (file: string): Promise<ImageFile> => {
      const handle = await fs.open(file, 'w+', 0o644);
      const losing = new LosingFile(handle, layer.failFirstDatasync);
      layer.files.push(losing);
      return losing.asImageFile();
    };
  }

  asImageFile(): ImageFile {
    return {
      read: this.inner.read.bind(this.inner),
      write: ((...args: Parameters<ImageFile['write']>) => {
        this.writes++;
        return (this.inner.write as (...a: unknown[]) => unknown)(...args);
      }) as ImageFile['write'],
      datasync: async () => {
        this.datasyncs++;
        if (this.failFirstDatasync && !this.failed) {
          this.failed = true;
          throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO', errno: -5 });
        }
        await this.inner.datasync();
      },
      sync: () => {
        this.syncs++;
        return this.inner.sync();
      },
      truncate: (length?: number) => this.inner.truncate(length),
      close: () => this.inner.close(),
    };
  }
}

describe('ImageFileWriter keeps the first writeback error', () => {
  let dir: string;
  let payload: string;
  const image = randomBytes(7, OPS * BLOCKS_PER_OP * BLOCK);

  beforeAll(async () => {
    dir = await tempDir('vab-image-io-');
    payload = path.join(dir, 'p.bin');
    const ops = Array.from({ length: OPS }, (_, i) => ({
      type: OpType.REPLACE,
      data: image.subarray(i * BLOCKS_PER_OP * BLOCK, (i + 1) * BLOCKS_PER_OP * BLOCK),
      dst_extents: [extent(i * BLOCKS_PER_OP, BLOCKS_PER_OP)],
    }));
    await fs.writeFile(payload, buildPayload({ partitions: [{ partition_name: 'system', image, ops }] }));
  });
  afterAll(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('a datasync that fails early fails the extract with that error, though the final fsync succeeds', async () => {
    const layer = { files: [] as LosingFile[], failFirstDatasync: true };
    const out = path.join(dir, 'failing');
    const err = await extractPayload(payload, { outDir: out, fsync: true, imageWriter: { open: LosingFile.opener(layer), writebackBytes: 2 * BLOCKS_PER_OP * BLOCK } }).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(isVabError(err, 'EIO')).toBe(true);
    expect(err!.message).toMatch(/\.system\.img\.partial-\d+: cannot write .* back to disk: EIO: i\/o error, fdatasync/);
    const [file] = layer.files;
    expect(file.datasyncs).toBeGreaterThan(0);
    // It stops soon after the error instead of writing the rest of the partition.
    expect(file.writes).toBeLessThan(OPS);
    expect(await fs.readdir(out)).toEqual([]);
  });

  it('the same file layer without the failure extracts the image (the layer itself is sound)', async () => {
    const layer = { files: [] as LosingFile[], failFirstDatasync: false };
    const out = path.join(dir, 'sound');
    await extractPayload(payload, { outDir: out, fsync: true, imageWriter: { open: LosingFile.opener(layer), writebackBytes: 2 * BLOCKS_PER_OP * BLOCK } });
    expect(layer.files[0].datasyncs).toBeGreaterThan(0);
    expect((await fs.readFile(path.join(out, 'system.img'))).equals(image)).toBe(true);
  });
});

describe('durability is opt-in', () => {
  let dir: string;
  let payload: string;
  const image = randomBytes(8, 16 * BLOCK);
  beforeAll(async () => {
    dir = await tempDir('vab-image-durable-');
    payload = path.join(dir, 'p.bin');
    await fs.writeFile(payload, buildPayload({ partitions: [{ partition_name: 'system', image }] }));
  });
  afterAll(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('by default the image is complete and verified but never fsynced', async () => {
    const layer = { files: [] as LosingFile[], failFirstDatasync: false };
    await extractPayload(payload, { outDir: path.join(dir, 'plain'), imageWriter: { open: LosingFile.opener(layer), writebackBytes: BLOCK } });
    expect([layer.files[0].syncs, layer.files[0].datasyncs]).toEqual([0, 0]);
    expect((await fs.readFile(path.join(dir, 'plain', 'system.img'))).equals(image)).toBe(true);
  });

  it('with fsync the image is synced before it is renamed into place', async () => {
    const layer = { files: [] as LosingFile[], failFirstDatasync: false };
    await extractPayload(payload, { outDir: path.join(dir, 'durable'), fsync: true, imageWriter: { open: LosingFile.opener(layer) } });
    expect(layer.files[0].syncs).toBe(1);
    expect((await fs.readFile(path.join(dir, 'durable', 'system.img'))).equals(image)).toBe(true);
  });
});

describe('writes in any order, zeros as holes', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await tempDir('vab-image-order-');
  });
  afterAll(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  async function extractOps(name: string, image: Buffer, ops: Parameters<typeof buildPayload>[0]['partitions'][0]['ops'], hash?: Buffer) {
    const file = path.join(dir, `${name}.bin`);
    const info = { size: image.length, hash: hash ?? createHash('sha256').update(image).digest() };
    await fs.writeFile(file, buildPayload({ partitions: [{ partition_name: 'system', new_partition_info: info, ops }] }));
    const out = path.join(dir, `out-${name}`);
    await extractPayload(file, { outDir: out });
    return path.join(out, 'system.img');
  }

  it('ops that write the image back to front, with a ZERO over blocks an earlier op wrote', async () => {
    const blocks = 600; // past the 1 MiB gathering and the 4 MiB hashing steps' edges
    const image = randomBytes(9, blocks * BLOCK);
    image.fill(0, 100 * BLOCK, 110 * BLOCK);
    const ops = [];
    for (let start = blocks - 50; start >= 0; start -= 50) {
      ops.push({ type: OpType.REPLACE, data: start === 100 ? randomBytes(10, 50 * BLOCK) : image.subarray(start * BLOCK, (start + 50) * BLOCK), dst_extents: [extent(start, 50)] });
    }
    ops.push({ type: OpType.ZERO, dst_extents: [extent(100, 10)] });
    ops.push({ type: OpType.REPLACE, data: image.subarray(110 * BLOCK, 150 * BLOCK), dst_extents: [extent(110, 40)] });
    const out = await extractOps('backwards', image, ops);
    expect((await fs.readFile(out)).equals(image)).toBe(true);
  });

  it('a ZERO over blocks nothing wrote leaves a hole that reads as zeros', async () => {
    const image = Buffer.concat([randomBytes(11, BLOCK), Buffer.alloc(1024 * BLOCK), randomBytes(12, BLOCK)]);
    const ops = [
      { type: OpType.REPLACE, data: image.subarray(0, BLOCK), dst_extents: [extent(0, 1)] },
      { type: OpType.ZERO, dst_extents: [extent(1, 1024)] },
      { type: OpType.REPLACE, data: image.subarray(1025 * BLOCK), dst_extents: [extent(1025, 1)] },
    ];
    const out = await extractOps('hole', image, ops);
    expect((await fs.readFile(out)).equals(image)).toBe(true);
    expect((await fs.stat(out)).blocks * 512).toBeLessThan(image.length / 2);
  });

  it('out-of-order writes that do not make the promised image are refused', async () => {
    const image = randomBytes(13, 8 * BLOCK);
    const ops = [
      { type: OpType.REPLACE, data: image.subarray(4 * BLOCK), dst_extents: [extent(4, 4)] },
      { type: OpType.REPLACE, data: image.subarray(0, 4 * BLOCK), dst_extents: [extent(0, 4)] },
    ];
    const wrong = createHash('sha256').update('not this image').digest();
    await expect(extractOps('wrong', image, ops, wrong)).rejects.toThrow(/partition system: new image hashes to [0-9a-f]{64}, manifest says/);
    expect(await fs.readdir(path.join(dir, 'out-wrong'))).toEqual([]);
  });
});

describe('ImageFileReader', () => {
  it('reads any block range, concurrently, across its window edges and past the end of the image', async () => {
    const dir = await tempDir('vab-image-reader-');
    try {
      const file = path.join(dir, 'old.img');
      const data = randomBytes(14, 3 * 1024 * 1024 + 5000);
      await fs.writeFile(file, data);
      const reader = await ImageFileReader.open(file, BLOCK);
      const blocks = Math.ceil(data.length / BLOCK) + 3;
      const padded = Buffer.concat([data, Buffer.alloc(blocks * BLOCK - data.length)]);
      let x = 7;
      const next = (n: number) => ((x = (x * 1103515245 + 12345) >>> 0) % n);
      const reads = Array.from({ length: 300 }, () => {
        const start = next(blocks);
        const count = 1 + next(Math.min(blocks - start, next(4) === 0 ? 400 : 8));
        return { start, count };
      });
      reads.push({ start: 255, count: 2 }, { start: 256, count: 256 }, { start: 0, count: blocks });
      const got = await Promise.all(reads.map((r) => reader.read(r.start, r.count)));
      got.forEach((buffer, i) => expect(buffer.equals(padded.subarray(reads[i].start * BLOCK, (reads[i].start + reads[i].count) * BLOCK))).toBe(true));
      // A caller may change what it got without changing what the next caller reads.
      got[0].fill(0xee);
      expect((await reader.read(reads[0].start, reads[0].count)).equals(padded.subarray(reads[0].start * BLOCK, (reads[0].start + reads[0].count) * BLOCK))).toBe(true);
      await reader.close();
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
