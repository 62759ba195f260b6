import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { forceUnmountUnder } from '../../fuse/cleanup';
import { VabError } from '../../util/errors';
import { ChildHandle, run, start } from '../../util/exec';
import { builtModule } from '../../util/package-root';
import { VAB_BIN, dmctl, spawnKernel, spawnVab, vab } from '../vab-processes';
import { Rng } from './rng';

/** Extra `vab kernel` flags from the environment: how a test hands the runner a broken kernel. */
export const KERNEL_ARGS_ENV = 'VAB_CRASHTEST_KERNEL_ARGS';

const READER = builtModule('ota/crashtest/reader-child.js');

/** A reader child and what it reported (see reader-child.ts). */
export class Reader {
  constructor(readonly child: ChildHandle) {}

  events(kind: string): Array<{ args: string[]; at: number }> {
    return this.child.lines
      .map((l) => l.split(' '))
      .filter((p) => p[0] === kind)
      .map((p) => ({ args: p.slice(1, -1), at: Number(p[p.length - 1]) }));
  }

  get goodReads(): number {
    const oks = this.events('ok');
    return oks.length > 0 ? Number(oks[oks.length - 1].args[0]) : 0;
  }

  firstError(): { code: string; at: number } | undefined {
    const e = this.events('error')[0];
    return e && { code: e.args[0], at: e.at };
  }

  mismatches(): number {
    return this.events('mismatch').length;
  }

  /** Waits until `n` good reads were reported. */
  async waitForReads(n: number, timeoutMs: number): Promise<void> {
    await this.child.waitForLine((line) => line.startsWith('ok ') && Number(line.split(' ')[1]) >= n, timeoutMs);
  }
}

/**
 * One round's world: a temporary directory with a base image, its new content and a COW between
 * them, a `vab kernel`, and whatever daemons and readers the scenario starts. `dispose` undoes it
 * all, also after a failure: children killed, the FUSE connection aborted so no reader is left in
 * uninterruptible sleep, the directory removed unless kept.
 */
export class World {
  readonly children: ChildHandle[] = [];
  /** Children that lead a process group (vab boot and the kernel and daemons it starts). */
  readonly groups: ChildHandle[] = [];
  kernel?: ChildHandle;

  private constructor(
    readonly dir: string,
    readonly rng: Rng,
  ) {}

  static async create(label: string, rng: Rng): Promise<World> {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), `vab-crashtest-${label}-`));
    return new World(dir, rng);
  }

  get mount(): string {
    return path.join(this.dir, 'mnt');
  }

  get run(): string {
    return path.join(this.dir, 'run');
  }

  path(name: string): string {
    return path.join(this.dir, name);
  }

  async startKernel(flags: { daemonTimeoutMs: number; restartGraceMs?: number }): Promise<void> {
    const extra = (process.env[KERNEL_ARGS_ENV] ?? '').split(/\s+/).filter(Boolean);
    this.kernel = await spawnKernel({ mount: this.mount, run: this.run, daemonTimeoutMs: flags.daemonTimeoutMs, restartGraceMs: flags.restartGraceMs ?? 0, logFile: this.path('kernel.log'), extraArgs: extra });
    this.children.push(this.kernel);
  }

  /**
   * base.img (random) and new.img (about a third of its blocks changed: some rewritten, some
   * copied from elsewhere, some zeroed) and their COW, base.cow (zstd, xor ops).
   */
  async makeSnapshot(bytes: number): Promise<{ base: string; target: string; cow: string }> {
    const block = 4096;
    const base = Buffer.alloc(bytes);
    for (let at = 0; at < bytes; at += 32) createHash('sha256').update(`${this.rng.next()}:${at}`).digest().copy(base, at);
    const target = Buffer.from(base);
    const blocks = bytes / block;
    for (let b = 0; b < blocks; b++) {
      const roll = this.rng.next();
      if (roll < 0.15) createHash('sha256').update(`new:${b}`).digest().copy(target, b * block + this.rng.int(0, block - 32));
      else if (roll < 0.25) base.copy(target, b * block, this.rng.int(0, blocks - 1) * block, this.rng.int(0, blocks - 1) * block + block);
      else if (roll < 0.3) target.fill(0, b * block, b * block + block);
    }
    const files = { base: this.path('base.img'), target: this.path('new.img'), cow: this.path('base.cow') };
    await fs.writeFile(files.base, base);
    await fs.writeFile(files.target, target);
    await vab(['cow', 'create', '--base', files.base, '--target', files.target, '-o', files.cow, '--compression', 'zstd', '--xor'], 60_000);
    return files;
  }

  async createTarget(name: string, size: number): Promise<string> {
    await dmctl(this.run, ['create', name, '--size', String(size)]);
    return path.join(this.mount, name);
  }

  /** `vab snapuserd --no-socket` serving one handler; resolves once it serves. */
  async startDaemon(misc: string, snap: { base: string; cow: string }): Promise<ChildHandle> {
    const daemon = spawnVab(['snapuserd', '--run', this.run, '--no-socket', `${misc},${snap.cow},${snap.base},${snap.base}`, '--log', this.path(`snapuserd-${this.children.length}.log`)], `vab snapuserd ${misc}`);
    this.children.push(daemon);
    await daemon.waitForLine(/^vab snapuserd: ready/, 15_000).catch(async (err) => {
      daemon.signal('SIGKILL');
      throw err;
    });
    return daemon;
  }

  /** `vab snapuserd` with its control socket; resolves once it listens. */
  async startSocketDaemon(): Promise<ChildHandle> {
    const daemon = spawnVab(['snapuserd', '--run', this.run, '--log', this.path(`snapuserd-${this.children.length}.log`)], 'vab snapuserd');
    this.children.push(daemon);
    await daemon.waitForLine(/^vab snapuserd: ready/, 15_000).catch(async (err) => {
      daemon.signal('SIGKILL');
      throw err;
    });
    return daemon;
  }

  /** One snapuserd control command through `vab snapctl`; its reply. */
  async snapctl(command: string): Promise<string> {
    const r = await run(process.execPath, [VAB_BIN, 'snapctl', '--run', this.run, command], { timeoutMs: 30_000 });
    return r.stdout.trim();
  }

  startReader(file: string, expected: string, opts: { mode: 'seq' | 'random'; count: number; stopOnError: boolean; block?: number }): Reader {
    const args = [READER, file, expected, opts.mode, String(this.rng.int(1, 2 ** 31)), String(opts.block ?? 4096), String(opts.count), opts.stopOnError ? 'stop-on-error' : 'go-on'];
    const child = start(process.execPath, args, { label: 'crashtest reader' });
    this.children.push(child);
    return new Reader(child);
  }

  /** Resolves with the reader's exit, or fails when it is still running after `ms` (a hang). */
  async readerEnds(reader: Reader, ms: number, what: string): Promise<void> {
    const timer = new Promise<'hang'>((resolve) => setTimeout(() => resolve('hang'), ms).unref());
    const outcome = await Promise.race([reader.child.exited.then(() => 'exited' as const), timer]);
    if (outcome === 'hang') throw new VabError('ETIMEDOUT', `${what}: a reader was still blocked ${ms} ms later (an IO hangs)`);
  }

  async dispose(keep: boolean): Promise<void> {
    // A vab boot stops its daemon and kernel and unmounts on SIGTERM; the group kill takes the rest.
    for (const group of this.groups) if (group.running) await group.stop('SIGTERM', 5_000);
    for (const group of this.groups) group.signalGroup('SIGKILL');
    for (const child of this.children) if (child !== this.kernel) child.signal('SIGKILL');
    // Stuck readers only leave once the FUSE connection is aborted: unmount before waiting on them.
    if (this.kernel) await this.kernel.stop('SIGTERM', 5_000);
    await forceUnmountUnder(this.dir);
    await Promise.all(this.children.map((c) => c.exited));
    if (!keep) await fs.rm(this.dir, { recursive: true, force: true });
  }
}
