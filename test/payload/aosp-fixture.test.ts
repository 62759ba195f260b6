import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { extractPayload } from '../../src/payload/extract';
import { OpType } from '../../src/payload/manifest';
import { PayloadFile } from '../../src/payload/payload-file';
import { AOSP_FIXTURES as AOSP, describeWithFiles } from '../support/fixtures';

/** Android's own sample payload (kept beside the repo); repo-fixture.test.ts checks the same on images the repo makes. */
const FILES = ['full_payload.bin', 'disk_ext2_4k.img', 'disk_sqfs_default.img'].map((f) => path.join(AOSP, f));

describeWithFiles('the AOSP sample full payload', FILES, () => {
  let out: string;
  beforeAll(async () => {
    out = await fs.mkdtemp(path.join(os.tmpdir(), 'vab-aosp-'));
  });
  afterAll(async () => {
    await fs.rm(out, { recursive: true, force: true });
  });

  it('parses as an unsigned full payload with kernel and root', async () => {
    const payload = await PayloadFile.open(path.join(AOSP, 'full_payload.bin'));
    try {
      const { manifest } = payload;
      expect(payload.header.metadata_signature_size).toBe(0);
      expect(manifest.minor_version ?? 0).toBe(0);
      expect(manifest.partitions.map((p) => p.partition_name)).toEqual(['kernel', 'root']);
      expect(manifest.partitions[0].operations.map((op) => op.type)).toEqual([OpType.REPLACE_BZ, OpType.REPLACE_BZ]);
      expect(manifest.partitions[1].operations.map((op) => op.type)).toEqual([OpType.REPLACE_XZ]);
      expect(manifest.partitions[0].new_partition_info?.size).toBe(4 * 1024 * 1024);
    } finally {
      await payload.close();
    }
  });

  it('extracts images byte-identical to the ones AOSP built it from', async () => {
    const images = await extractPayload(path.join(AOSP, 'full_payload.bin'), { outDir: out });
    expect(images.map((i) => i.partition)).toEqual(['kernel', 'root']);
    const [kernel, root, wantKernel, wantRoot] = await Promise.all([
      fs.readFile(path.join(out, 'kernel.img')),
      fs.readFile(path.join(out, 'root.img')),
      fs.readFile(path.join(AOSP, 'disk_ext2_4k.img')),
      fs.readFile(path.join(AOSP, 'disk_sqfs_default.img')),
    ]);
    expect(kernel.equals(wantKernel)).toBe(true);
    expect(root.equals(wantRoot)).toBe(true);
    expect((await fs.readdir(out)).sort()).toEqual(['kernel.img', 'root.img']);
  });
});
