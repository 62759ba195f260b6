import { promises as fs } from 'node:fs';
import path from 'node:path';
import { extractPayload } from '../../src/payload/extract';
import { generatePayload } from '../../src/payload/generate';
import { OpType } from '../../src/payload/manifest';
import { evolve, randomBytes, tempDir, writeImages } from './support/images';
import { layout, manifestOf, rewriteManifest } from './support/payloads';

const MiB = 1024 * 1024;

describe('bad input is refused with a clear error and leaves no image behind', () => {
  let dir: string;
  let full: Buffer;
  let delta: Buffer;
  const system = Buffer.concat([randomBytes(1, 5 * MiB), Buffer.from('tail')]);
  const vendor = randomBytes(2, MiB);
  let caseNo = 0;

  beforeAll(async () => {
    dir = await tempDir('vab-bad-');
    await writeImages(path.join(dir, 'old'), { system, vendor });
    await writeImages(path.join(dir, 'new'), { system: evolve(system, 3), vendor: evolve(vendor, 4) });
    await generatePayload({ targetDir: path.join(dir, 'old'), output: path.join(dir, 'full.bin') });
    await generatePayload({ targetDir: path.join(dir, 'new'), sourceDir: path.join(dir, 'old'), output: path.join(dir, 'delta.bin') });
    full = await fs.readFile(path.join(dir, 'full.bin'));
    delta = await fs.readFile(path.join(dir, 'delta.bin'));
  });
  afterAll(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  /**
   * Extracts `bytes` into a fresh directory and expects a failure. Nothing may be left in the
   * directory except the images of partitions that were finished (and verified) before the
   * failing one, listed in `finished` with their expected content.
   */
  async function refused(bytes: Buffer, sourceDir?: string, finished: Record<string, Buffer> = {}): Promise<Error & { code?: string }> {
    const n = ++caseNo;
    const file = path.join(dir, `case-${n}.bin`);
    const out = path.join(dir, `out-${n}`);
    await fs.writeFile(file, bytes);
    const error = await extractPayload(file, { outDir: out, sourceDir }).then(
      () => {
        throw new Error('extract succeeded');
      },
      (err: Error & { code?: string }) => err,
    );
    const left = await fs.readdir(out).catch(() => []);
    expect(left.sort()).toEqual(Object.keys(finished).map((name) => `${name}.img`));
    for (const [name, data] of Object.entries(finished)) expect((await fs.readFile(path.join(out, `${name}.img`))).equals(data)).toBe(true);
    return error;
  }

  it('a truncated payload names the first op whose data is cut', async () => {
    const err = await refused(full.subarray(0, Math.floor(full.length * 0.6)));
    expect(err.code).toBe('ETRUNCATED');
    expect(err.message).toMatch(/at offset \d+: partition system, op \d \(REPLACE\): data \[\d+, \+\d+\) runs past the end of the file \(\d+ bytes; truncated payload\?\)/);
  });

  it('a payload cut inside its header or manifest', async () => {
    expect((await refused(full.subarray(0, 10))).message).toMatch(/payload header needs 24 bytes, the file has 10/);
    expect((await refused(full.subarray(0, 100))).message).toMatch(/header declares \d+ bytes of metadata, the file has 100/);
  });

  it('a wrong magic, a wrong major version and an absurd manifest size', async () => {
    const magic = Buffer.from(full);
    magic.write('XrAU', 0);
    expect((await refused(magic)).message).toMatch(/at offset 0: not a payload: magic is 58724155/);
    const version = Buffer.from(full);
    version.writeBigUInt64BE(3n, 4);
    expect((await refused(version)).message).toMatch(/at offset 4: payload major version 3 is not supported/);
    const absurd = Buffer.from(full);
    absurd.writeBigUInt64BE(0xffff_ffff_ffffn, 12);
    expect((await refused(absurd)).message).toMatch(/at offset 12: manifest size 281474976710655 is absurd/);
  });

  it('a manifest that is not protobuf', async () => {
    const garbage = Buffer.from(full);
    garbage.fill(0xff, 24, 40);
    expect((await refused(garbage)).message).toMatch(/at offset 24: cannot parse payload manifest/);
  });

  it('an extent past the end of its partition', async () => {
    const bad = rewriteManifest(full, (m) => {
      m.partitions[1].operations[0].dst_extents[0].start_block = 250;
    });
    const err = await refused(bad);
    expect(err.message).toMatch(/partition vendor, op 0 \(REPLACE\): destination extent \[250, \+256\) runs past the end of the partition \(256 blocks\)/);
    const badSource = rewriteManifest(delta, (m) => {
      const op = m.partitions[0].operations.findIndex((o) => o.type === OpType.SOURCE_COPY);
      m.partitions[0].operations[op].src_extents[0].start_block = 5000;
    });
    expect((await refused(badSource, path.join(dir, 'old'))).message).toMatch(/partition system, op \d+ \(SOURCE_COPY\): source extent \[5000, \+\d+\) runs past the end of the partition \(1281 blocks\)/);
  });

  it('a blob whose hash does not match, found after earlier ops of the partition were written', async () => {
    const manifest = manifestOf(full);
    const ops = manifest.partitions[0].operations;
    const last = ops[ops.length - 1];
    const bad = Buffer.from(full);
    bad[layout(full).dataStart + last.data_offset! + 5] ^= 0xff;
    const err = await refused(bad);
    expect(err.code).toBe('EHASH');
    expect(err.message).toMatch(new RegExp(`at offset ${layout(full).dataStart + last.data_offset!}: partition system, op ${ops.length - 1} \\(REPLACE_XZ\\): data hash mismatch`));
  });

  it('an old image that is not the one the payload was made from: the op reading the changed block refuses it', async () => {
    // Every op that reads the old image carries its source hash, so the whole image is not
    // hashed first (update_engine relies on the same checks); the earlier partition, complete
    // and verified, stays.
    const manifest = manifestOf(delta);
    const copyIndex = manifest.partitions[1].operations.findIndex((o) => o.type === OpType.SOURCE_COPY);
    const block = manifest.partitions[1].operations[copyIndex].src_extents[0].start_block;
    const changed = path.join(dir, 'changed-source');
    const old = Buffer.from(vendor);
    old[block * 4096 + 1000] ^= 1;
    await writeImages(changed, { system, vendor: old });
    const err = await refused(delta, changed, { system: evolve(system, 3) });
    expect(err.code).toBe('EHASH');
    expect(err.message).toMatch(new RegExp(`partition vendor, op ${copyIndex} \\(SOURCE_COPY\\): source hash mismatch: .*wrong or modified source image`));
  });

  it('an old image that is not the one the payload was made from, when an op reads it unchecked: refused before any write', async () => {
    const unhashed = rewriteManifest(delta, (m) => {
      const op = m.partitions[1].operations.find((o) => o.type === OpType.SOURCE_COPY)!;
      delete op.src_sha256_hash;
    });
    const changed = path.join(dir, 'changed-source-2');
    const old = Buffer.from(vendor);
    old[1000] ^= 1;
    await writeImages(changed, { system, vendor: old });
    const err = await refused(unhashed, changed);
    expect(err.code).toBe('EHASH');
    expect(err.message).toMatch(/vendor.img: partition vendor: old image hashes to [0-9a-f]{64}, manifest expects/);
  });

  it('a source hash mismatch inside one op (partition hash not given)', async () => {
    const manifest = manifestOf(delta);
    const copyIndex = manifest.partitions[1].operations.findIndex((o) => o.type === OpType.SOURCE_COPY);
    const block = manifest.partitions[1].operations[copyIndex].src_extents[0].start_block;
    const unchecked = rewriteManifest(delta, (m) => {
      delete m.partitions[1].old_partition_info!.hash;
    });
    const changed = path.join(dir, 'changed-block');
    const old = Buffer.from(vendor);
    old[block * 4096 + 7] ^= 1;
    await writeImages(changed, { system, vendor: old });
    const err = await refused(unchecked, changed, { system: evolve(system, 3) });
    expect(err.code).toBe('EHASH');
    expect(err.message).toMatch(new RegExp(`partition vendor, op ${copyIndex} \\(SOURCE_COPY\\): source hash mismatch`));
  });

  it('an incremental payload without old images', async () => {
    expect((await refused(delta)).message).toMatch(/partition system is incremental: give the old images with --source/);
  });

  it('operations vab does not apply yet', async () => {
    for (const type of [OpType.PUFFDIFF, OpType.ZUCCHINI, OpType.LZ4DIFF_BSDIFF, OpType.LZ4DIFF_PUFFDIFF]) {
      const bad = rewriteManifest(delta, (m) => {
        m.partitions[1].operations[2].type = type;
      });
      const err = await refused(bad, path.join(dir, 'old'));
      expect(err.code).toBe('EUNSUPPORTED');
      expect(err.message).toContain(`unsupported operation ${OpType[type]} in partition vendor, op 2`);
    }
  });

  it('a partition that is not in the payload', async () => {
    await expect(extractPayload(path.join(dir, 'full.bin'), { outDir: path.join(dir, 'none'), partitions: ['boot'] })).rejects.toThrow(/partition boot is not in the payload \(it has system, vendor\)/);
  });
});
