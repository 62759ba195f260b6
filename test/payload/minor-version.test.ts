import { promises as fs } from 'node:fs';
import path from 'node:path';
import { isVabError } from '../../src/util/errors';
import { extractPayload } from '../../src/payload/extract';
import { generatePayload, GenerateOptions } from '../../src/payload/generate';
import { formatSummary, inspectPayload, requireAllowedOps } from '../../src/payload/inspect';
import { OpType, opTypeName } from '../../src/payload/manifest';
import { allowedOps, disallowedOps } from '../../src/payload/minor-version';
import { androidCheckerProblems } from './support/android-checker';
import { buildPayload, extent } from './support/build';
import { evolve, randomBytes, tempDir, writeImages } from './support/images';
import { manifestOf } from './support/payloads';

const MiB = 1024 * 1024;

function wholeBlocks(data: Buffer): Buffer {
  return Buffer.concat([data, Buffer.alloc((4096 - (data.length % 4096)) % 4096)]);
}

/** update_engine's PayloadVersion::OperationAllowed, written out per minor version (major version 2). */
const ANDROID_TABLE: Record<number, string[]> = {
  0: ['REPLACE', 'REPLACE_BZ', 'REPLACE_XZ'],
  2: ['REPLACE', 'REPLACE_BZ', 'SOURCE_COPY', 'SOURCE_BSDIFF', 'REPLACE_XZ'],
  3: ['REPLACE', 'REPLACE_BZ', 'SOURCE_COPY', 'SOURCE_BSDIFF', 'REPLACE_XZ'],
  4: ['REPLACE', 'REPLACE_BZ', 'SOURCE_COPY', 'SOURCE_BSDIFF', 'ZERO', 'DISCARD', 'REPLACE_XZ', 'BROTLI_BSDIFF'],
  5: ['REPLACE', 'REPLACE_BZ', 'SOURCE_COPY', 'SOURCE_BSDIFF', 'ZERO', 'DISCARD', 'REPLACE_XZ', 'PUFFDIFF', 'BROTLI_BSDIFF'],
  6: ['REPLACE', 'REPLACE_BZ', 'SOURCE_COPY', 'SOURCE_BSDIFF', 'ZERO', 'DISCARD', 'REPLACE_XZ', 'PUFFDIFF', 'BROTLI_BSDIFF'],
  7: ['REPLACE', 'REPLACE_BZ', 'SOURCE_COPY', 'SOURCE_BSDIFF', 'ZERO', 'DISCARD', 'REPLACE_XZ', 'PUFFDIFF', 'BROTLI_BSDIFF'],
  8: ['REPLACE', 'REPLACE_BZ', 'SOURCE_COPY', 'SOURCE_BSDIFF', 'ZERO', 'DISCARD', 'REPLACE_XZ', 'PUFFDIFF', 'BROTLI_BSDIFF', 'ZUCCHINI'],
  9: ['REPLACE', 'REPLACE_BZ', 'SOURCE_COPY', 'SOURCE_BSDIFF', 'ZERO', 'DISCARD', 'REPLACE_XZ', 'PUFFDIFF', 'BROTLI_BSDIFF', 'ZUCCHINI', 'LZ4DIFF_BSDIFF', 'LZ4DIFF_PUFFDIFF'],
  10: ['REPLACE', 'REPLACE_BZ', 'SOURCE_COPY', 'SOURCE_BSDIFF', 'ZERO', 'DISCARD', 'REPLACE_XZ', 'PUFFDIFF', 'BROTLI_BSDIFF', 'ZUCCHINI', 'LZ4DIFF_BSDIFF', 'LZ4DIFF_PUFFDIFF', 'REPLACE_ZSTD'],
};

describe('ops allowed per minor version', () => {
  it.each(Object.entries(ANDROID_TABLE))('minor version %s', (minor, ops) => {
    expect(allowedOps(Number(minor)).map(opTypeName)).toEqual(ops);
  });

  it('minor version 1 (in-place, deprecated) and unknown versions allow nothing', () => {
    expect(allowedOps(1)).toEqual([]);
    expect(allowedOps(11)).toEqual([]);
  });
});

async function failure(work: Promise<unknown>): Promise<Error & { code?: string }> {
  return work.then(
    () => {
      throw new Error('expected a failure');
    },
    (err: Error & { code?: string }) => err,
  );
}

describe('generate --minor-version', () => {
  let dir: string;
  // Random data with a zero stretch that fills the second 2 MiB chunk; the new image edits it and
  // appends 2 MiB of text past the old end, where nothing can be diffed and a codec must be used.
  // Both are whole blocks, as Android's images are (its checker refuses extents past the size).
  const old = Buffer.concat([randomBytes(21, 2 * MiB), Buffer.alloc(2 * MiB), randomBytes(22, 200 * 1024)]);
  const neu = wholeBlocks(Buffer.concat([evolve(old, 23), Buffer.from('compressible text '.repeat(120000))]));
  const opsOf = async (file: string) => manifestOf(await fs.readFile(file)).partitions.flatMap((p) => p.operations.map((op) => opTypeName(op.type)));

  beforeAll(async () => {
    dir = await tempDir('vab-minor-');
    await writeImages(path.join(dir, 'old'), { system: old });
    await writeImages(path.join(dir, 'new'), { system: neu });
  });
  afterAll(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  async function generate(name: string, options: Partial<GenerateOptions>, incremental = true): Promise<string> {
    const output = path.join(dir, `${name}.bin`);
    await generatePayload({ targetDir: path.join(dir, 'new'), sourceDir: incremental ? path.join(dir, 'old') : undefined, output, ...options });
    return output;
  }

  async function expectExtracts(file: string): Promise<void> {
    const out = path.join(dir, `out-${path.basename(file)}`);
    await extractPayload(file, { outDir: out, sourceDir: path.join(dir, 'old') });
    expect((await fs.readFile(path.join(out, 'system.img'))).equals(neu)).toBe(true);
  }

  it('a full payload is minor version 0 with REPLACE_XZ, zeros compressed instead of ZERO', async () => {
    const file = await generate('full-default', {}, false);
    const manifest = manifestOf(await fs.readFile(file));
    expect(manifest.minor_version ?? 0).toBe(0);
    const ops = manifest.partitions[0].operations;
    expect(new Set(ops.map((op) => opTypeName(op.type)))).toEqual(new Set(['REPLACE_XZ']));
    // The all-zero chunk: one op, 2 MiB of destination, a blob of almost nothing.
    const zeroChunk = ops.find((op) => op.dst_extents[0].start_block === 512)!;
    expect(zeroChunk.dst_extents).toEqual([extent(512, 512)]);
    expect(zeroChunk.data_length).toBeLessThan(4096);
    expect(androidCheckerProblems(await fs.readFile(file))).toEqual([]);
    await expectExtracts(file);
  });

  it('a full payload with bz2 is REPLACE_BZ only', async () => {
    const file = await generate('full-bz2', { compression: 'bz2', minorVersion: 0 }, false);
    expect(new Set(await opsOf(file))).toEqual(new Set(['REPLACE_BZ']));
  });

  it('an incremental payload defaults to minor version 9 and xz', async () => {
    const file = await generate('delta-default', {});
    expect(manifestOf(await fs.readFile(file)).minor_version).toBe(9);
    const ops = new Set(await opsOf(file));
    expect(ops).toEqual(new Set(['SOURCE_COPY', 'ZERO', 'BROTLI_BSDIFF', 'REPLACE_XZ', 'REPLACE']));
    await expectExtracts(file);
  });

  it.each([2, 3, 4, 5, 6, 7, 8, 9, 10])('minor version %i: only ops it allows, and the images extract', async (minor) => {
    const file = await generate(`delta-${minor}`, { minorVersion: minor });
    const bytes = await fs.readFile(file);
    const manifest = manifestOf(bytes);
    expect(manifest.minor_version).toBe(minor);
    expect(disallowedOps(manifest)).toEqual([]);
    const ops = new Set(manifest.partitions.flatMap((p) => p.operations.map((op) => opTypeName(op.type))));
    for (const type of ops) expect(ANDROID_TABLE[minor]).toContain(type);
    // What the generator chooses within that: ZERO and BROTLI_BSDIFF from 4, zstd at 10.
    expect(ops.has('ZERO')).toBe(minor >= 4);
    expect(ops.has('BROTLI_BSDIFF')).toBe(minor >= 4);
    expect(ops.has(minor >= 10 ? 'REPLACE_ZSTD' : 'REPLACE_XZ')).toBe(true);
    expect(ops.has('SOURCE_COPY')).toBe(true);
    if (minor <= 7) expect(androidCheckerProblems(bytes)).toEqual([]);
    await expectExtracts(file);
  });

  it('a --minor-version 7 payload passes Android 14\'s checker rules, and the minor-10 payload does not', async () => {
    expect(androidCheckerProblems(await fs.readFile(path.join(dir, 'delta-7.bin')))).toEqual([]);
    const problems = androidCheckerProblems(await fs.readFile(path.join(dir, 'delta-10.bin')));
    expect(problems).toContain('minor version 10 is not supported for a delta payload');
    expect(problems.some((p) => /REPLACE_ZSTD\): operation type 14 not allowed/.test(p))).toBe(true);
  });

  it.each([
    ['zstd with the incremental default (9)', { compression: 'zstd' as const }, true, /--compression zstd writes REPLACE_ZSTD, which needs minor version 10; minor version 9 does not allow it/],
    ['zstd with minor version 4', { compression: 'zstd' as const, minorVersion: 4 }, true, /needs minor version 10; minor version 4 does not allow it/],
    ['zstd in a full payload', { compression: 'zstd' as const }, false, /REPLACE_ZSTD, which needs minor version 10; minor version 0 \(a full payload\) does not allow it \(it allows REPLACE, REPLACE_BZ, REPLACE_XZ\)/],
    ['a delta minor version without old images', { minorVersion: 9 }, false, /minor version 9 is for incremental payloads, and no partition has an old image/],
    ['minor version 0 with old images', { minorVersion: 0 }, true, /minor version 0 is a full payload, but old images were given/],
    ['minor version 1', { minorVersion: 1 }, true, /minor version 1 cannot be generated: use 0 .* or 2\.\.10/],
    ['minor version 11', { minorVersion: 11 }, true, /minor version 11 cannot be generated/],
  ])('%s is refused before anything is written', async (_what, options, incremental, message) => {
    const output = path.join(dir, 'refused.bin');
    const err = await failure(generate('refused', options, incremental));
    expect(isVabError(err, 'EINVAL_INPUT')).toBe(true);
    expect(err.message).toMatch(message);
    await expect(fs.stat(output)).rejects.toThrow(/ENOENT/);
    expect((await fs.readdir(dir)).filter((n) => n.includes('refused'))).toEqual([]);
  });
});

describe('inspect flags ops the minor version does not allow', () => {
  let dir: string;
  const image = Buffer.concat([randomBytes(31, 8192), Buffer.alloc(8192)]);
  beforeAll(async () => {
    dir = await tempDir('vab-minor-inspect-');
  });
  afterAll(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  /** A full payload whose zero blocks are a ZERO op: what vab generated before minor versions were enforced. */
  async function fullWithZero(): Promise<string> {
    const file = path.join(dir, 'full-zero.bin');
    const payload = buildPayload({
      minor_version: 0,
      partitions: [{ partition_name: 'system', image, ops: [{ type: OpType.REPLACE, data: image.subarray(0, 8192), dst_extents: [extent(0, 2)] }, { type: OpType.ZERO, dst_extents: [extent(2, 2)] }] }],
    });
    await fs.writeFile(file, payload);
    return file;
  }

  it('reports them by partition, op and type; --strict turns them into an error; extract still reads them', async () => {
    const file = await fullWithZero();
    const summary = await inspectPayload(file);
    expect(summary.minor_version).toBe(0);
    expect(summary.ops_not_allowed).toEqual([{ partition: 'system', index: 1, type: 'ZERO' }]);
    const text = formatSummary(summary);
    expect(text).toContain('minor version 0 (full payload) allows REPLACE, REPLACE_BZ, REPLACE_XZ');
    expect(text).toContain('NOT ALLOWED by minor version 0: partition system op 1 (ZERO) (1 in all)');
    expect(text).toMatch(/2 operations: REPLACE 1, ZERO 1 \(not allowed\)/);
    let caught: unknown;
    try {
      requireAllowedOps(summary);
    } catch (err) {
      caught = err;
    }
    expect(isVabError(caught, 'ECORRUPT')).toBe(true);
    expect((caught as Error).message).toMatch(/full-zero\.bin: ops not allowed by minor version 0: partition system op 1 \(ZERO\)/);
    await extractPayload(file, { outDir: path.join(dir, 'out') });
    expect((await fs.readFile(path.join(dir, 'out', 'system.img'))).equals(image)).toBe(true);
  });

  it('the checker rules catch a ZERO in a full payload, a REPLACE that does not fill its blocks, and a size that is not whole blocks', async () => {
    expect(androidCheckerProblems(await fs.readFile(await fullWithZero()))).toEqual(['system op 1 (ZERO): operation type 6 not allowed in minor version 0']);
    const short = buildPayload({
      partitions: [{ partition_name: 'system', new_partition_info: { size: 3 * 4096, hash: Buffer.alloc(32) }, ops: [{ type: OpType.REPLACE, data: Buffer.alloc(2 * 4096, 1), dst_extents: [extent(0, 3)] }] }],
    });
    expect(androidCheckerProblems(short)).toEqual(['system op 0 (REPLACE): data_length 8192 does not fill 3 dst blocks']);
    expect(androidCheckerProblems(buildPayload({ partitions: [{ partition_name: 'system', image: Buffer.alloc(5000, 1) }] }))).toEqual(['system op 0 (REPLACE): dst extent [0, +2) exceeds the partition size 5000']);
  });

  it('an old minor version with a new op: BROTLI_BSDIFF and REPLACE_ZSTD in minor version 3', async () => {
    const file = path.join(dir, 'old-minor.bin');
    await fs.writeFile(
      file,
      buildPayload({
        minor_version: 3,
        partitions: [
          {
            partition_name: 'vendor',
            old_partition_info: { size: 4096, hash: Buffer.alloc(32) },
            new_partition_info: { size: 8192, hash: Buffer.alloc(32) },
            ops: [
              { type: OpType.BROTLI_BSDIFF, data: Buffer.from('BSDF2'), src_extents: [extent(0, 1)], dst_extents: [extent(0, 1)] },
              { type: OpType.REPLACE_ZSTD, data: Buffer.from('zstd'), dst_extents: [extent(1, 1)] },
            ],
          },
        ],
      }),
    );
    const summary = await inspectPayload(file);
    expect(summary.ops_not_allowed.map((op) => op.type)).toEqual(['BROTLI_BSDIFF', 'REPLACE_ZSTD']);
    expect(() => requireAllowedOps(summary)).toThrow(/ops not allowed by minor version 3: partition vendor op 0 \(BROTLI_BSDIFF\), partition vendor op 1 \(REPLACE_ZSTD\) \(2 in all\)/);
  });

  it('a payload vab generates passes --strict at its default minor version', async () => {
    await writeImages(path.join(dir, 'images'), { system: image });
    const file = path.join(dir, 'generated.bin');
    await generatePayload({ targetDir: path.join(dir, 'images'), output: file });
    const summary = await inspectPayload(file);
    expect(summary.ops_not_allowed).toEqual([]);
    expect(() => requireAllowedOps(summary)).not.toThrow();
  });
});
