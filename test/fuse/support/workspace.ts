import { randomBytes } from 'crypto';
import { promises as fsp } from 'fs';
import os from 'os';
import path from 'path';
import { forceUnmountUnder } from '../../../src/fuse/cleanup';
import { run, RunResult } from '../../../src/util/exec';
import type { FuseServerProcess } from './child';
import type { ServedFile } from './server';

/** A temporary directory holding backing files and mountpoints; `dispose` tears down whatever is left. */
export class Workspace {
  readonly servers: FuseServerProcess[] = [];

  private constructor(readonly dir: string) {}

  static async create(): Promise<Workspace> {
    return new Workspace(await fsp.mkdtemp(path.join(os.tmpdir(), 'vab-fuse-')));
  }

  /** A backing file of random content, returned with its bytes for later comparison. */
  async backing(name: string, size: number, spec: Omit<ServedFile, 'name' | 'backing'>): Promise<{ file: ServedFile; content: Buffer }> {
    const content = randomBytes(size);
    const backing = path.join(this.dir, `${name}.img`);
    await fsp.writeFile(backing, content);
    return { file: { name, backing, ...spec }, content };
  }

  async mountpoint(name: string): Promise<string> {
    const dir = path.join(this.dir, name);
    await fsp.mkdir(dir);
    return dir;
  }

  /**
   * Even after a failed test: stop servers still running (killing those that do not stop), abort and detach every FUSE mount left
   * below the workspace, then remove it.
   */
  async dispose(): Promise<void> {
    await Promise.all(
      this.servers.map(async (server) => {
        if ((await within(server.stop(), 5_000, 'hung')) === 'hung') server.child.signal('SIGKILL');
      }),
    );
    await forceUnmountUnder(this.dir);
    await Promise.all(this.servers.map((s) => s.exited));
    await fsp.rm(this.dir, { recursive: true, force: true });
  }
}

/** Runs a shell snippet in a child process (the only way this test process touches a mount). */
export function sh(script: string, timeoutMs = 20_000): Promise<RunResult> {
  return run('sh', ['-c', script], { timeoutMs });
}

export async function isMounted(mountpoint: string): Promise<boolean> {
  const mounts = await fsp.readFile('/proc/mounts', 'utf8');
  return mounts.split('\n').some((line) => line.split(' ')[1] === mountpoint);
}

/** The promise's value, or `fallback` once `ms` have passed (the timer never outlives the race). */
export async function within<T, F>(promise: Promise<T>, ms: number, fallback: F): Promise<T | F> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<F>((resolve) => (timer = setTimeout(() => resolve(fallback), ms)));
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
