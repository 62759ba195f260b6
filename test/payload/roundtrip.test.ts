import { promises as fs } from 'node:fs';
import path from 'node:path';
import { extractPayload } from '../../src/payload/extract';
import { generatePayload } from '../../src/payload/generate';
import { OpType, opTypeName } from '../../src/payload/manifest';
import { findMergeHazard } from '../../src/payload/merge-sequence';
import { PayloadFile } from '../../src/payload/payload-file';
import { evolve, randomBytes, tempDir, writeImages } from './support/images';
import { manifestOf, rewriteManifest } from './support/payloads';

const MiB = 1024 * 1024;

async function opCounts(file: string): Promise<Record<string, number>> {
  const payload = await PayloadFile.open(file);
  try {
    const counts: Record<string, number> = {};
    for (const p of payload.manifest.partitions) for (const op of p.operations) counts[opTypeName(op.type)] = (counts[opTypeName(op.type)] ?? 0) + 1;
    return counts;
  } finally {
    await payload.close();
  }
}

async function expectImages(dir: string, images: Record<string, Buffer>): Promise<void> {
  for (const [name, data] of Object.entries(images)) {
    const got = await fs.readFile(path.join(dir, `${name}.img`));
    expect(got.length).toBe(data.length);
    expect(got.equals(data)).toBe(true);
  }
}

describe('generate then extract, random images', () => {
  let dir: string;
  const system = Buffer.concat([randomBytes(1, 4 * MiB), Buffer.alloc(2 * MiB), randomBytes(2, MiB / 2 + 100)]);
  const vendor = Buffer.concat([Buffer.from('vendor '.repeat(100000)), randomBytes(3, 300 * 1024)]);
  beforeAll(async () => {
    dir = await tempDir('vab-roundtrip-');
    await writeImages(path.join(dir, 'old'), { system, vendor });
  });
  afterAll(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it.each(['zstd', 'xz', 'bz2'] as const)('full payload with %s', async (compression) => {
    const file = path.join(dir, `full-${compression}.bin`);
    const images: Record<string, Buffer> = compression === 'bz2' ? { vendor } : { system, vendor };
    // zstd is not allowed in a full payload (minor version 0): made OEM-style, as extract must read those.
    await generatePayload({ targetDir: path.join(dir, 'old'), output: file, compression, partitions: Object.keys(images), codecBeyondMinorVersion: compression === 'zstd' });
    const counts = await opCounts(file);
    const replace = { zstd: 'REPLACE_ZSTD', xz: 'REPLACE_XZ', bz2: 'REPLACE_BZ' }[compression];
    expect(counts[replace]).toBeGreaterThan(0);
    expect(counts.ZERO).toBeUndefined();
    expect(manifestOf(await fs.readFile(file)).minor_version ?? 0).toBe(0);
    const out = path.join(dir, `out-full-${compression}`);
    await extractPayload(file, { outDir: out });
    await expectImages(out, images);
  });

  it('incremental payload: copies, diffs, replaces and zeros reproduce the new images', async () => {
    const newSystem = evolve(system, 9);
    const newVendor = evolve(vendor, 10);
    await writeImages(path.join(dir, 'new'), { system: newSystem, vendor: newVendor });
    const file = path.join(dir, 'delta.bin');
    await generatePayload({ targetDir: path.join(dir, 'new'), sourceDir: path.join(dir, 'old'), output: file, minorVersion: 10 });
    const counts = await opCounts(file);
    for (const type of [OpType.SOURCE_COPY, OpType.BROTLI_BSDIFF, OpType.REPLACE_ZSTD, OpType.ZERO]) expect(counts[opTypeName(type)]).toBeGreaterThan(0);
    const payload = await PayloadFile.open(file);
    try {
      expect(payload.manifest.minor_version).toBe(10);
      const dpm = payload.manifest.dynamic_partition_metadata!;
      expect(dpm).toMatchObject({ vabc_enabled: true, cow_version: 3, compression_factor: 65536, vabc_compression_param: 'lz4' });
      for (const p of payload.manifest.partitions) {
        expect(p.merge_operations.length).toBeGreaterThan(0);
        expect(findMergeHazard(p.merge_operations)).toBeUndefined();
      }
    } finally {
      await payload.close();
    }
    const out = path.join(dir, 'out-delta');
    await extractPayload(file, { outDir: out, sourceDir: path.join(dir, 'old') });
    await expectImages(out, { system: newSystem, vendor: newVendor });
    // The delta is far smaller than the full payload of the same images.
    const full = path.join(dir, 'full-new.bin');
    await generatePayload({ targetDir: path.join(dir, 'new'), output: full });
    expect((await fs.stat(file)).size).toBeLessThan((await fs.stat(full)).size / 2);
  });

  it('keeps unchanged blocks in place even when their content also appears earlier', async () => {
    // Every block holds the same bytes: "first block with this content" would be block 0 for all.
    const same = Buffer.concat(Array.from({ length: 64 }, () => Buffer.alloc(4096, 0x5c)));
    await writeImages(path.join(dir, 'same-old'), { data: same });
    await writeImages(path.join(dir, 'same-new'), { data: same });
    const file = path.join(dir, 'same.bin');
    await generatePayload({ targetDir: path.join(dir, 'same-new'), sourceDir: path.join(dir, 'same-old'), output: file });
    const payload = await PayloadFile.open(file);
    try {
      const [partition] = payload.manifest.partitions;
      expect(partition.operations.map((op) => [op.type, op.src_extents, op.dst_extents])).toEqual([
        [OpType.SOURCE_COPY, [{ start_block: 0, num_blocks: 64 }], [{ start_block: 0, num_blocks: 64 }]],
      ]);
      expect(partition.merge_operations).toEqual([]);
    } finally {
      await payload.close();
    }
  });

  it('extracts correctly when operations write out of block order (hash read back from the file)', async () => {
    const file = path.join(dir, 'delta.bin');
    const bytes = await fs.readFile(file);
    // Move system's ZERO op to the end: blobs stay in order (ZERO has none), writes do not.
    const reordered = rewriteManifest(bytes, (m) => {
      const ops = m.partitions[0].operations;
      const zero = ops.findIndex((op) => op.type === OpType.ZERO);
      ops.push(...ops.splice(zero, 1));
    });
    expect(manifestOf(reordered).partitions[0].operations.at(-1)!.type).toBe(OpType.ZERO);
    await fs.writeFile(path.join(dir, 'reordered.bin'), reordered);
    await extractPayload(path.join(dir, 'reordered.bin'), { outDir: path.join(dir, 'out-reordered'), sourceDir: path.join(dir, 'old') });
    await expectImages(path.join(dir, 'out-reordered'), { system: evolve(system, 9), vendor: evolve(vendor, 10) });
  });
});
