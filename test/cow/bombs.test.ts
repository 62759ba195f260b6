import { promises as fs } from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { dataOffset, opOffset, resumeOffset } from '../../src/cow/format';
import { CowReader } from '../../src/cow/reader';
import { SnapshotReader } from '../../src/cow/snapshot-reader';
import { CowWriter } from '../../src/cow/writer';
import { MiB, REPO, runMeasured, vabMeasured, zeroBomb } from '../support/peak-memory';
import { MemoryFile, textLike } from './helpers';
import { tempDir } from '../payload/support/images';

const BS = 4096;
const OPS = 64;
const REFUSAL_MS = 10_000;
const MEMORY_SLACK = 64 * MiB;

/**
 * An LZ4 raw block that expands ~1 MiB (256 blocks) from 4 KB: one literal zero, then a match at
 * distance 1 whose length extension is 4000 bytes of 255, then the closing literal.
 */
function lz4Bomb(): Buffer {
  return Buffer.concat([Buffer.from([0x1f, 0x00, 0x01, 0x00]), Buffer.alloc(4000, 255), Buffer.from([0x00, 0x10, 0x00])]);
}

/**
 * A v3 COW of OPS replace ops (blocks 0..OPS-1) whose data each expand to far more than the
 * block they produce: made by the writer with `compression`, then every op's data swapped for
 * `bomb` (data_length and data offset rewritten, the data area packed in op order as v3 needs).
 */
async function bombCow(compression: string, bomb: Buffer): Promise<Buffer> {
  expect(bomb.length).toBeLessThan(BS);
  const file = new MemoryFile('made.cow');
  const writer = await CowWriter.createOn(file, { compression, compressionFactor: BS, maxBlocks: OPS, opCountMax: OPS, scratchSpace: false });
  await writer.addRawBlocks(0, textLike(OPS * BS, 5));
  await writer.finalize();
  const good = file.contents();
  const header = (await CowReader.fromFile(new MemoryFile('made.cow', good))).header;
  const start = dataOffset(header);
  const out = Buffer.concat([good.subarray(0, start), ...Array.from({ length: OPS }, () => bomb)]);
  for (let i = 0; i < OPS; i++) {
    const record = opOffset(i, header);
    out.writeUInt32LE(bomb.length, record);
    out.writeUInt32LE(start + i * bomb.length, record + 8);
  }
  return out;
}

describe('COW replace data is decoded to at most one unit', () => {
  let dir: string;
  const cows: Record<string, Buffer> = {};

  beforeAll(async () => {
    dir = await tempDir('vab-cow-bombs-');
    // Each bomb is under one block and expands to at least 64 blocks.
    cows.gz = await bombCow('gz', zlib.deflateSync(Buffer.alloc(MiB), { level: 9 }));
    cows.brotli = await bombCow('brotli', zlib.brotliCompressSync(Buffer.alloc(16 * MiB), { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 1 } }));
    cows.lz4 = await bombCow('lz4', lz4Bomb());
    cows.zstd = await bombCow('zstd', await zeroBomb(path.join(dir, 'piped.zst'), 16 * MiB, 'zstd -c -q'));
    cows.zstdDeclared = await bombCow('zstd', await zeroBomb(path.join(dir, 'declared.zst'), 16 * MiB, `zstd -c -q --stream-size=${16 * MiB}`));
    await fs.writeFile(path.join(dir, 'base.img'), Buffer.alloc(OPS * BS, 1));
    for (const [name, bytes] of Object.entries(cows)) await fs.writeFile(path.join(dir, `${name}.cow`), bytes);
  });
  afterAll(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it.each(['gz', 'brotli', 'lz4', 'zstd', 'zstdDeclared'])('%s: reading a bomb op is ECORRUPT naming file, op and data offset', async (name) => {
    const bytes = cows[name];
    const cow = await CowReader.fromFile(new MemoryFile('bomb.cow', bytes));
    const snapshot = await SnapshotReader.over(cow, new MemoryFile('base', Buffer.alloc(OPS * BS)), OPS);
    const started = performance.now();
    const error = await snapshot.readBlocks(3, 1, Buffer.alloc(BS)).catch((err: unknown) => err);
    const offset = dataOffset(cow.header) + 3 * (bytes.length - dataOffset(cow.header)) / OPS;
    expect(error).toMatchObject({ code: 'ECORRUPT', file: 'bomb.cow', op: 3, offset });
    expect((error as Error).message).toMatch(/data does not decompress to 4096 bytes/);
    expect(performance.now() - started).toBeLessThan(REFUSAL_MS);
  });

  it('refuses at parse time an op whose data runs past the end of the file', async () => {
    const bad = Buffer.from(cows.gz);
    const header = (await CowReader.fromFile(new MemoryFile('x.cow', bad))).header;
    bad.writeUInt32LE(BS - 1, opOffset(OPS - 1, header));
    await expect(CowReader.fromFile(new MemoryFile('bad.cow', bad))).rejects.toMatchObject({ code: 'ETRUNCATED', op: OPS - 1 });
  });

  it('refuses a header whose op count the file cannot hold before allocating an op table', async () => {
    const bad = Buffer.from(cows.gz);
    // op_count and op_count_max (u64 at 54 and 62) at 2^40: an op table for them would take 25 TiB.
    bad.writeBigUInt64LE(2n ** 40n, 54);
    bad.writeBigUInt64LE(2n ** 40n, 62);
    await expect(CowReader.fromFile(new MemoryFile('bad.cow', bad))).rejects.toMatchObject({ code: 'ETRUNCATED', message: expect.stringMatching(/op area ends at \d+, past the end of the file/) });
  });

  it('refuses a resume point naming more ops than the file holds before allocating an op table', async () => {
    const file = new MemoryFile('labelled.cow');
    const writer = await CowWriter.createOn(file, { compression: 'gz', compressionFactor: BS, maxBlocks: OPS, opCountMax: OPS, scratchSpace: false });
    await writer.addRawBlocks(0, textLike(4 * BS, 5));
    await writer.addLabel(7n);
    await writer.finalize();
    const bad = file.contents();
    const header = (await CowReader.fromFile(new MemoryFile('labelled.cow', bad))).header;
    // op_count_max is not held to the file size, so a resume point may name up to 2^40 ops.
    bad.writeBigUInt64LE(2n ** 40n, 62);
    bad.writeBigUInt64LE(2n ** 40n, resumeOffset(header) + 8);
    await expect(CowReader.fromFile(new MemoryFile('bad.cow', bad), { label: 7n })).rejects.toMatchObject({
      code: 'ETRUNCATED',
      message: expect.stringMatching(/resume point 7 names 1099511627776 ops, whose records end at \d+, past the end of the file/),
    });
  });

  describe('peak memory, measured in a child process', () => {
    let applyBaseline: number;
    let readerBaseline: number;
    const readerScript = `
      const { SnapshotReader } = require(${JSON.stringify(path.join(REPO, 'dist/src/cow'))});
      (async () => {
        const snapshot = await SnapshotReader.open(process.argv[1], process.argv[2]);
        const dst = Buffer.alloc(${OPS * BS});
        try { await snapshot.readBlocks(0, ${OPS}, dst); console.log('read'); }
        catch (err) { console.log(err.code + ' ' + err.message); process.exitCode = 1; }
      })();`;

    beforeAll(async () => {
      const file = new MemoryFile('good.cow');
      const writer = await CowWriter.createOn(file, { compression: 'gz', compressionFactor: BS, maxBlocks: OPS, opCountMax: OPS, scratchSpace: false });
      await writer.addRawBlocks(0, textLike(OPS * BS, 5));
      await writer.finalize();
      await fs.writeFile(path.join(dir, 'good.cow'), file.contents());
      const apply = await vabMeasured('cow', 'apply', path.join(dir, 'good.cow'), '--base', path.join(dir, 'base.img'), '-o', path.join(dir, 'good.img'));
      expect(apply.stderr).toBe('');
      expect(apply.code).toBe(0);
      applyBaseline = apply.maxRssBytes;
      const read = await runMeasured(['-e', readerScript, path.join(dir, 'good.cow'), path.join(dir, 'base.img')]);
      expect(read.stdout.trim()).toBe('read');
      readerBaseline = read.maxRssBytes;
    });

    it.each(['gz', 'brotli', 'lz4', 'zstd'])('%s: cow apply refuses the bomb within 64 MiB of its baseline', async (name) => {
      const result = await vabMeasured('cow', 'apply', path.join(dir, `${name}.cow`), '--base', path.join(dir, 'base.img'), '-o', path.join(dir, `${name}.img`));
      expect(result.code).not.toBe(0);
      expect(result.stderr).toMatch(/op 0: data does not decompress to 4096 bytes.*\[ECORRUPT\]/);
      expect(result.maxRssBytes - applyBaseline).toBeLessThan(MEMORY_SLACK);
      expect(result.elapsedMs).toBeLessThan(REFUSAL_MS);
      await expect(fs.access(path.join(dir, `${name}.img`))).rejects.toThrow();
    });

    it.each(['gz', 'brotli', 'lz4', 'zstd'])('%s: the snapshot reader refuses the bomb within 64 MiB of its baseline', async (name) => {
      const result = await runMeasured(['-e', readerScript, path.join(dir, `${name}.cow`), path.join(dir, 'base.img')]);
      expect(result.code).toBe(1);
      expect(result.stdout).toMatch(/^ECORRUPT .*op 0: data does not decompress to 4096 bytes/);
      expect(result.maxRssBytes - readerBaseline).toBeLessThan(MEMORY_SLACK);
      expect(result.elapsedMs).toBeLessThan(REFUSAL_MS);
    });
  });
});
