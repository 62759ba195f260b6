import fs, { promises as fsp } from 'fs';
import { promisify } from 'util';
import { VabError } from '../util/errors';
import { nullLogger, Logger } from '../util/log';
import { outHeader } from './codec/structs';
import { Dispatcher, Reply } from './dispatch';
import { BlockFileSystem } from './filesystem';
import { abortConnection, ensureFusectl, FUSECTL_DIR, fuseMountsAt, mountDevFuse, unmount } from './mount';
import { FUSE_MAX_IO, FUSE_MIN_READ_BUFFER, OUT_HEADER_SIZE, PAGE_SIZE } from './protocol';
import { ReaderPool } from './reader';
import type { FuseMountOptions, FuseSession } from './types';

const openFd = promisify(fs.open);
const closeFd = promisify(fs.close);

/** Reader threads: they only read and hand over, so two keep the kernel's queue drained on a small machine. */
const READER_COUNT = 2;
/** How long an unmount waits for a clean `umount`, for in-flight requests, and for readers to stop. */
const UMOUNT_TIMEOUT_MS = 5_000;
const DRAIN_TIMEOUT_MS = 2_000;
/** Errors on read() that mean the connection is gone (ECONNABORTED only with FUSE_ABORT_ERROR). */
const SESSION_END_CODES = new Set(['ENODEV', 'ECONNABORTED']);

/** Mounts `options.provider`'s block files on `options.mountpoint` and serves them until unmounted. */
export async function mountBlockFiles(options: FuseMountOptions): Promise<FuseSession> {
  const maxIo = options.maxIo ?? FUSE_MAX_IO;
  if (!Number.isInteger(maxIo) || maxIo < PAGE_SIZE || maxIo > FUSE_MAX_IO || maxIo % PAGE_SIZE !== 0) {
    throw new VabError('EINVAL_INPUT', `maxIo must be a multiple of ${PAGE_SIZE} between ${PAGE_SIZE} and ${FUSE_MAX_IO}, got ${maxIo}`);
  }
  const mountpoint = await fsp.realpath(options.mountpoint);
  const logger = options.logger ?? nullLogger;
  // Mounted up front so that an abort is always possible, even synchronously while exiting.
  await ensureFusectl();
  const fd = await openFd('/dev/fuse', fs.constants.O_RDWR);
  let connection: number;
  try {
    await mountDevFuse({ fd, mountpoint, source: options.source ?? 'vab', maxRead: maxIo });
    const ours = await fuseMountsAt(mountpoint);
    const top = ours[ours.length - 1];
    if (!top) throw new VabError('EIO', `mounted FUSE on ${mountpoint} but it is not in /proc/self/mountinfo`);
    connection = top.minor;
  } catch (err) {
    await closeFd(fd);
    throw err;
  }
  const dispatcher = new Dispatcher(new BlockFileSystem(options.provider, options.readerGid), { directIo: options.directIo !== false, maxIo, logger });
  const session = new Session(fd, mountpoint, connection, dispatcher, logger);
  // Only now: reading /dev/fuse before mount(2) has attached it fails with EPERM.
  session.start(Math.max(FUSE_MIN_READ_BUFFER, maxIo + PAGE_SIZE));
  logger.info('FUSE mount serving', { mountpoint, connection, maxIo });
  return session;
}

class Session implements FuseSession {
  readonly closed: Promise<void>;
  private resolveClosed!: () => void;
  private fdOpen = true;
  private inFlight = 0;
  private drained: (() => void)[] = [];
  private unmounting?: Promise<void>;
  private readers?: ReaderPool;

  private readonly abortOnExit = (): void => {
    if (this.fdOpen) abortSync(this.connection);
  };

  constructor(
    private readonly fd: number,
    readonly mountpoint: string,
    readonly connection: number,
    private readonly dispatcher: Dispatcher,
    private readonly logger: Logger,
  ) {
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
  }

  start(bufferSize: number): void {
    process.once('exit', this.abortOnExit);
    this.readers = new ReaderPool(this.fd, bufferSize, READER_COUNT, {
      onRequest: (request) => this.serve(request),
      onReaderEnd: (code, message) => {
        if (SESSION_END_CODES.has(code)) this.logger.debug('FUSE reader stopped: connection gone', { code });
        else this.logger.error('FUSE reader stopped unexpectedly', { code, message });
      },
      onAllExited: () => void this.finish(),
    });
  }

  unmount(): Promise<void> {
    this.unmounting ??= this.tearDown();
    return this.unmounting;
  }

  private serve(request: Buffer): void {
    this.inFlight++;
    void this.dispatcher
      .handle(request)
      .then((reply) => {
        if (reply) this.send(reply);
      })
      .finally(() => {
        if (--this.inFlight === 0) for (const wake of this.drained.splice(0)) wake();
      });
  }

  /**
   * One reply, one writev. A write to /dev/fuse only copies the reply into the waiting request and
   * wakes its caller; it never waits for this process, so a synchronous write cannot deadlock the
   * event loop the way a read (or any access to the mount) would.
   */
  private send(reply: Reply): void {
    if ('none' in reply || !this.fdOpen) return;
    const body = 'body' in reply ? reply.body : [];
    const length = OUT_HEADER_SIZE + body.reduce((sum, part) => sum + part.length, 0);
    const header = outHeader.encode({ len: length, error: 'error' in reply ? -reply.error : 0, unique: reply.unique });
    try {
      fs.writevSync(this.fd, [header, ...body]);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // ENOENT: the request is gone (interrupted, or the connection was aborted). Not an error of ours.
      if (code === 'ENOENT' || code === 'ENODEV' || code === 'ECONNABORTED') this.logger.debug('FUSE reply dropped', { code });
      else this.logger.error('FUSE reply refused by the kernel', { code, unique: reply.unique.toString(), length });
    } finally {
      // Written means copied by the kernel (or refused): either way the buffers are free again.
      if ('sent' in reply) reply.sent?.();
    }
  }

  private async tearDown(): Promise<void> {
    if (!this.fdOpen) {
      // The connection ended without us (aborted from outside): only the dead entry is left to remove.
      if ((await fuseMountsAt(this.mountpoint)).some((m) => m.minor === this.connection)) {
        await unmount(this.mountpoint, { lazy: true, timeoutMs: UMOUNT_TIMEOUT_MS });
      }
      return;
    }
    const clean = await unmount(this.mountpoint, { lazy: false, timeoutMs: UMOUNT_TIMEOUT_MS });
    if (!clean.ok) {
      this.logger.warn('FUSE umount failed, detaching lazily and aborting', { mountpoint: this.mountpoint, reason: clean.reason });
      if ((await fuseMountsAt(this.mountpoint)).some((m) => m.minor === this.connection)) {
        await unmount(this.mountpoint, { lazy: true, timeoutMs: UMOUNT_TIMEOUT_MS });
      }
      await this.waitDrained(DRAIN_TIMEOUT_MS);
      await abortConnection(this.connection);
    }
    if (!(await settlesWithin(this.closed, UMOUNT_TIMEOUT_MS))) {
      // The superblock is gone but a reader is still blocked: only an abort wakes it.
      this.logger.warn('FUSE readers still blocked after umount, aborting', { readers: this.readers?.running });
      await abortConnection(this.connection);
    }
    await this.closed;
  }

  private waitDrained(timeoutMs: number): Promise<boolean> {
    if (this.inFlight === 0) return Promise.resolve(true);
    return settlesWithin(new Promise<void>((resolve) => this.drained.push(resolve)), timeoutMs);
  }

  /** After every reader has exited: no thread can still be inside read() on the fd, so closing cannot hand its number to a stranger mid-read. */
  private async finish(): Promise<void> {
    if (!this.fdOpen) return;
    this.fdOpen = false;
    process.removeListener('exit', this.abortOnExit);
    await closeFd(this.fd).catch((err) => this.logger.warn('closing /dev/fuse failed', { error: String(err) }));
    this.logger.info('FUSE session ended', { mountpoint: this.mountpoint, connection: this.connection, unanswered: this.inFlight });
    this.resolveClosed();
  }
}

/**
 * A process that exits while still serving would never finish exiting: Node joins the reader
 * threads, and they sit in read() until the connection ends. Aborting the connection in the exit
 * hook ends it, leaving the mount dead (ENOTCONN) exactly as if the process had been killed. The
 * write is synchronous because exit hooks cannot wait; it goes to fusectl, not to the mount, so it
 * cannot block on this process.
 */
function abortSync(connection: number): void {
  try {
    fs.writeFileSync(`${FUSECTL_DIR}/${connection}/abort`, '1');
  } catch {
    // Already gone, or fusectl unavailable: nothing more can be done while exiting.
  }
}

function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    void promise.then(() => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

