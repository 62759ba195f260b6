import { promises as fs } from 'node:fs';
import path from 'node:path';
import { isVabError } from '../../src/util/errors';
import { extractPayload } from '../../src/payload/extract';
import { ImageFile } from '../../src/payload/image-io';
import { OpType } from '../../src/payload/manifest';
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
      sync: () => this.inner.sync(),
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
