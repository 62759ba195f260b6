/**
 * Runtime benchmark: IO through `vab kernel` + the passthrough daemon, against the same FUSE
 * server answering from the image itself (no daemon hop), against reading the image file directly.
 * The daemon is measured on the shared-memory transport (the default) and again on the plain one,
 * and a bare Node-to-Node socket round trip gives the ceiling no transport can pass.
 * Everything is measured in this run, on this machine; ratios are what to compare across runs.
 *   npm run bench:runtime -- [--size-mib 256] [--random-reads 4000] [--max-io-bytes N (kernel split)] [--json]
 * Ratios: daemon_vs_nohop_seq, daemon_vs_nohop_rand4k (throughput through the daemon / no-hop; higher is better).
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { forceUnmountUnder } from '../src/fuse';
import { dmctl, spawnKernel, spawnPassthrough } from '../src/ota/vab-processes';
import { integer } from '../src/cli/options';
import { ChildHandle, start } from '../src/util/exec';
import { ReadFigures, measureReads } from './support/read-figures';
import { measureSocketRoundTrip } from './support/socket-rtt';
import { BenchReport, parseBenchArgs } from './support/report';

const MiB = 1024 * 1024;

interface Args {
  sizeMib: number;
  randomReads: number;
  maxIoBytes: number;
  warmup: number;
}

/** Time until a 4 KiB read of `file` fails, and how it failed. */
async function timeFailingRead(file: string): Promise<{ ms: number; error: string }> {
  const handle = await fsp.open(file, 'r');
  const started = performance.now();
  try {
    await handle.read(Buffer.alloc(4096), 0, 4096, 0);
    return { ms: performance.now() - started, error: 'none (read succeeded)' };
  } catch (err) {
    return { ms: performance.now() - started, error: (err as NodeJS.ErrnoException).code ?? String(err) };
  } finally {
    await handle.close();
  }
}

async function writeImage(file: string, size: number): Promise<void> {
  const handle = await fsp.open(file, 'w');
  try {
    for (let offset = 0; offset < size; offset += MiB) await handle.write(randomBytes(MiB), 0, MiB, offset);
    // On disk before anything is timed: writeback of 256 MiB of dirty pages would otherwise run
    // under whichever configuration is measured first.
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function row(label: string, f: ReadFigures, base?: ReadFigures): string {
  const ratio = (a: number, b?: number) => (b ? `${(a / b).toFixed(2)}x` : '-');
  return `${label.padEnd(34)} ${f.seqMiBps.toFixed(0).padStart(8)} MiB/s ${ratio(f.seqMiBps, base?.seqMiBps).padStart(7)}   ${f.randIops
    .toFixed(0)
    .padStart(8)} IOPS ${ratio(f.randIops, base?.randIops).padStart(7)}`;
}

async function main(): Promise<void> {
  const args = parseBenchArgs<Args>('runtime', 'IO through vab kernel + the passthrough daemon against the same FUSE server with no daemon hop', (c) =>
    c
      .option('--size-mib <n>', 'size of the block file', integer(1), 256)
      .option('--random-reads <n>', 'random 4 KiB reads per configuration', integer(1), 4000)
      .option('--max-io-bytes <n>', 'kernel split size (0: the kernel default)', integer(0), 0)
      .option('--warmup <n>', 'unmeasured passes before each measured one, for every configuration alike', integer(0), 1),
  );
  const report = new BenchReport('runtime', args.json);
  const size = args.sizeMib * MiB;
  const randomReads = args.randomReads;
  const measured = async (file: string): Promise<ReadFigures> => {
    for (let pass = 0; pass < args.warmup; pass++) await measureReads(file, size, randomReads);
    return measureReads(file, size, randomReads);
  };
  const work = await fsp.mkdtemp(path.join(os.tmpdir(), 'vab-bench-runtime-'));
  const children: ChildHandle[] = [];
  try {
    const image = path.join(work, 'image.img');
    await writeImage(image, size);
    const plainMount = path.join(work, 'plain');
    const mount = path.join(work, 'mnt');
    const runDir = path.join(work, 'run');
    await fsp.mkdir(plainMount);

    const direct = await measureReads(image, size, randomReads);

    const serverScript = path.join(__dirname, 'support/image-server.js');
    const noHop = start(process.execPath, [serverScript, plainMount, 'bench', image], { label: 'image-server' });
    children.push(noHop);
    await noHop.waitForLine(/^ready /);
    const fuseOnly = await measured(path.join(plainMount, 'bench'));
    await noHop.stop();

    // Each transport gets a kernel and a daemon of its own, started fresh and warmed alike, so
    // neither inherits the other's warmed-up kernel process.
    const maxIoBytes = args.maxIoBytes;
    const startPair = async (transport: 'shared' | 'plain', runDir: string): Promise<{ kernel: ChildHandle; daemon: ChildHandle }> => {
      const kernel = await spawnKernel({ mount, run: runDir, logFile: path.join(work, `kernel-${transport}.log`) });
      children.push(kernel);
      if (maxIoBytes > 0) await dmctl(runDir, ['set', 'max_io_bytes', String(maxIoBytes)]);
      await dmctl(runDir, ['create', 'bench', '--size', String(size)]);
      const daemon = await spawnPassthrough(runDir, 'bench', image, 4, transport);
      children.push(daemon);
      return { kernel, daemon };
    };
    const sharedPair = await startPair('shared', path.join(work, 'run-shared'));
    const throughDaemon = await measured(path.join(mount, 'bench'));
    await sharedPair.daemon.stop();
    await sharedPair.kernel.stop();
    const { daemon } = await startPair('plain', runDir);
    const throughPlain = await measured(path.join(mount, 'bench'));
    const rttUs = await measureSocketRoundTrip(work);

    const timeoutMs = 1000;
    await dmctl(runDir, ['set', 'daemon_timeout_ms', String(timeoutMs)]);
    await dmctl(runDir, ['create', 'orphan', '--size', String(MiB)]);
    const neverHadDaemon = await timeFailingRead(path.join(mount, 'orphan'));
    await daemon.stop('SIGKILL');
    const afterDaemonDied = await timeFailingRead(path.join(mount, 'bench'));

    const seq = report.ratio('daemon_vs_nohop_seq', throughDaemon.seqMiBps / fuseOnly.seqMiBps);
    const rand = report.ratio('daemon_vs_nohop_rand4k', throughDaemon.randIops / fuseOnly.randIops);
    for (const [name, f] of [['direct', direct], ['nohop', fuseOnly], ['daemon', throughDaemon], ['daemon_plain', throughPlain]] as const) {
      report.figure(`${name}_seq_mib_s`, f.seqMiBps);
      report.figure(`${name}_rand4k_iops`, f.randIops);
    }
    // The no-hop path's time per IO plus one bare round trip: what a daemon doing the no-hop server's
    // work would reach. (The passthrough does a little less: no threadpool for cached reads.)
    const seqCeiling = (1e6 / fuseOnly.seqMiBps) / (1e6 / fuseOnly.seqMiBps + rttUs);
    const randCeiling = (1e6 / fuseOnly.randIops) / (1e6 / fuseOnly.randIops + rttUs);
    report.figure('socket_round_trip_us', rttUs);
    report.figure('ceiling_seq', seqCeiling);
    report.figure('ceiling_rand4k', randCeiling);
    report.figure('fail_no_daemon_ms', neverHadDaemon.ms);
    report.figure('fail_daemon_killed_ms', afterDaemonDied.ms);
    report.line(`vab runtime benchmark: ${size / MiB} MiB block file, 1 MiB sequential reads, ${randomReads} random 4 KiB reads, queue depth 1`);
    report.line(`${''.padEnd(34)} ${'sequential'.padStart(14)} ${'vs no-hop'.padStart(7)}   ${'random 4K'.padStart(13)} ${'vs no-hop'.padStart(7)}`);
    report.line(row('image file, page cache (reference)', direct, fuseOnly));
    report.line(row('FUSE from image, no daemon hop', fuseOnly, fuseOnly));
    report.line(row('kernel + passthrough, shared memory', throughDaemon, fuseOnly));
    report.line(row('kernel + passthrough, plain socket', throughPlain, fuseOnly));
    report.line(`daemon vs no-hop: sequential ${seq.toFixed(2)}x, random ${rand.toFixed(2)}x (target >= 0.80x)`);
    report.line(`Node-to-Node socket round trip ${rttUs.toFixed(1)} us: no-hop work plus one round trip per IO gives sequential ${seqCeiling.toFixed(2)}x, random ${randCeiling.toFixed(2)}x here`);
    report.line(`daemon vs image file: sequential ${(throughDaemon.seqMiBps / direct.seqMiBps).toFixed(2)}x, random ${(throughDaemon.randIops / direct.randIops).toFixed(2)}x`);
    report.line(`failure, target never had a daemon: ${neverHadDaemon.error} after ${neverHadDaemon.ms.toFixed(0)} ms (daemon_timeout_ms ${timeoutMs}, ratio ${(neverHadDaemon.ms / timeoutMs).toFixed(2)}x)`);
    report.line(`failure, daemon killed: ${afterDaemonDied.error} after ${afterDaemonDied.ms.toFixed(1)} ms (expected at once)`);
    report.finish();
  } finally {
    for (const child of children.reverse()) await child.stop();
    await forceUnmountUnder(work);
    await fsp.rm(work, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(`bench/runtime: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});
