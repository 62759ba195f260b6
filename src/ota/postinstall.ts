import { promises as fs } from 'node:fs';
import path from 'node:path';
import { errnoCode, isVabError, VabError, VabErrorCode } from '../util/errors';
import { ChildHandle, Exit, start } from '../util/exec';
import type { Logger } from '../util/log';
import { nullLogger } from '../util/log';
import { containedPath, isInside } from '../util/names';
import { mountReadOnly, probeError, probeFilesystem, ReadOnlyMount, unmountReadOnly } from './mount-readonly';
import { PostinstallEvent, ProgressLineReader } from './postinstall-progress';

/**
 * Android's post-install step (update_engine's PostinstallRunnerAction): for each partition, mount
 * its new content read-only, run a program from it with the target slot, read its progress from
 * fd 3, and undo the mount whatever happens.
 */

/** update_engine's default when the manifest sets run_postinstall without a path. */
export const DEFAULT_POSTINSTALL_PATH = 'postinst';

/** update_engine's kPostinstallStatusFd: the child's descriptor for progress lines. */
const STATUS_FD = 3;

/** The program and its descendants get this long after SIGTERM before SIGKILL. */
const DEFAULT_KILL_GRACE_MS = 2_000;

/** How long killed descendants may take to disappear before the unmount is tried anyway. */
const GROUP_EXIT_WAIT_MS = 5_000;

/** The program's output kept for the error message and the log. */
const OUTPUT_KEPT = 64 * 1024;

export interface PostinstallPartition {
  name: string;
  /** A block file or image holding the partition's new content. */
  blockFile: string;
  /** Relative to the filesystem root; default `postinst`. */
  postinstallPath?: string;
  /** mount(2) type; '' or absent: probed from the superblock (erofs or ext2/3/4). */
  filesystemType?: string;
  /** A failure of this partition's program is logged and ignored (postinstall_optional). */
  optional?: boolean;
}

export interface PostinstallOptions {
  /** The slot being updated, passed as argv[1] (Android passes the slot number). */
  targetSlot: number;
  /** Per partition: a program still running after this long is killed with its process group. */
  timeoutMs: number;
  /** Fresh mount points are made under this directory (created when missing). */
  mountRoot: string;
  onProgress?: (event: PostinstallEvent) => void;
  /** Stops the running program, undoes the mount and rejects (the CLI hooks SIGINT/SIGTERM here). */
  signal?: AbortSignal;
  log?: Logger;
  killGraceMs?: number;
}

export interface PartitionResult {
  name: string;
  ok: boolean;
  optional: boolean;
  exit: Exit;
  elapsedMs: number;
}

/** A partition's post-install failed: which one, how, and whether an IO error was behind it. */
export class PostinstallError extends VabError {
  constructor(
    code: VabErrorCode,
    readonly partition: string,
    message: string,
    readonly details: {
      exit?: Exit;
      /** An IO error (EIO) reading the partition was behind it. */
      ioError?: boolean;
      /** Not excused by postinstall_optional: a refused path, or the run was aborted. */
      fatal?: boolean;
      cause?: unknown;
    } = {},
  ) {
    super(code, `post-install of ${partition}: ${message}`, details.cause === undefined ? undefined : { cause: details.cause });
  }
}

/** Runs every partition's post-install in order; stops at the first failure that is not optional. */
export async function runPostinstall(partitions: readonly PostinstallPartition[], options: PostinstallOptions): Promise<PartitionResult[]> {
  if (!Number.isInteger(options.targetSlot) || options.targetSlot < 0) {
    throw new VabError('EINVAL_INPUT', `target slot must be a slot number, got ${options.targetSlot}`);
  }
  await fs.mkdir(options.mountRoot, { recursive: true });
  const results: PartitionResult[] = [];
  for (const [index, partition] of partitions.entries()) {
    throwIfAborted(options.signal, partition.name);
    const result = await runPartition(partition, index, partitions.length, options);
    results.push(result);
  }
  return results;
}

async function runPartition(partition: PostinstallPartition, index: number, count: number, options: PostinstallOptions): Promise<PartitionResult> {
  const log = options.log ?? nullLogger;
  const { name } = partition;
  if (!/^[A-Za-z0-9_.-]+$/.test(name) || name === '.' || name === '..') {
    throw new VabError('EINVAL_INPUT', `partition name ${JSON.stringify(name)} is not a plain name`);
  }
  const optional = partition.optional ?? false;
  const relative = partition.postinstallPath || DEFAULT_POSTINSTALL_PATH;
  const mountpoint = await fs.mkdtemp(path.join(options.mountRoot, `${name}-`));
  const began = performance.now();
  let mount: ReadOnlyMount | undefined;
  let failure: PostinstallError | undefined;
  let exit: Exit = { code: null, signal: null };
  const report = (event: PostinstallEvent): void => options.onProgress?.(event);
  try {
    // update_engine counts a mount failure as the partition's failure (optional ones go on).
    const fstype = partition.filesystemType || (await probe(partition));
    mount = await mountReadOnly(partition.blockFile, mountpoint, fstype, log).catch((err: unknown) => {
      const io = isVabError(err, 'EIO');
      throw new PostinstallError(io ? 'EIO' : 'ESTATE', name, (err as Error).message, { ioError: io, cause: err });
    });
    log.info('postinstall mounted', { partition: name, fstype, via: mount.via, loopDevice: mount.loopDevice, mountpoint });
    report({ event: 'start', partition: name, index, count, fstype, mountedVia: mount.via, overall: index / count });
    throwIfAborted(options.signal, name);
    const program = await resolveProgram(name, mountpoint, relative);
    exit = await runProgram(name, program, index, count, options, report);
  } catch (err) {
    if (!(err instanceof PostinstallError) || err.details.fatal) throw await cleanup(err);
    failure = err;
    exit = err.details.exit ?? exit;
  }
  const problem = await cleanup(undefined);
  if (problem) throw problem;
  const elapsedMs = performance.now() - began;
  if (failure && !optional) {
    report({ event: 'done', partition: name, status: 'failed', code: exit.code, signal: exit.signal, elapsedMs, overall: index / count });
    log.error('postinstall failed', { partition: name, error: failure.message });
    throw failure;
  }
  if (failure) log.warn('optional postinstall failed, ignored', { partition: name, error: failure.message });
  report({ event: 'done', partition: name, status: failure ? 'failed-optional' : 'ok', code: exit.code, signal: exit.signal, elapsedMs, overall: (index + 1) / count });
  return { name, ok: !failure, optional, exit, elapsedMs };

  /** Unmounts and removes the mount point; returns the error to throw (the original one first). */
  async function cleanup(original: unknown): Promise<unknown> {
    const unclean = mount ? await unmountReadOnly(mount, log) : '';
    mount = undefined;
    if (!unclean) await fs.rmdir(mountpoint).catch((err: Error) => log.warn('mount point not removed', { mountpoint, reason: err.message }));
    if (original !== undefined) return original;
    return unclean ? new PostinstallError('EIO', name, `the read-only mount was not undone cleanly: ${unclean}`) : undefined;
  }
}

async function probe(partition: PostinstallPartition): Promise<string> {
  const found = await probeFilesystem(partition.blockFile).catch((err: unknown) => {
    const cause = probeError(partition.blockFile, err);
    throw new PostinstallError(cause.code, partition.name, cause.message, { ioError: cause.code === 'EIO', cause });
  });
  if (!found) {
    const where = `${partition.blockFile} at offset 1024`;
    throw new PostinstallError('EUNSUPPORTED', partition.name, `${where}: no erofs or ext2/3/4 superblock (set filesystem_type)`);
  }
  return found;
}

/** `<mountpoint>/<relative>`, refused unless it and whatever its symlinks lead to stay inside. */
async function resolveProgram(name: string, mountpoint: string, relative: string): Promise<string> {
  let program: string;
  try {
    program = containedPath(mountpoint, relative);
  } catch (err) {
    // A refused path is a broken payload, not a failed program: optional does not excuse it.
    throw new PostinstallError('EINVAL_INPUT', name, `postinstall_path refused: ${(err as Error).message}`, { fatal: true });
  }
  const root = await fs.realpath(mountpoint);
  const real = await fs.realpath(program).catch((err: unknown) => {
    const code = errnoCode(err);
    const io = code === 'EIO';
    throw new PostinstallError(io ? 'EIO' : 'ESTATE', name, `cannot resolve ${relative}: ${(err as Error).message}`, { ioError: io, cause: err });
  });
  if (!isInside(root, real)) {
    throw new PostinstallError('EINVAL_INPUT', name, `postinstall_path refused: ${relative} leads to ${real}, outside the partition`, { fatal: true });
  }
  return program;
}

async function runProgram(
  name: string,
  program: string,
  index: number,
  count: number,
  options: PostinstallOptions,
  report: (event: PostinstallEvent) => void,
): Promise<Exit> {
  const log = options.log ?? nullLogger;
  const child = start(program, [String(options.targetSlot), String(STATUS_FD)], {
    extraFds: ['pipe'],
    newProcessGroup: true,
    cwd: '/',
    label: `post-install program of ${name}`,
    maxOutput: OUTPUT_KEPT,
  });
  const reader = new ProgressLineReader((fraction) => report({ event: 'progress', partition: name, fraction, overall: (index + fraction) / count }), log, name);
  if (!child.startError && child.pid > 0) {
    // Background jobs the program leaves behind die with it: they would keep the mount busy.
    child.child.once('exit', () => signalGroup(child, 'SIGKILL'));
    const status = child.fd(STATUS_FD);
    status.setEncoding('utf8');
    status.on('data', (text: string) => reader.push(text));
    status.on('end', () => reader.end());
    status.on('error', (err: Error) => log.warn('postinstall status pipe failed', { partition: name, reason: err.message }));
  }
  let stopping: 'timeout' | 'abort' | undefined;
  let escalation: NodeJS.Timeout | undefined;
  const stop = (why: 'timeout' | 'abort'): void => {
    if (stopping || !child.running) return;
    stopping = why;
    log.warn('stopping postinstall program', { partition: name, why });
    signalGroup(child, 'SIGTERM');
    escalation = setTimeout(() => signalGroup(child, 'SIGKILL'), options.killGraceMs ?? DEFAULT_KILL_GRACE_MS);
  };
  const timer = setTimeout(() => stop('timeout'), options.timeoutMs);
  const onAbort = (): void => stop('abort');
  options.signal?.addEventListener('abort', onAbort);
  let exit: Exit;
  try {
    exit = await child.exited;
  } finally {
    clearTimeout(timer);
    clearTimeout(escalation);
    options.signal?.removeEventListener('abort', onAbort);
    await killGroup(child);
  }
  const output = `${child.stdout}${child.stderr}`.trim();
  log.info('postinstall program finished', { partition: name, ...exit, output: output.slice(-4000) });
  if (child.startError) {
    const io = errnoCode(child.startError) === 'EIO';
    throw new PostinstallError(io ? 'EIO' : 'ESTATE', name, `cannot start ${program}: ${child.startError.message}`, { exit, ioError: io, cause: child.startError });
  }
  if (stopping === 'abort') throw abortError(name);
  if (stopping === 'timeout') {
    throw new PostinstallError('ETIMEDOUT', name, `${program} still ran after ${options.timeoutMs} ms and was killed with its process group`, { exit });
  }
  if (exit.code === 0) return exit;
  // The program's own report of an IO error (EIO reading its files from the partition).
  const io = /input\/output error|\bEIO\b/i.test(output);
  const how = exit.signal ? `was killed by ${exit.signal}` : `exited with ${exit.code}`;
  const what = io ? `${program} hit an IO error reading the partition and ${how}` : `${program} ${how}`;
  throw new PostinstallError(io ? 'EIO' : 'ESTATE', name, `${what}${output ? `: ${output.slice(-2000)}` : ''}`, { exit, ioError: io });
}

function signalGroup(child: ChildHandle, signal: NodeJS.Signals): boolean {
  try {
    return child.signalGroup(signal);
  } catch {
    return false;
  }
}

/** SIGKILLs the program's process group and waits (bounded) until nothing of it is left. */
async function killGroup(child: ChildHandle): Promise<void> {
  const deadline = Date.now() + GROUP_EXIT_WAIT_MS;
  while (signalGroup(child, 'SIGKILL') && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function abortError(partition: string): PostinstallError {
  return new PostinstallError('ESTATE', partition, 'aborted', { fatal: true });
}

function throwIfAborted(signal: AbortSignal | undefined, partition: string): void {
  if (signal?.aborted) throw abortError(partition);
}
