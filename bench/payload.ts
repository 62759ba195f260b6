/**
 * Payload benchmark: `npm run bench:payload -- [--size-mib N] [--json]` (default 512).
 * Ratios (time / baseline time; lower is better): extract_full_zstd_vs_bare, extract_incremental_vs_full.
 *
 * Measures, in one run and on the same data:
 * - extracting a full payload (zstd and xz) against the bare decompressor run over the same
 *   blobs (read by offset, decompressed, nothing else): the cost of hashing, checking and
 *   writing around decompression. Target: at most 1.2x. Also against the single-threaded floor
 *   of the work extract cannot skip (decode, both hashes, write, fsync).
 * - applying an incremental payload against extracting the full one.
 * - generating a payload against the bare compressor over the same chunks.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { compress, decompress } from '../src/payload/codecs';
import { extractPayload } from '../src/payload/extract';
import { writeFully } from '../src/payload/image-io';
import { generatePayload, PayloadCompression } from '../src/payload/generate';
import { InstallOperation, OpType } from '../src/payload/manifest';
import { totalBlocks } from '../src/payload/partition-io';
import { PayloadFile } from '../src/payload/payload-file';
import { integer } from '../src/cli/options';
import { BenchReport, parseBenchArgs } from './support/report';

const BLOCK = 4096;
const CHUNK = 512 * BLOCK;
const opBytes = (op: InstallOperation) => totalBlocks(op.dst_extents) * BLOCK;
const CODEC_OF: Partial<Record<OpType, 'zstd' | 'xz' | 'bz2'>> = { [OpType.REPLACE_ZSTD]: 'zstd', [OpType.REPLACE_XZ]: 'xz', [OpType.REPLACE_BZ]: 'bz2' };

function parseArgs(): { sizeMib: number; json: boolean } {
  return parseBenchArgs<{ sizeMib: number }>('payload', 'payload extract and generate against the bare codec', (c) =>
    c.option('--size-mib <n>', 'size of the partition image', integer(4), 512),
  );
}

/**
 * A filesystem-like image: per 4 KiB block, by a fixed pseudo-random choice, machine code-like
 * bytes (skewed, partly compressible), text, or zeros. Deterministic, so runs compare.
 */
function makeImage(sizeMiB: number): Buffer {
  const image = Buffer.alloc(sizeMiB * 1024 * 1024);
  const words = ['system', 'vendor', 'lib', 'arm64', 'android', 'framework', 'ro.build', '=', '\n', 'so', 'apk', '/'];
  let x = 0x9e3779b9;
  const next = () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
  for (let block = 0; block < image.length / BLOCK; block++) {
    const kind = next() % 10;
    const at = block * BLOCK;
    if (kind < 5) {
      for (let i = 0; i < BLOCK; i += 4) image.writeUInt32LE(next() & 0x3f1f0f7f, at + i);
    } else if (kind < 8) {
      let text = '';
      while (text.length < BLOCK) text += words[next() % words.length] + (next() % 3 === 0 ? ' ' : '');
      image.write(text.slice(0, BLOCK), at, 'latin1');
    } // else: zeros
  }
  return image;
}

/** The next version of the image: 3% of blocks edited, a region moved, some new data. */
function evolveImage(old: Buffer): Buffer {
  const neu = Buffer.from(old);
  const blocks = old.length / BLOCK;
  for (let b = 7; b < blocks; b += 33) neu[b * BLOCK + ((b * 131) % BLOCK)] ^= 0x5a;
  old.copy(neu, Math.floor(blocks / 2) * BLOCK, Math.floor(blocks / 4) * BLOCK, Math.floor(blocks / 4 + blocks / 16) * BLOCK);
  for (let i = 0; i < Math.floor(old.length / 50); i++) neu[old.length - 1 - i] = (i * 2654435761) >>> 24;
  return neu;
}

async function time<T>(work: () => Promise<T>): Promise<{ seconds: number; value: T }> {
  const start = process.hrtime.bigint();
  const value = await work();
  return { seconds: Number(process.hrtime.bigint() - start) / 1e9, value };
}

/** The baseline: every blob read from the payload by offset and decompressed, nothing more. */
async function bareDecompress(file: string): Promise<number> {
  const payload = await PayloadFile.open(file);
  try {
    let bytes = 0;
    for (const partition of payload.manifest.partitions) {
      for (const op of partition.operations) {
        const blob = await payload.readBlob(op);
        const codec = CODEC_OF[op.type];
        if (blob && codec) bytes += (await decompress(codec, blob, opBytes(op))).length;
      }
    }
    return bytes;
  } finally {
    await payload.close();
  }
}

/**
 * The floor of what extract must do besides decompressing: the same decode, then hashing the
 * output and writing it to a file that is fsynced, one op after another on one thread.
 */
async function decodeHashWrite(file: string, output: string): Promise<void> {
  const payload = await PayloadFile.open(file);
  const out = await fs.open(output, 'w');
  try {
    const hash = createHash('sha256');
    for (const partition of payload.manifest.partitions) {
      for (const op of partition.operations) {
        const blob = await payload.readBlob(op);
        const codec = CODEC_OF[op.type];
        const data = blob && codec ? await decompress(codec, blob, opBytes(op)) : blob;
        if (!data) continue;
        createHash('sha256').update(blob!).digest(); // the op's data hash check
        hash.update(data);
        await writeFully(out, data, op.dst_extents[0].start_block * BLOCK);
      }
    }
    hash.digest();
    await out.sync();
  } finally {
    await out.close();
    await payload.close();
  }
}

async function bareCompress(image: Buffer, codec: PayloadCompression): Promise<number> {
  let bytes = 0;
  for (let at = 0; at < image.length; at += CHUNK) bytes += (await compress(codec, image.subarray(at, at + CHUNK))).length;
  return bytes;
}

const fmt = (s: number) => `${s.toFixed(2)} s`;
const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}x`;

async function main(): Promise<void> {
  const args = parseArgs();
  const sizeMiB = args.sizeMib;
  const report = new BenchReport('payload', args.json);
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vab-bench-payload-'));
  try {
    const image = makeImage(sizeMiB);
    await fs.mkdir(path.join(dir, 'old'));
    await fs.writeFile(path.join(dir, 'old', 'system.img'), image);
    report.line(`payload benchmark: ${sizeMiB} MiB image, ${os.cpus().length} cores, node ${process.version}`);
    const fullExtract: Record<string, number> = {};
    for (const codec of ['zstd', 'xz'] as const) {
      const file = path.join(dir, `full-${codec}.bin`);
      // A full payload is minor version 0, which does not allow REPLACE_ZSTD: the zstd one is
      // OEM-style, which is what extract meets in the wild.
      const gen = await time(() => generatePayload({ targetDir: path.join(dir, 'old'), output: file, compression: codec, codecBeyondMinorVersion: codec === 'zstd' }));
      const bareGen = await time(() => bareCompress(image, codec));
      const extract = await time(() => extractPayload(file, { outDir: path.join(dir, `out-${codec}`) }));
      const bare = await time(() => bareDecompress(file));
      const floor = await time(() => decodeHashWrite(file, path.join(dir, 'floor.img')));
      await fs.rm(path.join(dir, 'floor.img'));
      fullExtract[codec] = extract.seconds;
      report.figure(`extract_full_${codec}_s`, extract.seconds);
      report.figure(`bare_decompress_${codec}_s`, bare.seconds);
      report.figure(`extract_floor_${codec}_s`, floor.seconds);
      report.figure(`generate_full_${codec}_s`, gen.seconds);
      report.figure(`bare_compress_${codec}_s`, bareGen.seconds);
      report.figure(`payload_full_${codec}_bytes`, gen.value.size);
      if (codec === 'zstd') report.ratio('extract_full_zstd_vs_bare', extract.seconds / bare.seconds);
      report.line(`full ${codec}${codec === 'zstd' ? ' (OEM-style: REPLACE_ZSTD at minor version 0)' : ''}: payload ${(gen.value.size / 1048576).toFixed(1)} MiB`);
      report.line(`  extract ${fmt(extract.seconds)} vs bare ${codec} decompress of the same blobs ${fmt(bare.seconds)}: ${ratio(extract.seconds, bare.seconds)} (target <= 1.20x)`);
      report.line(`  extract vs decompress + hash blob and output + write + fsync on one thread ${fmt(floor.seconds)}: ${ratio(extract.seconds, floor.seconds)}`);
      report.line(`  generate ${fmt(gen.seconds)} vs bare ${codec} compress of the same chunks ${fmt(bareGen.seconds)}: ${ratio(gen.seconds, bareGen.seconds)}`);
      await fs.rm(path.join(dir, `out-${codec}`), { recursive: true });
    }
    await fs.mkdir(path.join(dir, 'new'));
    await fs.writeFile(path.join(dir, 'new', 'system.img'), evolveImage(image));
    const delta = path.join(dir, 'delta.bin');
    const gen = await time(() => generatePayload({ targetDir: path.join(dir, 'new'), sourceDir: path.join(dir, 'old'), output: delta, compression: 'zstd', minorVersion: 10 }));
    const apply = await time(() => extractPayload(delta, { outDir: path.join(dir, 'out-delta'), sourceDir: path.join(dir, 'old') }));
    report.line(`incremental (zstd, minor version 10): payload ${(gen.value.size / 1048576).toFixed(1)} MiB, generated in ${fmt(gen.seconds)}`);
    report.figure('extract_incremental_s', apply.seconds);
    report.figure('generate_incremental_s', gen.seconds);
    report.figure('payload_incremental_bytes', gen.value.size);
    report.ratio('extract_incremental_vs_full', apply.seconds / fullExtract.zstd);
    report.line(`  apply ${fmt(apply.seconds)} vs extracting the full zstd payload ${fmt(fullExtract.zstd)}: ${ratio(apply.seconds, fullExtract.zstd)}`);
    report.finish();
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
