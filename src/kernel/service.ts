import { promises as fs } from 'node:fs';
import path from 'node:path';
import { sharedMemoryProblem } from '../dmuser/shared-memory';
import { forceUnmount } from '../fuse/cleanup';
import { readMountInfo } from '../fuse/mount';
import { mountBlockFiles } from '../fuse';
import type { FuseSession } from '../fuse/types';
import { VabError, errnoCode } from '../util/errors';
import type { Logger } from '../util/log';
import { startControlServer } from './control';
import { kernelIsRunning } from './control-client';
import { Kernel } from './kernel';
import { KernelParams, resolveParams } from './params';
import { ensurePrivateRunDir, makePrivateDir } from '../util/private-socket';

export interface KernelServiceOptions {
  /** Where the block files appear (created if missing). */
  mountDir: string;
  /** Holds kernel.sock and dm-user/<name> (created if missing). */
  runDir: string;
  params?: Partial<KernelParams>;
  /** Keep the page cache (no FOPEN_DIRECT_IO). Default: every IO reaches the target. */
  pageCache?: boolean;
  /** A group whose members may read (never write) the block files: mode 0640 instead of 0600. */
  readerGid?: number;
  logger: Logger;
}

export interface KernelService {
  readonly kernel: Kernel;
  readonly mountDir: string;
  readonly runDir: string;
  /** Fails what is queued or held, unmounts, closes the sockets. Idempotent. */
  stop(): Promise<void>;
  /** Settles when the service stopped, or when the mount went away under it. */
  readonly ended: Promise<'stopped' | 'mount-lost'>;
}

/** Starts the emulated kernel: control socket, dm-user endpoints, and the FUSE mount of block files. */
export async function startKernelService(options: KernelServiceOptions): Promise<KernelService> {
  const mountDir = path.resolve(options.mountDir);
  const runDir = path.resolve(options.runDir);
  const { logger } = options;
  // A bad parameter is refused before anything is created or mounted.
  const params = resolveParams(options.params);
  await ensurePrivateRunDir(runDir);
  await ensurePrivateRunDir(path.join(runDir, 'dm-user'), 'dm-user directory');
  if (await kernelIsRunning(runDir)) {
    throw new VabError('ESTATE', `a vab kernel is already running with run directory ${runDir}`);
  }
  await clearStaleMount(mountDir, logger);
  await makePrivateDir(mountDir);
  await removeStaleEndpoints(runDir);

  const kernel = new Kernel({ runDir, params, logger });
  let session: FuseSession;
  try {
    session = await mountBlockFiles({ mountpoint: mountDir, provider: kernel, directIo: !options.pageCache, readerGid: options.readerGid, source: `${MOUNT_SOURCE}${process.pid}`, logger });
  } catch (err) {
    await kernel.shutdown();
    throw err;
  }
  let control;
  try {
    control = await startControlServer(kernel, mountDir, logger);
  } catch (err) {
    await kernel.shutdown();
    await session.unmount();
    throw err;
  }

  let stopping: Promise<void> | undefined;
  let mountLost = false;
  let resolveEnded!: (how: 'stopped' | 'mount-lost') => void;
  const ended = new Promise<'stopped' | 'mount-lost'>((resolve) => (resolveEnded = resolve));
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      logger.info('kernel stopping');
      await control.close();
      // Fail IO before unmounting, so no FUSE request is left waiting on a target.
      await kernel.shutdown();
      await session.unmount();
      logger.info('kernel stopped');
      resolveEnded(mountLost ? 'mount-lost' : 'stopped');
    })();
    return stopping;
  };
  void session.closed.then(async () => {
    if (stopping) return;
    logger.error('the block-file mount went away; shutting the kernel down', { mount: mountDir });
    mountLost = true;
    await stop();
  });
  // Whether daemons may use the shared-memory transport (it needs the native module on both sides).
  const sharedMemory = sharedMemoryProblem() ?? 'on';
  logger.info('kernel ready', { mount: mountDir, run: runDir, params: kernel.params, connection: session.connection, sharedMemory });
  return { kernel, mountDir, runDir, stop, ended };
}

/** The mount's source names the serving kernel's pid, so a later kernel can tell stale from live. */
const MOUNT_SOURCE = 'vab-kernel-';

/**
 * A kernel killed earlier leaves its FUSE mount behind (every access gets ENOTCONN): remove it.
 * A mount whose kernel is alive, or any mount that is not a kernel's, is left alone and refused.
 */
async function clearStaleMount(mountDir: string, logger: Logger): Promise<void> {
  for (const mount of (await readMountInfo()).filter((m) => m.mountpoint === mountDir)) {
    const pid = mount.source.startsWith(MOUNT_SOURCE) ? Number(mount.source.slice(MOUNT_SOURCE.length)) : NaN;
    if (!mount.fstype.startsWith('fuse') || !Number.isSafeInteger(pid)) {
      throw new VabError('ESTATE', `${mountDir} already has a ${mount.fstype} mount (${mount.source}) that is not a vab kernel's; unmount it first`);
    }
    if (isAlive(pid)) throw new VabError('ESTATE', `a vab kernel (pid ${pid}) is already serving ${mountDir}`);
  }
  const removed = await forceUnmount(mountDir);
  if (removed > 0) logger.warn('removed a stale FUSE mount left by a dead kernel', { mount: mountDir, count: removed });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return errnoCode(err) !== 'ESRCH';
  }
}

async function removeStaleEndpoints(runDir: string): Promise<void> {
  const dir = path.join(runDir, 'dm-user');
  for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
    if (entry.isSocket()) await fs.rm(path.join(dir, entry.name), { force: true });
  }
}
