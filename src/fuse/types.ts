import type { Logger } from '../util/log';
import { VabError } from '../util/errors';
import { codeForErrno } from './errno';

/**
 * The contract between the FUSE server and whoever supplies block files (the emulated kernel, or a
 * test). The FUSE layer knows files, offsets and errnos; it knows nothing of dm-user.
 */

/** One block file in the mount's root directory. */
export interface BlockFile {
  /** Stable for the file's lifetime and never reused by the same provider (becomes the inode). */
  readonly id: number;
  readonly name: string;
  /** Size in bytes; block files never change size. */
  readonly size: number;
  readonly writable: boolean;
}

/** Who asked, as the kernel reports it (pid 0 for kernel-internal requests). */
export interface FileRequestContext {
  readonly pid: number;
  readonly uid: number;
  readonly gid: number;
}

/**
 * Supplies the files and performs their IO. Every method may reject: an error carrying a numeric
 * `errno` (positive, e.g. 5 for EIO) is answered with that errno, anything else with EIO. Promises
 * must settle: the FUSE caller cannot leave until they do.
 */
export interface BlockFileProvider {
  list(): readonly BlockFile[];
  lookup(name: string): BlockFile | undefined;
  /** Resolves with exactly `length` bytes (the server clamps requests to the file size first). */
  read(file: BlockFile, offset: number, length: number, ctx: FileRequestContext): Promise<Buffer>;
  /**
   * Optional: called with what `read` resolved with (or a view of it) once the reply carrying it
   * has been written to /dev/fuse or dropped; the provider may reuse that memory from then on. Not
   * called when the read's reply is an error.
   */
  recycle?(data: Buffer): void;
  write(file: BlockFile, offset: number, data: Buffer, ctx: FileRequestContext): Promise<void>;
  /** fsync / fdatasync: make earlier writes durable. */
  flush(file: BlockFile, ctx: FileRequestContext): Promise<void>;
  /** fallocate(PUNCH_HOLE | KEEP_SIZE): the range may be forgotten. */
  discard(file: BlockFile, offset: number, length: number, ctx: FileRequestContext): Promise<void>;
}

export interface FuseMountOptions {
  /** Existing empty directory to mount on. */
  mountpoint: string;
  provider: BlockFileProvider;
  /** FOPEN_DIRECT_IO on every open (default true): every IO reaches the provider. */
  directIo?: boolean;
  /** Largest READ/WRITE the kernel may send, in bytes (default and maximum 1 MiB). */
  maxIo?: number;
  /** A group whose members may read (never write) the block files: mode 0640 with that gid, else 0600 root:root. */
  readerGid?: number;
  /** Filesystem name shown in /proc/mounts (default "vab"). */
  source?: string;
  logger?: Logger;
}

export interface FuseSession {
  readonly mountpoint: string;
  /** The fusectl connection number (`/sys/fs/fuse/connections/<N>`). */
  readonly connection: number;
  /** Unmounts (lazily if busy) and stops serving; pending requests are answered first or aborted. */
  unmount(): Promise<void>;
  /** Settles when the session has ended, for whatever reason (unmount, abort, ENODEV). */
  readonly closed: Promise<void>;
}

/**
 * A VabError that also names the exact errno to answer with, for the answers our codes are too
 * coarse for (ENOTDIR, EISDIR, EROFS, ...). Its code is what the errno means to the rest of vab.
 */
export class FuseErrnoError extends VabError {
  constructor(
    readonly errno: number,
    message?: string,
  ) {
    super(codeForErrno(errno), message ?? `errno ${errno}`);
    this.name = 'FuseErrnoError';
  }
}
