import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { forceUnmountUnder } from '../../../src/fuse/cleanup';
import type { KernelStatus } from '../../../src/kernel/control';
import { kernelStatus } from '../../../src/kernel/control-client';
import type { TargetInfo } from '../../../src/kernel/target';
import { ChildHandle, RunResult, run } from '../../../src/util/exec';
import { startVab, vab as vabCli } from '../../support/cli';

/**
 * End-to-end harness: `vab kernel` and `vab passthrough` as child processes started through
 * bin/vab (the built CLI, so run `npm run build` first), IO only from child processes (dd, sh),
 * never from this process.
 */

export function vabChild(args: readonly string[]): ChildHandle {
  return startVab(args);
}

export function vab(args: readonly string[], timeoutMs = 20_000): Promise<RunResult> {
  return vabCli(args, { timeoutMs });
}

/** A shell snippet in a child process: the only way tests touch the mount. */
export function sh(script: string, timeoutMs = 30_000): Promise<RunResult> {
  return run('sh', ['-c', script], { timeoutMs });
}

export class Runtime {
  readonly daemons: ChildHandle[] = [];

  private constructor(
    readonly dir: string,
    readonly mount: string,
    readonly run: string,
    readonly log: string,
    readonly kernel: ChildHandle,
  ) {}

  /** Starts `vab kernel` with extra flags and waits for its ready line. */
  static async start(flags: readonly string[] = []): Promise<Runtime> {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vab-rt-'));
    const mount = path.join(dir, 'mnt');
    const runDir = path.join(dir, 'run');
    const log = path.join(dir, 'kernel.log');
    const kernel = vabChild(['kernel', '--mount', mount, '--run', runDir, '--log', log, ...flags]);
    const runtime = new Runtime(dir, mount, runDir, log, kernel);
    try {
      await kernel.waitForLine(/^vab kernel: ready /);
    } catch (err) {
      await runtime.dispose();
      throw err;
    }
    return runtime;
  }

  dmctl(args: readonly string[]): Promise<RunResult> {
    return vab(['dmctl', '--run', this.run, ...args]);
  }

  status(): Promise<KernelStatus> {
    return kernelStatus(this.run);
  }

  async target(name: string): Promise<TargetInfo> {
    const found = (await this.status()).targets.find((t) => t.name === name);
    if (!found) throw new Error(`no target ${name}`);
    return found;
  }

  /** Writes a random image and creates a target of its size. */
  async createTarget(name: string, size: number): Promise<{ image: string; content: Buffer; file: string }> {
    const content = randomBytes(size);
    const image = path.join(this.dir, `${name}.img`);
    await fs.writeFile(image, content);
    const created = await this.dmctl(['create', name, '--size', String(size)]);
    if (created.code !== 0) throw new Error(`dmctl create ${name} failed: ${created.stderr}`);
    return { image, content, file: path.join(this.mount, name) };
  }

  /** Starts `vab passthrough` and waits until its channels are open. */
  async passthrough(name: string, image: string, channels = 4): Promise<ChildHandle> {
    const daemon = vabChild(['passthrough', name, '--run', this.run, '--image', image, '--channels', String(channels), '--log', path.join(this.dir, `passthrough-${name}.log`)]);
    this.daemons.push(daemon);
    await daemon.waitForLine(/^vab passthrough: serving /);
    return daemon;
  }

  /** Polls the kernel until `check` holds for the target. */
  async waitForTarget(name: string, check: (t: TargetInfo) => boolean, what: string, timeoutMs = 10_000): Promise<TargetInfo> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const info = await this.target(name);
      if (check(info)) return info;
      if (Date.now() > until) throw new Error(`timed out waiting for ${what} on ${name}: ${JSON.stringify(info)}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  async logLines(): Promise<Array<Record<string, unknown>>> {
    const text = await fs.readFile(this.log, 'utf8').catch(() => '');
    return text
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  /** Even after a failed test: kill daemons, stop the kernel (SIGKILL if it hangs), force-unmount, remove the directory. */
  async dispose(): Promise<void> {
    for (const daemon of this.daemons) daemon.signal('SIGKILL');
    await this.kernel.stop('SIGTERM', 10_000);
    await Promise.all(this.daemons.map((d) => d.exited));
    await forceUnmountUnder(this.dir);
    await fs.rm(this.dir, { recursive: true, force: true });
  }
}

/** `dd` reading `count` blocks of `bs` from `file` with O_DIRECT; the data goes to `out` (or is dropped). */
export function ddRead(file: string, opts: { bs: number; skip?: number; count?: number; out?: string }): Promise<RunResult> {
  const args = [`if=${file}`, `of=${opts.out ?? '/dev/null'}`, `bs=${opts.bs}`, 'iflag=direct', 'status=none'];
  if (opts.skip !== undefined) args.push(`skip=${opts.skip}`);
  if (opts.count !== undefined) args.push(`count=${opts.count}`);
  return run('dd', args, { timeoutMs: 60_000 });
}
