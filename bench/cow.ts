/**
 * COW benchmark: create/apply against the bare codec, the snapshot reader against reading NEW.img,
 * and the index for 1 million ops. Every ratio compares two figures measured in this run.
 *
 *   npm run bench:cow -- [--size-mib 256] [--codecs none,gz,brotli:5,lz4,zstd] [--factor 4096] [--index-ops 1000000] [--runs 3] [--json]
 *
 * Ratios (time / baseline time; lower is better): cow_create_zstd_vs_bare, cow_apply_zstd_vs_bare
 * (when zstd is among --codecs) and reader_seq_vs_floor.
 *
 * Every timed figure is the median of --runs runs (the machine is shared; one run is noise).
 *
 * brotli runs at quality 5 by default: Android's default (11) takes minutes on these images.
 *
 * What each figure includes:
 *   create            createCow end to end: read both images, plan, compress, write, fsync, rename
 *                     (Replace units compressed on worker threads: the output says how many)
 *   bare compress     compressing the same Replace units from memory with the bare codec, on one
 *                     thread (the baseline of the ratio) and on as many threads as create used
 *                     (through the same worker pool, started before the clock)
 *   read floor        reading OLD and NEW once each, 1 MiB at a time, into a reused buffer: what any
 *                     create must do besides compressing (hashing and comparing come on top)
 *   apply             applyCow end to end as `vab cow apply` runs by default: open and index the COW,
 *                     read the base and the payloads, decompress, write the new image, rename (no
 *                     fsync); the ratio's figure
 *   apply --fsync     the same, durable (fsync before rename): a figure, not a ratio
 *   bare decompress   decompressing those units' payloads from memory into one buffer (no IO)
 *   IO floor          fs.copyFile of OLD.img + fsync: the least any apply writing an image-sized
 *                     file durably pays on this filesystem, shown so the apply ratio can be read
 *   snapshot floor    reading NEW.img directly plus the bare decompression of the zstd COW's
 *                     Replace payloads: what the snapshot reader cannot avoid doing
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { applyCow, CowReader, createCodec, createCow, CowWriter, openFile, parseCompression, SnapshotReader } from '../src/cow';
import { InvalidArgumentError, Option } from 'commander';
import { integer } from '../src/cli/options';
import { CompressPool } from '../src/cow/compress-pool';
import { makeImages, rng, syncFile } from './support/cow-images';
import { BenchReport, parseBenchArgs } from './support/report';

const BS = 4096;

interface Args {
  sizeMib: number;
  codecs: string[];
  factor: number;
  indexOps: number;
  runs: number;
}

function parseArgs(): Args & { json: boolean } {
  return parseBenchArgs<Args>('cow', 'COW create/apply against the bare codec, the snapshot reader against its floor, the op index', (c) =>
    c
      .option('--size-mib <n>', 'size of OLD and NEW', integer(1), 256)
      .addOption(new Option('--codecs <list>', 'comma-separated, a level after ":"').argParser(codecList).default(['none', 'gz', 'brotli,5', 'lz4', 'zstd'], 'none,gz,brotli:5,lz4,zstd'))
      .option('--factor <bytes>', 'COW compression factor', integer(4096), 4096)
      .option('--index-ops <n>', 'ops in the index benchmark COW', integer(1), 1_000_000)
      .option('--runs <n>', 'runs per timed figure (the median is reported)', integer(1), 3),
  );
}

function codecList(value: string): string[] {
  return value.split(',').map((name) => {
    const spec = name.replace(':', ',');
    try {
      parseCompression(spec);
    } catch (err) {
      throw new InvalidArgumentError(`"${name}": ${err instanceof Error ? err.message : String(err)}`);
    }
    return spec;
  });
}

let runs = 3;
let report: BenchReport;

/** The median of `runs` runs of `work` (and the last run's value); `after` cleans up between runs. */
async function time<T>(work: () => Promise<T> | T, after?: () => Promise<void>): Promise<{ seconds: number; value: T }> {
  const times: number[] = [];
  let value: T | undefined;
  for (let run = 0; run < runs; run++) {
    if (run > 0) await after?.();
    const start = process.hrtime.bigint();
    value = await work();
    times.push(Number(process.hrtime.bigint() - start) / 1e9);
  }
  times.sort((a, b) => a - b);
  return { seconds: times[times.length >> 1], value: value as T };
}

/** The units of NEW that become Replace ops, as the COW stores them (read back from the COW itself). */
async function replaceUnits(cowPath: string, newPath: string): Promise<Buffer[]> {
  const cow = await CowReader.open(cowPath);
  const target = await fs.readFile(newPath);
  const units: Buffer[] = [];
  for (let op = 0; op < cow.ops.count; op++) {
    if (cow.ops.type(op) !== 2) continue;
    const start = cow.ops.newBlock[op] * BS;
    units.push(target.subarray(start, start + cow.unitSize(op)));
  }
  await cow.close();
  return units;
}

const mib = (bytes: number, seconds: number): string => `${(bytes / 1048576 / seconds).toFixed(0)} MiB/s`;

/** The bare codec on the COW's Replace units, from memory to memory: compress all, then decompress all. */
async function bareCodec(cowPath: string, newPath: string, compression: string, factor: number) {
  const units = await replaceUnits(cowPath, newPath);
  const spec = parseCompression(compression);
  const codec = createCodec(spec.algorithm, spec.level, factor);
  const packed: Buffer[] = [];
  const bare = await time(() => {
    packed.length = 0;
    for (const unit of units) packed.push(Buffer.from(codec.compress(unit)));
  });
  const bareBytes = units.reduce((sum, u) => sum + u.length, 0);
  const bareThreads = async (threads: number) => {
    if (threads <= 1 || spec.algorithm === 0) return bare;
    const pool = new CompressPool(threads, spec, factor);
    try {
      // Batches of about 1 MiB, as create hands the threads one chunk of NEW at a time.
      const batches: Array<{ bytes: Uint8Array; sizes: number[] }> = [];
      const makeBatches = () => {
        batches.length = 0;
        for (let i = 0; i < units.length; ) {
          const sizes: number[] = [];
          let total = 0;
          for (; i < units.length && total < 1048576; i++) {
            sizes.push(units[i].length);
            total += units[i].length;
          }
          const bytes = new Uint8Array(total);
          for (let j = i - sizes.length, at = 0; j < i; at += units[j].length, j++) bytes.set(units[j], at);
          batches.push({ bytes, sizes });
        }
      };
      makeBatches();
      return await time(() => Promise.all(batches.map((b) => pool.compress(b.bytes, b.sizes))), async () => makeBatches());
    } finally {
      await pool.close();
    }
  };
  const unpackInto = Buffer.allocUnsafe(factor);
  const bareDecode = await time(() => {
    for (let i = 0; i < units.length; i++) {
      const out = unpackInto.subarray(0, units[i].length);
      if (packed[i].length >= units[i].length) out.set(packed[i]);
      else codec.decompressInto(packed[i], out);
    }
  });
  return { bare, bareDecode, bareBytes, bareThreads };
}

/** Reads each file once from start to end, as a create that reads every image once would. */
async function readOnce(files: string[]): Promise<void> {
  const buffer = Buffer.allocUnsafe(1024 * 1024);
  for (const name of files) {
    const file = await openFile(name, 'r');
    const size = (await fs.stat(name)).size;
    for (let at = 0; at < size; at += buffer.length) await file.read(buffer, 0, Math.min(buffer.length, size - at), at);
    await file.close();
  }
}

async function benchCodec(dir: string, oldPath: string, newPath: string, compression: string, factor: number, imageBytes: number): Promise<void> {
  const cowPath = path.join(dir, 'bench.cow');
  const outPath = path.join(dir, 'out.img');
  const create = await time(
    () => createCow(oldPath, newPath, cowPath, { compression, compressionFactor: factor }),
    () => fs.rm(cowPath, { force: true }),
  );
  const { bare, bareDecode, bareBytes, bareThreads } = await bareCodec(cowPath, newPath, compression, factor);
  const threads = create.value.threads;
  const bareParallel = await bareThreads(threads);
  const readFloor = await time(() => readOnce([oldPath, newPath]));
  const removeOut = () => fs.rm(outPath, { force: true });
  const apply = await time(() => applyCow(cowPath, oldPath, outPath), removeOut);
  await removeOut();
  const applyFsync = await time(() => applyCow(cowPath, oldPath, outPath, { fsync: true }), removeOut);
  await removeOut();
  // What any apply must at least do besides decompressing: put an image-sized file on disk durably.
  const ioFloor = await time(async () => {
    await fs.copyFile(oldPath, outPath);
    await syncFile(outPath);
  }, removeOut);
  const cowBytes = (await fs.stat(cowPath)).size;
  const key = compression.replace(',', '');
  report.figure(`${key}_create_s`, create.seconds);
  report.figure(`${key}_bare_compress_s`, bare.seconds);
  report.figure(`${key}_apply_s`, apply.seconds);
  report.figure(`${key}_apply_fsync_s`, applyFsync.seconds);
  report.figure(`${key}_bare_decompress_s`, bareDecode.seconds);
  report.figure(`${key}_cow_bytes`, cowBytes);
  if (compression === 'zstd') {
    report.ratio('cow_create_zstd_vs_bare', create.seconds / bare.seconds);
    report.ratio('cow_apply_zstd_vs_bare', apply.seconds / bareDecode.seconds);
  }
  report.line(
    `${compression.padEnd(9)} cow ${(cowBytes / 1048576).toFixed(1).padStart(6)} MiB (${create.value.ops.replace} replace ops, ${(bareBytes / 1048576).toFixed(0)} MiB of replace data)\n` +
      `          create ${create.seconds.toFixed(2)} s on ${threads} thread${threads === 1 ? '' : 's'} (${mib(imageBytes, create.seconds)} of image) vs bare compress ${bare.seconds.toFixed(2)} s (1 thread): ${(create.seconds / bare.seconds).toFixed(2)}x` +
      (threads > 1 ? ` (bare compress on ${threads} threads: ${bareParallel.seconds.toFixed(2)} s, create vs that ${(create.seconds / bareParallel.seconds).toFixed(2)}x)` : '') +
      ` (read floor, OLD + NEW once: ${readFloor.seconds.toFixed(2)} s; create vs bare compress + read floor: ${(create.seconds / (bare.seconds + readFloor.seconds)).toFixed(2)}x)\n` +
      `          apply  ${apply.seconds.toFixed(2)} s (${mib(imageBytes, apply.seconds)} of image) vs bare decompress ${bareDecode.seconds.toFixed(2)} s: ${(apply.seconds / bareDecode.seconds).toFixed(2)}x` +
      ` (IO floor, copyFile OLD + fsync: ${ioFloor.seconds.toFixed(2)} s; apply vs bare decompress + IO floor: ${(apply.seconds / (bareDecode.seconds + ioFloor.seconds)).toFixed(2)}x)\n` +
      `          apply --fsync ${applyFsync.seconds.toFixed(2)} s (durable, fsync before rename)`,
  );
  await fs.rm(outPath, { force: true });
}

async function benchSnapshotReader(dir: string, oldPath: string, newPath: string, imageBytes: number): Promise<void> {
  const cowPath = path.join(dir, 'reader.cow');
  await createCow(oldPath, newPath, cowPath, { compression: 'zstd' });
  const chunk = Buffer.allocUnsafe(256 * BS);
  const readDirect = (blocks: number) => async () => {
    const file = await openFile(newPath, 'r');
    const buffer = chunk.subarray(0, blocks * BS);
    for (let at = 0; at < imageBytes; at += buffer.length) await file.read(buffer, 0, buffer.length, at);
    await file.close();
  };
  const direct = await time(readDirect(256));
  const directSingle = await time(readDirect(1));
  const snapshot = await SnapshotReader.open(cowPath, oldPath);
  const viaCow = await time(async () => {
    for (let b = 0; b < snapshot.blockCount; b += 256) await snapshot.readBlocks(b, Math.min(256, snapshot.blockCount - b), chunk);
  });
  const single = await time(async () => {
    const one = chunk.subarray(0, BS);
    for (let b = 0; b < snapshot.blockCount; b++) await snapshot.readBlocks(b, 1, one);
  });
  await snapshot.close();
  // Reading through the COW must decompress every Replace payload; reading NEW.img does not.
  const { bareDecode } = await bareCodec(cowPath, newPath, 'zstd', BS);
  const floor = bareDecode.seconds + direct.seconds;
  report.ratio('reader_seq_vs_floor', viaCow.seconds / floor);
  report.figure('reader_seq_s', viaCow.seconds);
  report.figure('reader_seq_floor_s', floor);
  report.figure('reader_4k_s', single.seconds);
  report.line(
    `snapshot reader (zstd COW), sequential 1 MiB reads: ${mib(imageBytes, viaCow.seconds)} vs NEW.img directly ${mib(imageBytes, direct.seconds)}: ${(viaCow.seconds / direct.seconds).toFixed(2)}x the time` +
      ` (floor, direct read + bare decompress ${bareDecode.seconds.toFixed(2)} s: ${mib(imageBytes, floor)}; reader vs floor ${(viaCow.seconds / floor).toFixed(2)}x)\n` +
      `snapshot reader, sequential 4 KiB reads: ${mib(imageBytes, single.seconds)} vs NEW.img directly ${mib(imageBytes, directSingle.seconds)}: ${(single.seconds / directSingle.seconds).toFixed(2)}x the time`,
  );
}

async function benchIndex(dir: string, opCount: number): Promise<void> {
  const cowPath = path.join(dir, 'index.cow');
  // Mostly zero and copy ops in shuffled block order, so the index really has to sort.
  const writer = await CowWriter.create(cowPath, { opCountMax: opCount, maxBlocks: opCount * 2 });
  const next = rng(5);
  const order = new Uint32Array(opCount);
  for (let i = 0; i < opCount; i++) order[i] = i * 2;
  for (let i = opCount - 1; i > 0; i--) {
    const j = next() % (i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  for (let i = 0; i < opCount; i++) {
    if (i % 2) await writer.addZeroBlocks(order[i], 1);
    else await writer.addCopy(order[i], i);
  }
  await writer.finalize();
  await writer.close();
  const baseline = await time(() => fs.readFile(cowPath));
  let opened: CowReader | undefined;
  const load = await time(
    async () => (opened = await CowReader.open(cowPath)),
    async () => opened?.close(),
  );
  const cow = load.value;
  const lookups = await time(() => {
    let found = 0;
    for (let i = 0; i < opCount; i++) if (cow.index.lookup(order[i]) >= 0) found++;
    return found;
  });
  report.figure('index_load_s', load.seconds);
  report.figure('index_bytes_per_op', cow.bytesPerOp());
  report.line(
    `index: ${opCount} ops load in ${(load.seconds * 1000).toFixed(0)} ms (reading the file alone: ${(baseline.seconds * 1000).toFixed(0)} ms, ${(load.seconds / baseline.seconds).toFixed(1)}x), ` +
      `${cow.bytesPerOp().toFixed(1)} bytes per op, ${(lookups.seconds * 1e9 / opCount).toFixed(0)} ns per lookup (${lookups.value} found)`,
  );
  await cow.close();
}

async function main(): Promise<void> {
  const args = parseArgs();
  runs = args.runs;
  report = new BenchReport('cow', args.json);
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vab-bench-cow-'));
  try {
    const imageBytes = args.sizeMib * 1024 * 1024;
    report.line(`cow benchmark: ${args.sizeMib} MiB images, 30% of blocks changed, compression factor ${args.factor}`);
    const { oldPath, newPath } = await makeImages(dir, args.sizeMib);
    for (const codec of args.codecs) await benchCodec(dir, oldPath, newPath, codec, args.factor, imageBytes);
    await benchSnapshotReader(dir, oldPath, newPath, imageBytes);
    await benchIndex(dir, args.indexOps);
    report.finish();
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
