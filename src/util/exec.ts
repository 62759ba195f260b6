import { spawn, SpawnOptions } from 'node:child_process';
import { VabError } from './errors';

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Wall-clock time from spawn to exit. */
  elapsedMs: number;
}

export interface RunOptions extends Pick<SpawnOptions, 'cwd' | 'env'> {
  /** Kill the child (SIGKILL) after this long; the result then has signal SIGKILL. */
  timeoutMs?: number;
}

/**
 * Runs a program asynchronously and collects its output. Asynchronous on purpose: a process that
 * serves a FUSE mount must never wait synchronously for a child that may touch that mount.
 */
export function run(command: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(command, args, { cwd: options.cwd, env: options.env, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr?.on('data', (chunk: Buffer) => err.push(chunk));
    const timer = options.timeoutMs === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), options.timeoutMs);
    child.on('error', (error) => {
      if (timer) clearTimeout(timer);
      reject(new VabError('EIO', `cannot run ${command}: ${error.message}`, { cause: error }));
    });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      resolve({
        code,
        signal,
        stdout: Buffer.concat(out).toString(),
        stderr: Buffer.concat(err).toString(),
        elapsedMs: performance.now() - started,
      });
    });
  });
}

/** Like `run`, but a non-zero exit or a signal is an error carrying the program's stderr. */
export async function runChecked(command: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const result = await run(command, args, options);
  if (result.code !== 0) {
    const how = result.signal ? `was killed by ${result.signal}` : `exited with ${result.code}`;
    throw new VabError('EIO', `${command} ${args.join(' ')} ${how}: ${result.stderr.trim() || result.stdout.trim()}`);
  }
  return result;
}
