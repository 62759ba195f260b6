/**
 * snapuserd benchmark: an updated partition (OLD + a zstd COW, about 30% of blocks changed) read
 * through `vab kernel` + `vab snapuserd`, against the same FUSE server answering from the NEW image
 * (no daemon hop) and against kernel + passthrough over NEW. All measured in this run. Also: the
 * time `init` takes for a COW of 1,000,000 ops, and the memory its index holds.
 *   node dist/bench/snapuserd.js [--size-mib 256] [--random-reads 4000] [--init-ops 1000000] [--json]
 */
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createCow } from '../src/cow/create';
import { CowWriter } from '../src/cow/writer';
import { forceUnmountUnder } from '../src/fuse';
import { integer } from '../src/cli/options';
import { dmctl, spawnKernel, spawnPassthrough, spawnVab } from '../src/ota/vab-processes';
import { HandlerRegistry } from '../src/snapuserd/registry';
import { ChildHandle, start } from '../src/util/exec';
import { nullLogger } from '../src/util/log';
import { ReadFigures, measureReads } from './support/read-figures';
import { BenchReport, parseBenchArgs } from './support/report';
import { writeUpdateImages as writeImages } from './support/update-images';

const MiB = 1024 * 1024;
const BS = 4096;

interface Args {
  sizeMib: number;
  randomReads: number;
  initOps: number;
}

/**
 * OLD: random blocks (like compressed files in a filesystem). NEW: 30% of blocks changed to
 * half-compressible data (Replace), 5% moved (Copy), 5% zeroed, the rest as they were.
 */
/** A COW of `ops` ops (Copy and Zero, no data) over a sparse base; init time and index memory. */
async function measureInit(work: string, ops: number): Promise<{ ops: number; initMs: number; indexMiB: number }> {
  const cowPath = path.join(work, 'init.cow');
  const base = path.join(work, 'init.base');
  await fsp.writeFile(base, '');
  await fsp.truncate(base, (ops + 1) * BS);
  const writer = await CowWriter.create(cowPath, { compression: 'none', maxBlocks: ops + 1, scratchSpace: false });
  for (let b = 0; b < ops; b += 2) {
    await writer.addCopy(b, b + 1);
    if (b + 1 < ops) await writer.addZeroBlocks(b + 1, 1);
  }
  await writer.finalize();
  const registry = new HandlerRegistry({ runDir: work, channels: 1, logger: nullLogger });
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const before = process.memoryUsage();
  const started = performance.now();
  await registry.init('init', cowPath, base, base);
  const initMs = performance.now() - started;
  gc?.();
  const after = process.memoryUsage();
  await registry.stopAll();
  const indexBytes = after.heapUsed - before.heapUsed + (after.arrayBuffers - before.arrayBuffers);
  return { ops, initMs, indexMiB: indexBytes / MiB };
}

async function main(): Promise<void> {
  const args = parseBenchArgs<Args>('snapuserd', 'reads of an updated partition through vab kernel + vab snapuserd against the same FUSE server answering from NEW', (c) =>
    c
      .option('--size-mib <n>', 'size of the partition', integer(1), 256)
      .option('--random-reads <n>', 'random 4 KiB reads per configuration', integer(1), 4000)
      .option('--init-ops <n>', 'ops in the COW whose handler init is timed', integer(1), 1_000_000),
  );
  const report = new BenchReport('snapuserd', args.json);
  const size = args.sizeMib * MiB;
  const randomReads = args.randomReads;
  const initOps = args.initOps;
  const work = await fsp.mkdtemp(path.join(os.tmpdir(), 'vab-bench-snapuserd-'));
  const children: ChildHandle[] = [];
  try {
    const oldImage = path.join(work, 'old.img');
    const newImage = path.join(work, 'new.img');
    await writeImages(oldImage, newImage, size);
    const cow = path.join(work, 'update.cow');
    const created = await createCow(oldImage, newImage, cow, { compression: 'zstd' });
    const cowBytes = (await fsp.stat(cow)).size;

    const plainMount = path.join(work, 'plain');
    await fsp.mkdir(plainMount);
    const serverScript = path.join(__dirname, 'support/image-server.js');
    const noHopServer = start(process.execPath, [serverScript, plainMount, 'bench', newImage], { label: 'image-server' });
    children.push(noHopServer);
    await noHopServer.waitForLine('ready');
    const noHop = await measureReads(path.join(plainMount, 'bench'), size, randomReads);
    await noHopServer.stop();

    const mount = path.join(work, 'mnt');
    const runDir = path.join(work, 'run');
    children.push(await spawnKernel({ mount, run: runDir, logFile: path.join(work, 'kernel.log') }));
    await dmctl(runDir, ['create', 'plain', '--size', String(size)]);
    children.push(await spawnPassthrough(runDir, 'plain', newImage, 4));
    const passthrough = await measureReads(path.join(mount, 'plain'), size, randomReads);

    await dmctl(runDir, ['create', 'system', '--size', String(size)]);
    const daemon = spawnVab(['snapuserd', '--run', runDir, '--channels', '4', '--log', path.join(work, 'snapuserd.log'), '--no-socket', `system,${cow},${oldImage},${oldImage}`], 'vab snapuserd');
    children.push(daemon);
    await daemon.waitForLine('ready');
    const snapuserd = await measureReads(path.join(mount, 'system'), size, randomReads);

    const init = await measureInit(work, initOps);
    const ratios = { snapuserd_vs_nohop_seq: snapuserd.seqMiBps / noHop.seqMiBps, snapuserd_vs_nohop_rand4k: snapuserd.randIops / noHop.randIops };
    const figures = {
      size_mib: size / MiB,
      cow_ops: created.opCount,
      cow_op_kinds: created.ops,
      cow_mib: cowBytes / MiB,
      nohop_seq_mibps: noHop.seqMiBps,
      nohop_rand4k_iops: noHop.randIops,
      passthrough_seq_mibps: passthrough.seqMiBps,
      passthrough_rand4k_iops: passthrough.randIops,
      snapuserd_seq_mibps: snapuserd.seqMiBps,
      snapuserd_rand4k_iops: snapuserd.randIops,
      init_ops: init.ops,
      init_ms: init.initMs,
      init_index_mib: init.indexMiB,
    };
    for (const [name, value] of Object.entries(ratios)) report.ratio(name, value);
    for (const [name, value] of Object.entries(figures)) if (typeof value === 'number') report.figure(name, value);
    const row = (label: string, f: ReadFigures): string =>
      `${label.padEnd(30)} ${f.seqMiBps.toFixed(0).padStart(6)} MiB/s ${(f.seqMiBps / noHop.seqMiBps).toFixed(2).padStart(6)}x   ${f.randIops.toFixed(0).padStart(6)} IOPS ${(f.randIops / noHop.randIops).toFixed(2).padStart(6)}x`;
    report.line(`vab snapuserd benchmark: ${size / MiB} MiB, COW zstd ${created.opCount} ops (${(cowBytes / MiB).toFixed(1)} MiB), 1 MiB sequential, ${randomReads} random 4 KiB reads, queue depth 1`);
    report.line(row('FUSE from NEW, no daemon hop', noHop));
    report.line(row('kernel + passthrough over NEW', passthrough));
    report.line(row('kernel + snapuserd (OLD + COW)', snapuserd));
    report.line(`snapuserd vs no-hop: sequential ${ratios.snapuserd_vs_nohop_seq.toFixed(2)}x (target >= 0.6), random ${ratios.snapuserd_vs_nohop_rand4k.toFixed(2)}x (target >= 0.5)`);
    report.line(`handler init, ${init.ops} ops: ${init.initMs.toFixed(0)} ms (target < 1000), index ${init.indexMiB.toFixed(1)} MiB (target < 64)`);
    report.finish();
  } finally {
    for (const child of children.reverse()) await child.stop();
    await forceUnmountUnder(work);
    await fsp.rm(work, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(`bench/snapuserd: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});
