import { promises as fs } from 'node:fs';
import path from 'node:path';
import { extractPayload } from '../../src/payload/extract';
import { generatePayload } from '../../src/payload/generate';
import { OpType } from '../../src/payload/manifest';
import { PayloadFile } from '../../src/payload/payload-file';
import { makeRepoImages } from '../support/fixtures';
import { tempDir } from './support/images';

/**
 * What aosp-fixture.test.ts checks on Android's sample payload, on a full payload vab generates
 * from the filesystem images the repo builds itself, so a clone without ../shared still covers it.
 */
describe('a full payload of the repo-made ext4 and erofs images', () => {
  let dir: string;
  let file: string;
  const images: Record<string, Buffer> = {};

  beforeAll(async () => {
    dir = await tempDir('vab-repo-fixture-');
    const built = await makeRepoImages(path.join(dir, 'built'));
    await fs.mkdir(path.join(dir, 'target'));
    for (const [name, from] of [['kernel', built.ext4], ['root', built.erofs]] as const) {
      images[name] = await fs.readFile(from);
      await fs.copyFile(from, path.join(dir, 'target', `${name}.img`));
    }
    file = path.join(dir, 'full.bin');
    await generatePayload({ targetDir: path.join(dir, 'target'), output: file, compression: 'bz2', partitions: ['kernel', 'root'] });
  });
  afterAll(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('parses as an unsigned full payload with kernel and root, written with replace operations', async () => {
    const payload = await PayloadFile.open(file);
    try {
      const { manifest } = payload;
      expect(payload.header.metadata_signature_size).toBe(0);
      expect(manifest.minor_version ?? 0).toBe(0);
      expect(manifest.partitions.map((p) => p.partition_name)).toEqual(['kernel', 'root']);
      for (const partition of manifest.partitions) {
        expect(partition.old_partition_info).toBeFalsy();
        for (const op of partition.operations) expect(op.src_extents ?? []).toEqual([]);
      }
      // The erofs image is mostly an incompressible file, so only the ext4 one surely compresses.
      expect(manifest.partitions[0].operations.some((op) => op.type === OpType.REPLACE_BZ)).toBe(true);
      expect(manifest.partitions[0].new_partition_info?.size).toBe(images.kernel.length);
      expect(manifest.partitions[1].new_partition_info?.size).toBe(images.root.length);
    } finally {
      await payload.close();
    }
  });

  it('extracts images byte-identical to the ones it was made from, and nothing else', async () => {
    const out = path.join(dir, 'out');
    const extracted = await extractPayload(file, { outDir: out });
    expect(extracted.map((i) => i.partition)).toEqual(['kernel', 'root']);
    expect((await fs.readFile(path.join(out, 'kernel.img'))).equals(images.kernel)).toBe(true);
    expect((await fs.readFile(path.join(out, 'root.img'))).equals(images.root)).toBe(true);
    expect((await fs.readdir(out)).sort()).toEqual(['kernel.img', 'root.img']);
  });
});
