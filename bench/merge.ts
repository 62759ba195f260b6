/**
 * bench/merge: snapuserd's in-place merge of an updated partition (256 MiB, ~30% of blocks
 * rewritten plus copies and zeros, zstd COW) against `dd conv=fsync` writing the same number of
 * bytes, in one run. The merge runs in the daemon's own engine (HandlerRegistry, initiate_merge)
 * with its partition served over in-memory dm-user channels, so what is timed is the merge alone.
 *
 *   merge_vs_dd_fsync = dd time / merge time   (higher is better; target >= 0.5)
 */
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { createCow } from '../src/cow/create';
import { CowOpType } from '../src/cow/format';
import { CowReader } from '../src/cow/reader';
import { integer } from '../src/cli/options';
import { memoryChannelOpener } from '../src/dmuser/testing/memory-channel';
import { resolveParams } from '../src/kernel/params';
import { Target } from '../src/kernel/target';
import { HandlerRegistry } from '../src/snapuserd/registry';
import { runChecked } from '../src/util/exec';
import { nullLogger } from '../src/util/log';
import { BenchReport, parseBenchArgs } from './support/report';
import { writeUpdateImages } from './support/update-images';

const MiB = 1024 * 1024;

interface Args {
  sizeMib: number;
  runs: number;
}

/** Times one merge of `cow` into a fresh copy of `oldImage`; checks the result against `newImage`. */
async function timeMerge(work: string, oldImage: string, newImage: string, cowTemplate: string): Promise<number> {
  const base = path.join(work, 'base.img');
  const cow = path.join(work, 'merge.cow');
  await fsp.copyFile(oldImage, base);
  await fsp.copyFile(cowTemplate, cow);
  await runChecked('sync', []);
  const targets = new Map<string, Target>();
  const registry = new HandlerRegistry({ runDir: work, channels: 1, logger: nullLogger, opener: memoryChannelOpener((n) => targets.get(n)) });
  const sectors = await registry.init('system', cow, base, base);
  targets.set('system', new Target('system', sectors, resolveParams({}), nullLogger));
  await registry.start('system');
  const began = performance.now();
  await registry.initiateMerge('system');
  while (registry.mergeStatus('system') === 'snapshot-merge') await new Promise((resolve) => setTimeout(resolve, 2));
  const ms = performance.now() - began;
  const status = registry.mergeStatus('system');
  await registry.stopAll();
  if (status !== 'snapshot-merge-complete') throw new Error(`the merge ended ${status}`);
  await runChecked('cmp', [base, newImage]);
  return ms;
}

/** dd writing `bytes` to a fresh file with one fsync at the end. */
async function timeDd(work: string, bytes: number): Promise<number> {
  const out = path.join(work, 'dd.out');
  await fsp.rm(out, { force: true });
  const began = performance.now();
  await runChecked('dd', ['if=/dev/zero', `of=${out}`, 'bs=1M', `count=${Math.ceil(bytes / MiB)}`, 'conv=fsync', 'status=none']);
  const ms = performance.now() - began;
  await fsp.rm(out, { force: true });
  return ms;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[sorted.length >> 1];
}

async function main(): Promise<void> {
  const args = parseBenchArgs<Args>('merge', "snapuserd's in-place merge of an updated partition against dd conv=fsync of the same bytes", (c) =>
    c.option('--size-mib <n>', 'size of the partition', integer(1), 256).option('--runs <n>', 'paired runs (the median is reported)', integer(1), 3),
  );
  const report = new BenchReport('merge', args.json);
  const work = await fsp.mkdtemp(path.join(os.tmpdir(), 'vab-bench-merge-'));
  try {
    const oldImage = path.join(work, 'old.img');
    const newImage = path.join(work, 'new.img');
    const size = args.sizeMib * MiB;
    await writeUpdateImages(oldImage, newImage, size);
    const cow = path.join(work, 'update.cow');
    await createCow(oldImage, newImage, cow, { compression: 'zstd' });
    const reader = await CowReader.open(cow);
    let mergedBlocks = 0;
    const kinds: Record<string, number> = {};
    for (const op of reader.index.order) {
      mergedBlocks += reader.ops.span(op);
      const kind = CowOpType[reader.ops.type(op)] ?? String(reader.ops.type(op));
      kinds[kind] = (kinds[kind] ?? 0) + 1;
    }
    await reader.close();
    const mergedBytes = mergedBlocks * reader.blockSize;
    const merges: number[] = [];
    const dds: number[] = [];
    for (let run = 0; run < args.runs; run++) {
      merges.push(await timeMerge(work, oldImage, newImage, cow));
      dds.push(await timeDd(work, mergedBytes));
    }
    const merge = median(merges);
    const dd = median(dds);
    report.line(`merge of ${args.sizeMib} MiB (${(mergedBytes / MiB).toFixed(1)} MiB written; ops ${JSON.stringify(kinds)}): median ${merge.toFixed(0)} ms over ${args.runs} runs`);
    report.line(`dd conv=fsync of the same bytes: median ${dd.toFixed(0)} ms`);
    report.line(`merge_vs_dd_fsync = ${(dd / merge).toFixed(2)} (dd time / merge time; target >= 0.5)`);
    report.ratio('merge_vs_dd_fsync', dd / merge);
    report.figure('size_mib', args.sizeMib);
    report.figure('merged_mib', mergedBytes / MiB);
    report.figure('merge_ms', merge);
    report.figure('dd_fsync_ms', dd);
    report.figure('merge_mib_s', mergedBytes / MiB / (merge / 1000));
    report.figure('runs', args.runs);
    report.finish();
  } finally {
    await fsp.rm(work, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`bench/merge: ${(err as Error).message}\n`);
  process.exitCode = 1;
});
