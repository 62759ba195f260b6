import { promises as fs } from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { BSDF2_MAGIC, decodePatch, writeOfft } from '../../src/payload/bsdiff-format';
import { Compression, decompress } from '../../src/payload/codecs';
import { extractPayload } from '../../src/payload/extract';
import { MAX_PARTITION_SIZE } from '../../src/payload/limits';
import { OpType } from '../../src/payload/manifest';
import { MiB, vabMeasured, zeroBomb } from '../support/peak-memory';
import { bombPayload } from './support/bomb-payload';
import { tempDir } from './support/images';
import { rewriteManifest } from './support/payloads';

const BLOCK = 4096;
/** Generous: the machine is shared; an unbounded decode of these bombs takes far longer. */
const REFUSAL_MS = 10_000;
const MEMORY_SLACK = 64 * MiB;

/** A BSDF2 patch (brotli streams) with the given raw control entries and already-packed diff stream. */
function bsdf2(control: Array<[number, number, number]>, packedDiff: Buffer, newSize: number, packedControl?: Buffer): Buffer {
  const ctrl = Buffer.alloc(control.length * 24);
  control.forEach(([d, e, s], i) => {
    writeOfft(ctrl, i * 24, d);
    writeOfft(ctrl, i * 24 + 8, e);
    writeOfft(ctrl, i * 24 + 16, s);
  });
  const c = packedControl ?? zlib.brotliCompressSync(ctrl);
  const x = zlib.brotliCompressSync(Buffer.alloc(0));
  const header = Buffer.alloc(32);
  BSDF2_MAGIC.copy(header, 0);
  header.fill(2, 5, 8);
  writeOfft(header, 8, c.length);
  writeOfft(header, 16, packedDiff.length);
  writeOfft(header, 24, newSize);
  return Buffer.concat([header, c, packedDiff, x]);
}

describe('decompression bombs are refused early with a typed error', () => {
  let dir: string;
  // Each expands to at least 64 MiB, 16384 times the one block it is meant to produce.
  const bombs: Record<string, Buffer> = {};
  const brotliBomb = zlib.brotliCompressSync(Buffer.alloc(64 * MiB), { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 1 } });

  beforeAll(async () => {
    dir = await tempDir('vab-bombs-');
    bombs.xz = await zeroBomb(path.join(dir, 'bomb.xz'), 512 * MiB, 'xz -0 -T1');
    bombs.bz2 = await zeroBomb(path.join(dir, 'bomb.bz2'), 256 * MiB, 'bzip2 -c');
    // From a pipe zstd cannot know the size: the frame does not declare it and must be cut off while decoding.
    bombs.zstd = await zeroBomb(path.join(dir, 'bomb.zst'), 512 * MiB, 'zstd -c -q');
    bombs.zstdDeclared = await zeroBomb(path.join(dir, 'declared.zst'), 64 * MiB, `zstd -c -q --stream-size=${64 * MiB}`);
    bombs.brotli = brotliBomb;
  });
  afterAll(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it.each([
    ['xz', 'xz', /more than 4096 bytes/],
    ['bz2', 'bz2', /more than 4096 bytes/],
    ['zstd', 'zstd', /more than 4096 bytes/],
    ['zstd', 'zstdDeclared', /frame declares 67108864 bytes, more than the 4096 expected/],
    ['brotli', 'brotli', /more than 4096 bytes/],
  ] as const)('%s (%s) is cut off at the expected size', async (kind, name, message) => {
    const started = performance.now();
    const error = await decompress(kind as Compression, bombs[name], BLOCK).catch((err: unknown) => err);
    expect(error).toMatchObject({ code: 'ECORRUPT', message: expect.stringMatching(message) });
    expect(performance.now() - started).toBeLessThan(REFUSAL_MS);
  });

  it.each([
    ['REPLACE_XZ', 'xz', OpType.REPLACE_XZ],
    ['REPLACE_BZ', 'bz2', OpType.REPLACE_BZ],
    ['REPLACE_ZSTD', 'zstd', OpType.REPLACE_ZSTD],
    ['REPLACE_ZSTD', 'zstdDeclared', OpType.REPLACE_ZSTD],
  ] as const)('extract refuses a %s bomb (%s), naming file, op and offset, and leaves no image', async (opName, name, type) => {
    const file = path.join(dir, `${name}.bin`);
    const out = path.join(dir, `out-${name}`);
    const payload = bombPayload(type, bombs[name]);
    await fs.writeFile(file, payload);
    const error = await extractPayload(file, { outDir: out }).catch((err: unknown) => err);
    const blobOffset = payload.length - bombs[name].length;
    expect(error).toMatchObject({ code: 'ECORRUPT', file, offset: blobOffset });
    expect((error as Error).message).toContain(`${file} at offset ${blobOffset}: partition system, op 0 (${opName})`);
    expect(await fs.readdir(out).catch(() => [])).toEqual([]);
  });

  it('extract refuses a BROTLI_BSDIFF whose diff stream is a brotli bomb', async () => {
    const old = Buffer.alloc(BLOCK, 7);
    await fs.mkdir(path.join(dir, 'old'), { recursive: true });
    await fs.writeFile(path.join(dir, 'old', 'system.img'), old);
    const file = path.join(dir, 'bsdiff-bomb.bin');
    await fs.writeFile(file, bombPayload(OpType.BROTLI_BSDIFF, bsdf2([[BLOCK, 0, 0]], brotliBomb, BLOCK), { old }));
    const error = await extractPayload(file, { outDir: path.join(dir, 'out-bsdiff'), sourceDir: path.join(dir, 'old') }).catch((err: unknown) => err);
    expect(error).toMatchObject({ code: 'ECORRUPT', message: expect.stringContaining(`op 0 (BROTLI_BSDIFF): brotli data decompresses to more than ${BLOCK} bytes`) });
  });

  describe('bsdiff lengths are checked before anything is allocated for them', () => {
    const diff = zlib.brotliCompressSync(Buffer.alloc(BLOCK));

    it('refuses a header whose new size is not the destination size', async () => {
      await expect(decodePatch(bsdf2([[BLOCK, 0, 0]], diff, 2 ** 40), BLOCK)).rejects.toMatchObject({
        code: 'ECORRUPT',
        message: `bsdiff header says the new file has ${2 ** 40} bytes, the destination holds ${BLOCK}`,
      });
    });

    it('refuses a control entry longer than what is left of the new file', async () => {
      await expect(decodePatch(bsdf2([[100, 0, 0], [2 ** 40, 0, 0]], diff, BLOCK), BLOCK)).rejects.toMatchObject({
        code: 'ECORRUPT',
        message: `bsdiff control entry 1 writes ${2 ** 40} + 0 bytes, only ${BLOCK - 100} of the new file are left`,
      });
      await expect(decodePatch(bsdf2([[100, BLOCK, 0]], diff, BLOCK), BLOCK)).rejects.toThrow(/control entry 0 writes 100 \+ 4096 bytes, only 4096/);
    });

    it('cuts off a control stream that decompresses past its bound', async () => {
      await expect(decodePatch(bsdf2([], diff, BLOCK, brotliBomb), BLOCK)).rejects.toMatchObject({ code: 'ECORRUPT', message: `brotli data decompresses to more than ${64 * 1024} bytes` });
    });
  });

  it(`refuses a partition above ${MAX_PARTITION_SIZE} bytes before writing anything`, async () => {
    const file = path.join(dir, 'huge.bin');
    const out = path.join(dir, 'out-huge');
    await fs.writeFile(file, rewriteManifest(bombPayload(OpType.REPLACE_XZ, bombs.xz), (m) => (m.partitions[0].new_partition_info!.size = MAX_PARTITION_SIZE + BLOCK)));
    await expect(extractPayload(file, { outDir: out })).rejects.toMatchObject({ code: 'ECORRUPT', message: expect.stringMatching(/new size \d+ is above vab's limit/) });
    expect(await fs.readdir(out).catch(() => [])).toEqual([]);
  });

  describe('peak memory of vab payload extract (measured in the child process)', () => {
    let baseline: number;

    beforeAll(async () => {
      // The same command on a harmless payload of the same shape: what loading vab costs.
      const file = path.join(dir, 'harmless.bin');
      await fs.writeFile(file, bombPayload(OpType.REPLACE_XZ, await zeroBomb(path.join(dir, 'block.xz'), BLOCK, 'xz -0 -T1')));
      const result = await vabMeasured('payload', 'extract', file, '--out', path.join(dir, 'out-harmless'));
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      baseline = result.maxRssBytes;
    });

    it.each([
      ['REPLACE_XZ', OpType.REPLACE_XZ, 'xz'],
      ['REPLACE_BZ', OpType.REPLACE_BZ, 'bz2'],
      ['REPLACE_ZSTD', OpType.REPLACE_ZSTD, 'zstd'],
    ] as const)('a %s bomb stays within 64 MiB of the baseline and is refused quickly', async (opName, type, name) => {
      const file = path.join(dir, `cli-${name}.bin`);
      await fs.writeFile(file, bombPayload(type, bombs[name]));
      const result = await vabMeasured('payload', 'extract', file, '--out', path.join(dir, `out-cli-${name}`));
      expect(result.code).not.toBe(0);
      expect(result.stderr).toContain(`op 0 (${opName}): ${name} data decompresses to more than ${BLOCK} bytes [ECORRUPT]`);
      expect(result.maxRssBytes - baseline).toBeLessThan(MEMORY_SLACK);
      expect(result.elapsedMs).toBeLessThan(REFUSAL_MS);
    });

    it('a legitimate REPLACE_BZ op filling 256 MiB with zeros from a few hundred bytes streams within 64 MiB', async () => {
      const size = 256 * MiB;
      const blob = await zeroBomb(path.join(dir, 'big.bz2'), size, 'bzip2 -9');
      expect(blob.length).toBeLessThan(4096);
      const file = path.join(dir, 'big-bz2.bin');
      await fs.writeFile(file, bombPayload(OpType.REPLACE_BZ, blob, { blocks: size / BLOCK }));
      const out = path.join(dir, 'out-big-bz2');
      const result = await vabMeasured('payload', 'extract', file, '--out', out);
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      expect(result.maxRssBytes - baseline).toBeLessThan(MEMORY_SLACK);
      expect((await fs.stat(path.join(out, 'system.img'))).size).toBe(size);
      await fs.rm(out, { recursive: true, force: true });
    });

    /** `vab payload extract` of `payload` over the old image `old`, measured in the child. */
    async function extractOver(name: string, payload: Buffer, old: Buffer): Promise<{ result: Awaited<ReturnType<typeof vabMeasured>>; out: string }> {
      const file = path.join(dir, `${name}.bin`);
      await fs.writeFile(file, payload);
      const source = path.join(dir, `${name}-source`);
      await fs.mkdir(source, { recursive: true });
      await fs.writeFile(path.join(source, 'system.img'), old);
      const out = path.join(dir, `${name}-out`);
      return { result: await vabMeasured('payload', 'extract', file, '--source', source, '--out', out), out };
    }

    /** The extract succeeded within the memory bound and wrote `image`. */
    async function expectStreamed(run: { result: Awaited<ReturnType<typeof vabMeasured>>; out: string }, image: Buffer): Promise<void> {
      expect(run.result.stderr).toBe('');
      expect(run.result.code).toBe(0);
      expect(run.result.maxRssBytes - baseline).toBeLessThan(MEMORY_SLACK);
      expect((await fs.readFile(path.join(run.out, 'system.img'))).equals(image)).toBe(true);
      await fs.rm(run.out, { recursive: true, force: true });
    }

    it('a legitimate 64 MiB BROTLI_BSDIFF op streams: old, new and decoded streams are never held whole', async () => {
      const size = 64 * MiB;
      // new = old + diff, with a diff of all ones: every byte read from the old file and changed.
      const old = Buffer.alloc(size);
      for (let i = 0; i < size; i += 4096) old.writeUInt32LE(i, i);
      const image = Buffer.from(old);
      for (let i = 0; i < size; i++) image[i] = (image[i] + 1) & 0xff;
      const diff = zlib.brotliCompressSync(Buffer.alloc(size, 1), { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 1 } });
      await expectStreamed(await extractOver('big-bsdiff', bombPayload(OpType.BROTLI_BSDIFF, bsdf2([[size, 0, 0]], diff, size), { old, blocks: size / BLOCK, image }), old), image);
    });

    it('a 64 MiB SOURCE_COPY is copied a chunk at a time, within 64 MiB', async () => {
      const size = 64 * MiB;
      const old = Buffer.alloc(size);
      for (let i = 0; i < size; i += 4096) old.writeUInt32LE(i + 1, i);
      // One op copying the whole old image onto itself shifted by one block (the last block wraps).
      const blocks = size / BLOCK;
      const image = Buffer.concat([old.subarray(size - BLOCK), old.subarray(0, size - BLOCK)]);
      const payload = rewriteManifest(bombPayload(OpType.REPLACE, Buffer.alloc(0), { old, blocks, image }), (m) => {
        const op = m.partitions[0].operations[0];
        op.type = OpType.SOURCE_COPY;
        op.data_offset = undefined;
        op.data_length = undefined;
        op.data_sha256_hash = undefined;
        op.src_extents = [{ start_block: blocks - 1, num_blocks: 1 }, { start_block: 0, num_blocks: blocks - 1 }];
        op.dst_extents = [{ start_block: 0, num_blocks: blocks }];
      });
      await expectStreamed(await extractOver('big-copy', payload, old), image);
    });

    it('a streamed bsdiff whose diff stream decodes past what its control entries need is refused, within 64 MiB', async () => {
      const size = 8 * MiB;
      const old = Buffer.alloc(size);
      // The control entries need 8 MiB of diff; the stream holds 64 MiB.
      const { result } = await extractOver('big-bsdiff-bomb', bombPayload(OpType.BROTLI_BSDIFF, bsdf2([[size, 0, 0]], brotliBomb, size), { old, blocks: size / BLOCK }), old);
      expect(result.code).not.toBe(0);
      expect(result.stderr).toMatch(/bsdiff diff stream decompresses to more than the 8388608 bytes the control entries need \[ECORRUPT\]/);
      expect(result.maxRssBytes - baseline).toBeLessThan(MEMORY_SLACK);
    });
  });
});
