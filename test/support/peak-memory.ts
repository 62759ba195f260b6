import { existsSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { run, RunResult } from '../../src/util/exec';

import { REPO, VAB_BIN } from './cli';

export { REPO };

export interface MeasuredRun extends RunResult {
  /** The child's peak resident set size, as the kernel counted it (getrusage ru_maxrss). */
  maxRssBytes: number;
}

/**
 * Runs `node <args>` under GNU time, which reports the child's peak RSS: the number the issue is
 * about, measured in the process that did the work rather than sampled from outside.
 */
export async function runMeasured(args: readonly string[], timeoutMs = 120_000): Promise<MeasuredRun> {
  const report = path.join(os.tmpdir(), `vab-rss-${process.pid}-${Math.random().toString(36).slice(2)}`);
  try {
    const result = await run('/usr/bin/time', ['-f', '%M', '-o', report, process.execPath, ...args], { timeoutMs });
    const kib = Number((await fs.readFile(report, 'utf8')).trim().split('\n').pop());
    if (!Number.isFinite(kib) || kib <= 0) throw new Error(`GNU time reported no peak RSS for node ${args.join(' ')}`);
    return { ...result, maxRssBytes: kib * 1024 };
  } finally {
    await fs.rm(report, { force: true });
  }
}

/** Runs `vab ARGS...` through the package's bin entry, under GNU time. */
export function vabMeasured(...args: string[]): Promise<MeasuredRun> {
  const built = path.join(REPO, 'dist/src/cli/main.js');
  if (!existsSync(built)) throw new Error(`${built} is missing: run npm run build first (npm test does)`);
  return runMeasured([VAB_BIN, ...args]);
}

/** A file of `size` zero bytes piped through `command` (a compressor's command line). */
export async function zeroBomb(file: string, size: number, command: string): Promise<Buffer> {
  const result = await run('sh', ['-c', `head -c ${size} /dev/zero | ${command} > '${file}'`], { timeoutMs: 120_000 });
  if (result.code !== 0) throw new Error(`making ${file} with ${command} failed: ${result.stderr}`);
  return fs.readFile(file);
}

export const MiB = 1024 * 1024;
