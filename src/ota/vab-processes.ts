import path from 'node:path';
import { ChildHandle, RunResult, runChecked, start } from '../util/exec';
import { PACKAGE_ROOT } from '../util/package-root';

/**
 * Starts and drives the long-lived vab processes (`vab kernel`, daemons) as children, the way a
 * user would from a shell. Commands that orchestrate the runtime (the demo, benchmarks, crash
 * tests) use these, so they never serve a mount themselves and may touch it freely.
 */

/** The package's `vab` command (bin/vab), found relative to this compiled file (dist/src/ota/). */
export const VAB_BIN = path.join(PACKAGE_ROOT, 'bin/vab');

/** This node runs the children too: the `#!/usr/bin/env node` line could find another one on PATH. */
export function vab(args: readonly string[], timeoutMs = 30_000): Promise<RunResult> {
  return runChecked(process.execPath, [VAB_BIN, ...args], { timeoutMs });
}

/** `newProcessGroup`: the child leads a group of its own, so it and its children can be signalled together. */
export function spawnVab(args: readonly string[], label: string, options: { newProcessGroup?: boolean } = {}): ChildHandle {
  return start(process.execPath, [VAB_BIN, ...args], { label, newProcessGroup: options.newProcessGroup });
}

export interface KernelOptions {
  mount: string;
  run: string;
  daemonTimeoutMs?: number;
  restartGraceMs?: number;
  logFile?: string;
  /** Appended last, so they override the flags above. */
  extraArgs?: readonly string[];
}

/** Starts `vab kernel` and waits until its block files are mounted and its control socket answers. */
export async function spawnKernel(options: KernelOptions): Promise<ChildHandle> {
  const args = ['kernel', '--mount', options.mount, '--run', options.run];
  if (options.daemonTimeoutMs !== undefined) args.push('--daemon-timeout-ms', String(options.daemonTimeoutMs));
  if (options.restartGraceMs !== undefined) args.push('--restart-grace-ms', String(options.restartGraceMs));
  if (options.logFile !== undefined) args.push('--log', options.logFile);
  args.push(...(options.extraArgs ?? []));
  return started(spawnVab(args, 'vab kernel'), /^vab kernel: ready /);
}

/** Starts the passthrough daemon for target `name`; it attaches its channels at once. */
export async function spawnPassthrough(runDir: string, name: string, image: string, channels = 4, transport = 'auto'): Promise<ChildHandle> {
  const daemon = spawnVab(['passthrough', '--run', runDir, name, '--image', image, '--channels', String(channels), '--transport', transport], `vab passthrough ${name}`);
  return started(daemon, /^vab passthrough: serving /);
}

/** Starts `vab snapuserd` with its control socket (default <run>/snapuserd.sock); resolves once it listens. */
export async function spawnSnapuserd(runDir: string, logFile?: string, socket?: string): Promise<ChildHandle> {
  const args = ['snapuserd', '--run', runDir];
  if (socket !== undefined) args.push('--socket', socket);
  if (logFile !== undefined) args.push('--log', logFile);
  return started(spawnVab(args, 'vab snapuserd'), /^vab snapuserd: ready/);
}

/** Waits for the child's ready line; a child that never prints it is killed, not left behind. */
async function started(child: ChildHandle, ready: RegExp): Promise<ChildHandle> {
  try {
    await child.waitForLine(ready, 15_000);
    return child;
  } catch (err) {
    await child.stop('SIGKILL');
    throw err;
  }
}

export function dmctl(runDir: string, args: readonly string[]): Promise<RunResult> {
  return vab(['dmctl', '--run', runDir, ...args]);
}
