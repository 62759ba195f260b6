/**
 * Payload benchmark: `npm run bench:payload -- [--image-mib 420] [--files-mib 300] [--runs 3] [--xz] [--json]`.
 * Ratios (time / baseline time; lower is better):
 *   extract_full_zstd_vs_bare      extract of a full REPLACE_ZSTD payload / the bare decompressor on its blobs
 *   extract_incremental_vs_full    extract of an incremental payload / extract of the full one
 *   extract_full_zstd_vs_dumper    extract / payload_dumper's algorithm on the same payload (full)
 *   extract_incremental_vs_dumper  the same, incremental
 *
 * The images are ext4 file systems of real files from this host (libraries, executables, Python
 * modules), OLD and an updated NEW (bench/support/host-files-images.ts): the kind of image the
 * issue's payload_dumper figures were taken on. payload_dumper itself is not on this machine;
 * bench/support/dumper.ts does what it does (decode or patch each op and write it, one thread, no
 * hash, no fsync) with vab's codecs, so the comparison runs here, in the same run.
 * Every timed figure is the median of --runs runs.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { compress, decompress } from '../src/payload/codecs';
import { extractPayload } from '../src/payload/extract';
import { REPLACE_CODEC } from '../src/payload/operations';
import { writeFully } from '../src/payload/image-io';
import { generatePayload, PayloadCompression } from '../src/payload/generate';
import { InstallOperation } from '../src/payload/manifest';
import { totalBlocks } from '../src/payload/partition-io';
import { PayloadFile } from '../src/payload/payload-file';
import { integer } from '../src/cli/options';
import { runChecked } from '../src/util/exec';
import { dumpPayload } from './support/dumper';
import { makeHostFilesImages } from './support/host-files-images';
import { BenchReport, parseBenchArgs } from './support/report';

const BLOCK = 4096;
const CHUNK = 512 * BLOCK;
const opBytes = (op: InstallOperation) => totalBlocks(op.dst_extents) * BLOCK;

interface Args {
  imageMib: number;
  filesMib: number;
  runs: number;
  xz?: boolean;
}

function parseArgs(): Args & { json: boolean } {
  return parseBenchArgs<Args>('payload', 'payload extract against the bare codec and against payload_dumper\'s algorithm', (c) =>
    c
      .option('--image-mib <n>', 'size of the ext4 images', integer(16), 420)
      .option('--files-mib <n>', 'host files to put in them', integer(1), 300)
      .option('--runs <n>', 'runs per timed figure (the median is reported)', integer(1), 3)
      .option('--xz', 'also a full REPLACE_XZ payload (minutes: xz compresses slowly)'),
  );
}

async function timeOnce<T>(work: () => Promise<T>): Promise<{ seconds: number; value: T }> {
  const start = process.hrtime.bigint();
  const value = await work();
  return { seconds: Number(process.hrtime.bigint() - start) / 1e9, value };
}

let runs = 3;

/**
 * Times each contender `runs` times, taking turns (A B C, A B C, ...), and gives each median.
 * Before every run the whole system's dirty data is flushed (`sync`), so no run pays for the
 * writeback of the one before it; `after` cleans up after each run.
 */
async function compare<K extends string>(contenders: Record<K, () => Promise<unknown>>, after: () => Promise<void> = async () => undefined): Promise<Record<K, number>> {
  const times = {} as Record<K, number[]>;
  for (let i = 0; i < runs; i++) {
    for (const name of Object.keys(contenders) as K[]) {
      await runChecked('sync', []);
      (times[name] ??= []).push((await timeOnce(contenders[name])).seconds);
      await after();
    }
  }
  const medians = {} as Record<K, number>;
  for (const name of Object.keys(times) as K[]) medians[name] = times[name].sort((x, y) => x - y)[times[name].length >> 1];
  return medians;
}

/** The baseline: every blob read from the payload by offset and decompressed, nothing more. */
async function bareDecompress(file: string): Promise<number> {
  const payload = await PayloadFile.open(file);
  try {
    let bytes = 0;
    for (const partition of payload.manifest.partitions) {
      for (const op of partition.operations) {
        const blob = await payload.readBlob(op);
        const codec = REPLACE_CODEC[op.type];
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
        const codec = REPLACE_CODEC[op.type];
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

/** The bare compressor over the image in the chunks a full payload uses. */
async function bareCompress(imagePath: string, codec: PayloadCompression): Promise<number> {
  const image = await fs.readFile(imagePath);
  let bytes = 0;
  for (let at = 0; at < image.length; at += CHUNK) bytes += (await compress(codec, image.subarray(at, at + CHUNK))).length;
  return bytes;
}

const fmt = (s: number) => `${s.toFixed(2)} s`;
const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}x`;

async function main(): Promise<void> {
  const args = parseArgs();
  runs = args.runs;
  const report = new BenchReport('payload', args.json);
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vab-bench-payload-'));
  const out = path.join(dir, 'out');
  const clean = () => fs.rm(out, { recursive: true, force: true });
  try {
    const files = await makeHostFilesImages(dir, args.imageMib, args.filesMib);
    const oldDir = path.join(dir, 'old');
    const newDir = path.join(dir, 'new');
    report.line(`payload benchmark: ${args.imageMib} MiB ext4 images holding ${files.files} host files (${(files.bytes / 1048576).toFixed(0)} MiB), ${os.cpus().length} cores, node ${process.version}, median of ${runs}`);
    report.line('reference (the issue, same kind of machine, 420 MiB ext4): payload_dumper full 1.74 s, incremental 0.64 s; vab then 2.17 s and 3.09 s');
    const fullExtract: Record<string, number> = {};
    for (const codec of args.xz ? (['zstd', 'xz'] as const) : (['zstd'] as const)) {
      const file = path.join(dir, `full-${codec}.bin`);
      // A full payload is minor version 0, which does not allow REPLACE_ZSTD: the zstd one is
      // OEM-style, which is what extract meets in the wild.
      const gen = await timeOnce(() => generatePayload({ targetDir: oldDir, output: file, compression: codec, codecBeyondMinorVersion: codec === 'zstd' }));
      const bareGen = await timeOnce(() => bareCompress(path.join(oldDir, 'system.img'), codec));
      const t = await compare(
        {
          extract: () => extractPayload(file, { outDir: out }),
          durable: () => extractPayload(file, { outDir: out, fsync: true }),
          dumper: () => dumpPayload(file, out),
          bare: () => bareDecompress(file),
          floor: async () => {
            await fs.mkdir(out, { recursive: true });
            await decodeHashWrite(file, path.join(out, 'floor.img'));
          },
        },
        clean,
      );
      const [extract, durable, dumper, bare, floor] = [t.extract, t.durable, t.dumper, t.bare, t.floor].map((seconds) => ({ seconds }));
      fullExtract[codec] = extract.seconds;
      report.figure(`extract_full_${codec}_s`, extract.seconds);
      report.figure(`extract_full_${codec}_fsync_s`, durable.seconds);
      report.figure(`dumper_full_${codec}_s`, dumper.seconds);
      report.figure(`bare_decompress_${codec}_s`, bare.seconds);
      report.figure(`extract_floor_${codec}_s`, floor.seconds);
      report.figure(`generate_full_${codec}_s`, gen.seconds);
      report.figure(`bare_compress_${codec}_s`, bareGen.seconds);
      report.figure(`payload_full_${codec}_bytes`, gen.value.size);
      if (codec === 'zstd') {
        report.ratio('extract_full_zstd_vs_bare', extract.seconds / bare.seconds);
        report.ratio('extract_full_zstd_vs_dumper', extract.seconds / dumper.seconds);
      }
      report.line(`full ${codec}${codec === 'zstd' ? ' (OEM-style: REPLACE_ZSTD at minor version 0)' : ''}: payload ${(gen.value.size / 1048576).toFixed(1)} MiB`);
      report.line(`  extract ${fmt(extract.seconds)} (with --fsync ${fmt(durable.seconds)}) vs payload_dumper's algorithm ${fmt(dumper.seconds)}: ${ratio(extract.seconds, dumper.seconds)} (target <= 1.00x)`);
      report.line(`  extract vs bare ${codec} decompress of the same blobs ${fmt(bare.seconds)}: ${ratio(extract.seconds, bare.seconds)}`);
      report.line(`  extract vs decompress + hash blob and output + write + fsync on one thread ${fmt(floor.seconds)}: ${ratio(extract.seconds, floor.seconds)}`);
      report.line(`  generate ${fmt(gen.seconds)} vs bare ${codec} compress of the same chunks ${fmt(bareGen.seconds)}: ${ratio(gen.seconds, bareGen.seconds)}`);
    }
    const delta = path.join(dir, 'delta.bin');
    const gen = await timeOnce(() => generatePayload({ targetDir: newDir, sourceDir: oldDir, output: delta, compression: 'zstd', minorVersion: 10 }));
    const payload = await PayloadFile.open(delta);
    const opCount = payload.manifest.partitions.reduce((n, p) => n + p.operations.length, 0);
    await payload.close();
    const t = await compare(
      {
        apply: () => extractPayload(delta, { outDir: out, sourceDir: oldDir }),
        durable: () => extractPayload(delta, { outDir: out, sourceDir: oldDir, fsync: true }),
        dumper: () => dumpPayload(delta, out, oldDir),
      },
      clean,
    );
    const [apply, durable, dumper] = [t.apply, t.durable, t.dumper].map((seconds) => ({ seconds }));
    report.line(`incremental (zstd, minor version 10): payload ${(gen.value.size / 1024).toFixed(0)} KiB, ${opCount} ops, generated in ${fmt(gen.seconds)}`);
    report.figure('extract_incremental_s', apply.seconds);
    report.figure('extract_incremental_fsync_s', durable.seconds);
    report.figure('dumper_incremental_s', dumper.seconds);
    report.figure('generate_incremental_s', gen.seconds);
    report.figure('payload_incremental_bytes', gen.value.size);
    report.figure('incremental_ops', opCount);
    report.ratio('extract_incremental_vs_full', apply.seconds / fullExtract.zstd);
    report.ratio('extract_incremental_vs_dumper', apply.seconds / dumper.seconds);
    report.line(`  extract ${fmt(apply.seconds)} (with --fsync ${fmt(durable.seconds)}) vs payload_dumper's algorithm ${fmt(dumper.seconds)}: ${ratio(apply.seconds, dumper.seconds)} (target <= 1.00x)`);
    report.line(`  extract vs extracting the full zstd payload ${fmt(fullExtract.zstd)}: ${ratio(apply.seconds, fullExtract.zstd)} (payload_dumper in the issue: 0.37x)`);
    report.finish();
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
