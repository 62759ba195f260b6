import { promises as fs } from 'node:fs';
import { errnoCode, VabError } from '../util/errors';
import { run, RunResult } from '../util/exec';
import type { Logger } from '../util/log';
import { nullLogger } from '../util/log';

/*
 * Superblock magics, both little-endian and both in a superblock that starts 1024 bytes into the
 * device: erofs puts its u32 magic first (EROFS_SUPER_OFFSET 1024), ext2/3/4 keep s_magic at 0x38
 * inside theirs (update_engine reads the same superblock at 0x400 + 0x34 for the mount count).
 */
const EROFS_MAGIC_OFFSET = 1024;
const EROFS_MAGIC = 0xe0f5e1e2;
const EXT_MAGIC_OFFSET = 1024 + 0x38;
const EXT_MAGIC = 0xef53;

const COMMAND_TIMEOUT_MS = 30_000;

/**
 * mount(2) called directly: util-linux mount (2.38 here) turns every regular-file source of a type
 * blkid knows into a loop device, so it cannot ask for erofs's file-backed mode (Linux 6.12+).
 * Syscall numbers by architecture; elsewhere erofs goes through a loop device like ext4.
 */
const MOUNT_SYSCALL: Partial<Record<string, number>> = { x64: 165, arm64: 40, riscv64: 40 };
const MS_RDONLY = 1;
const PERL_MOUNT = 'my ($nr, $src, $dst, $type, $flags) = @ARGV; syscall($nr + 0, $src, $dst, $type, $flags + 0, 0) == 0 or die "$!\\n";';

export type Probed = 'erofs' | 'ext4';

/** The filesystem in `file` by its superblock magic, or undefined. */
export async function probeFilesystem(file: string): Promise<Probed | undefined> {
  const head = Buffer.alloc(EXT_MAGIC_OFFSET + 2);
  const handle = await fs.open(file, 'r');
  try {
    const { bytesRead } = await handle.read(head, 0, head.length, 0);
    if (bytesRead >= EROFS_MAGIC_OFFSET + 4 && head.readUInt32LE(EROFS_MAGIC_OFFSET) === EROFS_MAGIC) return 'erofs';
    // ext2 and ext3 share the magic; the ext4 driver mounts all three.
    if (bytesRead >= EXT_MAGIC_OFFSET + 2 && head.readUInt16LE(EXT_MAGIC_OFFSET) === EXT_MAGIC) return 'ext4';
    return undefined;
  } finally {
    await handle.close();
  }
}

export interface ReadOnlyMount {
  mountpoint: string;
  fstype: string;
  /** The loop device under the mount, when one was needed. */
  loopDevice?: string;
  /** How it was mounted, for logs: 'file' (erofs file-backed) or 'loop'. */
  via: 'file' | 'loop';
}

/**
 * Mounts `source` (a block file or image) read-only on the existing empty directory `mountpoint`.
 * On failure nothing is left behind: no mount, no loop device.
 */
export async function mountReadOnly(
  source: string,
  mountpoint: string,
  fstype: string,
  log: Logger = nullLogger,
  options: { erofsFileBacked?: boolean } = {},
): Promise<ReadOnlyMount> {
  let fileError = '';
  if (fstype === 'erofs' && (options.erofsFileBacked ?? true)) {
    fileError = await mountFileBacked(source, mountpoint, fstype);
    if (fileError === '') return { mountpoint, fstype, via: 'file' };
    log.info('file-backed erofs mount failed, using a loop device', { source, reason: fileError });
  }
  const attach = await run('losetup', ['-r', '-f', '--show', source], { timeoutMs: COMMAND_TIMEOUT_MS });
  if (attach.code !== 0) throw mountError(source, fstype, `losetup -r failed: ${why(attach)}`, fileError);
  const loopDevice = attach.stdout.trim();
  const mounted = await run('mount', ['-t', fstype, '-o', 'ro', loopDevice, mountpoint], { timeoutMs: COMMAND_TIMEOUT_MS });
  if (mounted.code !== 0) {
    await detachLoop(loopDevice, log);
    throw mountError(source, fstype, `mount of ${loopDevice} failed: ${why(mounted)}`, fileError);
  }
  return { mountpoint, fstype, loopDevice, via: 'loop' };
}

/**
 * Undoes `mountReadOnly`. A busy mount is retried (a killed program's files close as it dies),
 * then detached lazily so nothing stays mounted; the loop device is detached either way (the
 * kernel defers that until a lazy unmount lets go). Returns what went wrong, or '' when clean.
 */
export async function unmountReadOnly(mount: ReadOnlyMount, log: Logger = nullLogger): Promise<string> {
  let problem = '';
  for (let attempt = 0; ; attempt++) {
    const result = await run('umount', [mount.mountpoint], { timeoutMs: COMMAND_TIMEOUT_MS }).catch((err: Error) => err);
    if (!(result instanceof Error) && result.code === 0) break;
    const reason = result instanceof Error ? result.message : why(result);
    if (!/busy/i.test(reason) || attempt >= 20) {
      const lazy = await run('umount', ['-l', mount.mountpoint], { timeoutMs: COMMAND_TIMEOUT_MS }).catch((err: Error) => err);
      const lazyOk = !(lazy instanceof Error) && lazy.code === 0;
      problem = `umount ${mount.mountpoint} failed (${reason})${lazyOk ? '; detached lazily' : ''}`;
      log.warn('postinstall unmount was not clean', { mountpoint: mount.mountpoint, reason, lazyOk });
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  if (mount.loopDevice) {
    const loopProblem = await detachLoop(mount.loopDevice, log);
    if (loopProblem) problem = problem ? `${problem}; ${loopProblem}` : loopProblem;
  }
  return problem;
}

async function mountFileBacked(source: string, mountpoint: string, fstype: string): Promise<string> {
  const nr = MOUNT_SYSCALL[process.arch];
  if (nr === undefined) return `no mount(2) syscall number for ${process.arch}`;
  const args = ['-e', PERL_MOUNT, String(nr), source, mountpoint, fstype, String(MS_RDONLY)];
  const result = await run('perl', args, { timeoutMs: COMMAND_TIMEOUT_MS }).catch((err: Error) => err);
  if (result instanceof Error) return result.message;
  return result.code === 0 ? '' : why(result);
}

async function detachLoop(loopDevice: string, log: Logger): Promise<string> {
  const result = await run('losetup', ['-d', loopDevice], { timeoutMs: COMMAND_TIMEOUT_MS }).catch((err: Error) => err);
  if (!(result instanceof Error) && result.code === 0) return '';
  const reason = result instanceof Error ? result.message : why(result);
  log.warn('loop device not detached', { loopDevice, reason });
  return `losetup -d ${loopDevice} failed (${reason})`;
}

function why(result: RunResult): string {
  return result.timedOut ? 'timed out' : result.stderr.trim() || `exit ${result.code}`;
}

function mountError(source: string, fstype: string, reason: string, fileError: string): VabError {
  const also = fileError ? ` (file-backed mount failed first: ${fileError})` : '';
  const code = /input\/output error|\bEIO\b/i.test(reason + fileError) ? 'EIO' : 'ESTATE';
  return new VabError(code, `cannot mount read-only as ${fstype}: ${reason}${also}`, { file: source });
}

/** The probe's error for a source that cannot be read at all. */
export function probeError(source: string, err: unknown): VabError {
  const code = errnoCode(err) === 'ENOENT' ? 'ENOTFOUND' : 'EIO';
  return new VabError(code, `cannot read the superblock: ${(err as Error).message}`, { file: source, offset: 0, cause: err });
}
