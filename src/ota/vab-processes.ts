import { ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { VabError } from '../util/errors';
import { runChecked, RunResult } from '../util/exec';

/**
 * Starts and drives the long-lived vab processes (`vab kernel`, daemons) as children, the way a
 * user would from a shell. Commands that orchestrate the runtime (the demo, benchmarks, crash
 * tests) use these, so they never serve a mount themselves and may touch it freely.
 */

/** The compiled CLI entry (dist/src/cli/main.js), found relative to this compiled file. */
export const VAB_MAIN = path.resolve(__dirname, '../cli/main.js');

export function vab(args: readonly string[], timeoutMs = 30_000): Promise<RunResult> {
  return runChecked(process.execPath, [VAB_MAIN, ...args], { timeoutMs });
}

export interface KernelOptions {
  mount: string;
  run: string;
  daemonTimeoutMs?: number;
  restartGraceMs?: number;
  logFile?: string;
}

/** A child vab process and what it printed so far. */
export class VabChild {
  stdout = '';
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(readonly child: ChildProcess, readonly label: string) {
    child.stdout?.setEncoding('utf8').on('data', (text: string) => (this.stdout += text));
    child.stderr?.setEncoding('utf8').on('data', (text: string) => (this.stderr += text));
    this.exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Waits until stdout holds `text`; fails if the process exits first or the wait runs out. */
  async waitForOutput(text: string, timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.stdout.includes(text)) {
      if (!this.running) throw new VabError('ESTATE', `${this.label} exited before printing "${text}": ${this.stderr.trim()}`);
      if (Date.now() > deadline) throw new VabError('ETIMEDOUT', `${this.label} did not print "${text}" within ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  /** Sends `signal` and waits for the exit (escalating to SIGKILL after `graceMs`). */
  async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 10_000): Promise<void> {
    if (!this.running) return;
    this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}

export function spawnVab(args: readonly string[], label: string): VabChild {
  return new VabChild(spawn(process.execPath, [VAB_MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }), label);
}

/** Starts `vab kernel` and waits until its block files are mounted and its control socket answers. */
export async function spawnKernel(options: KernelOptions): Promise<VabChild> {
  const args = ['kernel', '--mount', options.mount, '--run', options.run];
  if (options.daemonTimeoutMs !== undefined) args.push('--daemon-timeout-ms', String(options.daemonTimeoutMs));
  if (options.restartGraceMs !== undefined) args.push('--restart-grace-ms', String(options.restartGraceMs));
  if (options.logFile !== undefined) args.push('--log', options.logFile);
  const kernel = spawnVab(args, 'vab kernel');
  await kernel.waitForOutput('ready');
  return kernel;
}

/** Starts the passthrough daemon for target `name`; it attaches its channels at once. */
export async function spawnPassthrough(runDir: string, name: string, image: string, channels = 4): Promise<VabChild> {
  const daemon = spawnVab(['passthrough', '--run', runDir, name, '--image', image, '--channels', String(channels)], `vab passthrough ${name}`);
  await daemon.waitForOutput('serving');
  return daemon;
}

export function dmctl(runDir: string, args: readonly string[]): Promise<RunResult> {
  return vab(['dmctl', '--run', runDir, ...args]);
}
