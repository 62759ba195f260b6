/**
 * FUSE kernel protocol constants (include/uapi/linux/fuse.h), limited to what a server of a flat
 * directory of block files needs. Values are protocol facts; see docs/fuse.md for how each is used.
 */

/** The protocol version this server understands; a kernel with a newer minor is answered with ours. */
export const FUSE_KERNEL_VERSION = 7;
export const FUSE_KERNEL_MINOR_VERSION = 45;
/** Oldest minor whose request and reply layouts this server encodes (fuse_entry_out at 128 bytes). */
export const FUSE_MIN_SUPPORTED_MINOR = 9;

export const FUSE_ROOT_ID = 1;
/** Block file inodes start here so that a provider id of 0 or 1 never collides with the root. */
export const FIRST_FILE_NODEID = 2;

export enum FuseOpcode {
  LOOKUP = 1,
  FORGET = 2,
  GETATTR = 3,
  SETATTR = 4,
  READLINK = 5,
  SYMLINK = 6,
  MKNOD = 8,
  MKDIR = 9,
  UNLINK = 10,
  RMDIR = 11,
  RENAME = 12,
  LINK = 13,
  OPEN = 14,
  READ = 15,
  WRITE = 16,
  STATFS = 17,
  RELEASE = 18,
  FSYNC = 20,
  SETXATTR = 21,
  GETXATTR = 22,
  LISTXATTR = 23,
  REMOVEXATTR = 24,
  FLUSH = 25,
  INIT = 26,
  OPENDIR = 27,
  READDIR = 28,
  RELEASEDIR = 29,
  FSYNCDIR = 30,
  GETLK = 31,
  SETLK = 32,
  SETLKW = 33,
  ACCESS = 34,
  CREATE = 35,
  INTERRUPT = 36,
  BMAP = 37,
  DESTROY = 38,
  IOCTL = 39,
  POLL = 40,
  NOTIFY_REPLY = 41,
  BATCH_FORGET = 42,
  FALLOCATE = 43,
  READDIRPLUS = 44,
  RENAME2 = 45,
  LSEEK = 46,
  COPY_FILE_RANGE = 47,
  SETUPMAPPING = 48,
  REMOVEMAPPING = 49,
  SYNCFS = 50,
  TMPFILE = 51,
  STATX = 52,
  COPY_FILE_RANGE_64 = 53,
}

/** fuse_init_in/out `flags` bits (the low 32; the high 32 travel in flags2). */
export const InitFlag = {
  ASYNC_READ: 1 << 0,
  POSIX_LOCKS: 1 << 1,
  ATOMIC_O_TRUNC: 1 << 3,
  BIG_WRITES: 1 << 5,
  DO_READDIRPLUS: 1 << 13,
  ASYNC_DIO: 1 << 15,
  WRITEBACK_CACHE: 1 << 16,
  PARALLEL_DIROPS: 1 << 18,
  ABORT_ERROR: 1 << 21,
  MAX_PAGES: 1 << 22,
  INIT_EXT: 1 << 30,
} as const;

/** fuse_open_out `open_flags`. */
export const FOPEN_DIRECT_IO = 1 << 0;

/** fuse_setattr_in `valid` bits. */
export const SetattrValid = {
  MODE: 1 << 0,
  UID: 1 << 1,
  GID: 1 << 2,
  SIZE: 1 << 3,
  ATIME: 1 << 4,
  MTIME: 1 << 5,
  FH: 1 << 6,
  ATIME_NOW: 1 << 7,
  MTIME_NOW: 1 << 8,
  LOCKOWNER: 1 << 9,
  CTIME: 1 << 10,
  KILL_SUIDGID: 1 << 11,
} as const;

/** fuse_fsync_in `fsync_flags` bit 0: fdatasync. */
export const FSYNC_FDATASYNC = 1;

/** fallocate(2) modes. Only PUNCH_HOLE|KEEP_SIZE is served (it maps to a discard). */
export const FALLOC_FL_KEEP_SIZE = 0x01;
export const FALLOC_FL_PUNCH_HOLE = 0x02;

/** Header sizes (bytes). */
export const IN_HEADER_SIZE = 40;
export const OUT_HEADER_SIZE = 16;

/** The kernel refuses read() buffers smaller than this (FUSE_MIN_READ_BUFFER). */
export const FUSE_MIN_READ_BUFFER = 8192;
/** The largest request the kernel sends, capped by /proc/sys/fs/fuse/max_pages_limit (256 pages here). */
export const FUSE_MAX_IO = 1024 * 1024;
export const PAGE_SIZE = 4096;

/** File type bits (mode & S_IFMT) and the dirent type derived from them. */
export const S_IFDIR = 0o040000;
export const S_IFREG = 0o100000;
export const DT_DIR = 4;
export const DT_REG = 8;

/** Error numbers answered to the kernel (Linux values; replies carry them negated). */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  EIO: 5,
  EBADF: 9,
  EAGAIN: 11,
  EACCES: 13,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  EFBIG: 27,
  ENOSPC: 28,
  EROFS: 30,
  ERANGE: 34,
  ENOSYS: 38,
  EPROTO: 71,
  EOPNOTSUPP: 95,
} as const;

/** access(2) mask bit for write permission. */
export const W_OK = 2;
/** open(2) access-mode bits. */
export const O_ACCMODE = 3;
export const O_RDONLY = 0;
