import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { forceUnmountUnder } from '../fuse';
import { VabError } from '../util/errors';
import { PACKAGE_ROOT } from '../util/package-root';
import { ChildHandle, run, runChecked } from '../util/exec';
import { dmctl, spawnKernel, spawnPassthrough } from './vab-processes';
import { sha256File } from '../util/file-hash';


/**
 * `npm start` for now: the dm-user runtime end to end, narrated on stdout. A filesystem image is
 * served through `vab kernel` and the passthrough daemon, mounted and run from; then the daemon is
 * killed to show that IO fails within its bound instead of hanging; then, in supervised mode, the
 * daemon is killed and restarted under a running read that finishes with no error.
 */
export interface RuntimeDemoOptions {
  /** Where to work; a fresh temporary directory by default (removed afterwards). */
  workDir?: string;
  daemonTimeoutMs?: number;
  restartGraceMs?: number;
  print?: (line: string) => void;
}

const MiB = 1024 * 1024;
/** How long the supervised part leaves the target without a daemon before restarting one. */
const RESTART_DELAY_MS = 500;

export async function runRuntimeDemo(options: RuntimeDemoOptions = {}): Promise<void> {
  const print = options.print ?? ((line: string) => process.stdout.write(`${line}\n`));
  const daemonTimeoutMs = options.daemonTimeoutMs ?? 2000;
  const restartGraceMs = options.restartGraceMs ?? 5000;
  const work = options.workDir ?? (await fsp.mkdtemp(path.join(os.tmpdir(), 'vab-demo-')));
  const dirs = { mount: path.join(work, 'blocks'), run: path.join(work, 'run'), fs: path.join(work, 'system'), fixtures: path.join(work, 'fixtures') };
  const children: ChildHandle[] = [];
  let fsMounted = false;
  try {
    await fsp.mkdir(dirs.fs, { recursive: true });
    print(`work directory: ${work}`);
    await runChecked('bash', [path.join(PACKAGE_ROOT, 'scripts/make-fixtures.sh'), dirs.fixtures]);
    const systemImage = path.join(work, 'system.img');
    await fsp.copyFile(path.join(dirs.fixtures, 'system.erofs'), systemImage);
    const systemSize = (await fsp.stat(systemImage)).size;

    print(`\n== 1. a dm-user target served by a daemon`);
    const kernel = await spawnKernel({ mount: dirs.mount, run: dirs.run, daemonTimeoutMs, logFile: path.join(work, 'kernel.log') });
    children.push(kernel);
    print(`vab kernel is up: block files in ${dirs.mount}, dm-user endpoints in ${dirs.run}/dm-user`);
    await dmctl(dirs.run, ['create', 'system', '--size', String(systemSize)]);
    const daemon = await spawnPassthrough(dirs.run, 'system', systemImage);
    children.push(daemon);
    print(`target "system" (${systemSize} bytes, an erofs image) is served by vab passthrough (pid ${daemon.pid})`);

    await runChecked('mount', ['-t', 'erofs', '-o', 'ro', path.join(dirs.mount, 'system'), dirs.fs]);
    fsMounted = true;
    const hello = await runChecked(path.join(dirs.fs, 'bin/hello'), []);
    print(`mounted ${dirs.mount}/system on ${dirs.fs}; running bin/hello from it says: ${hello.stdout.trim()}`);
    const served = await sha256File(path.join(dirs.fs, 'share/pattern.bin'));
    await runChecked('umount', [dirs.fs]);
    fsMounted = false;
    // The same file read from the image without vab in the way: the two must agree.
    await runChecked('mount', ['-t', 'erofs', '-o', 'ro', systemImage, dirs.fs]);
    fsMounted = true;
    const direct = await sha256File(path.join(dirs.fs, 'share/pattern.bin'));
    await runChecked('umount', [dirs.fs]);
    fsMounted = false;
    if (served !== direct) throw new VabError('EIO', `share/pattern.bin differs through vab: sha256 ${served} vs ${direct}`);
    print(`share/pattern.bin read through the daemon is byte-identical to the image's (sha256 ${served.slice(0, 16)}...)`);

    print(`\n== 2. the daemon dies: IO fails with EIO at once, it never hangs`);
    await daemon.stop('SIGKILL');
    const failed = await timedRead(path.join(dirs.mount, 'system'));
    print(`killed the daemon (SIGKILL); a read of the block file then ${failed.outcome} after ${failed.ms.toFixed(0)} ms`);
    await dmctl(dirs.run, ['create', 'orphan', '--size', String(MiB)]);
    const orphan = await timedRead(path.join(dirs.mount, 'orphan'));
    print(`a new target that never had a daemon: the read waited ${orphan.ms.toFixed(0)} ms (daemon_timeout_ms ${daemonTimeoutMs}), then ${orphan.outcome}`);

    print(`\n== 3. supervised mode: restart_grace_ms ${restartGraceMs}, the daemon restarts under a running read`);
    await dmctl(dirs.run, ['set', 'restart_grace_ms', String(restartGraceMs)]);
    const dataImage = path.join(work, 'data.img');
    await fsp.writeFile(dataImage, randomBytes(64 * MiB));
    await dmctl(dirs.run, ['create', 'data', '--size', String(64 * MiB)]);
    let current = await spawnPassthrough(dirs.run, 'data', dataImage);
    children.push(current);
    // Small reads keep dd busy long enough for the kill to land in the middle of it.
    let readDone = false;
    const reading = run('bash', ['-c', `dd if=${path.join(dirs.mount, 'data')} bs=8k iflag=direct status=none | sha256sum`], { timeoutMs: 120_000 });
    void reading.then(() => (readDone = true));
    await sleep(300);
    await current.stop('SIGKILL');
    print(`killed the daemon (SIGKILL) ${readDone ? 'after dd had finished (machine too fast for this demo)' : 'while dd was reading the 64 MiB target'}`);
    await sleep(RESTART_DELAY_MS);
    current = await spawnPassthrough(dirs.run, 'data', dataImage);
    children.push(current);
    print(`started a new daemon (pid ${current.pid}) ${RESTART_DELAY_MS} ms later`);
    const result = await reading;
    const expected = await sha256File(dataImage);
    const got = result.stdout.split(/\s+/)[0];
    if (result.code !== 0 || got !== expected) {
      throw new VabError('EIO', `supervised restart lost data: dd exited ${result.code} (${result.stderr.trim()}), sha256 ${got} vs ${expected}`);
    }
    print(`dd finished with no error; the data it read is byte-identical to the image (sha256 ${got.slice(0, 16)}...)`);
    print(`\ndemo complete`);
  } finally {
    if (fsMounted) await run('umount', ['-l', dirs.fs]);
    for (const child of children.reverse()) await child.stop();
    await forceUnmountUnder(work);
    if (!options.workDir) await fsp.rm(work, { recursive: true, force: true });
  }
}

async function timedRead(file: string): Promise<{ ms: number; outcome: string }> {
  const result = await run('dd', [`if=${file}`, 'of=/dev/null', 'bs=4096', 'count=1', 'iflag=direct', 'status=none'], { timeoutMs: 60_000 });
  const outcome = result.code === 0 ? 'succeeded' : `failed: ${result.stderr.trim().replace(/^dd: /, '')}`;
  return { ms: result.elapsedMs, outcome };
}


const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
