import type { InitIn, InitOut } from './codec/structs';
import { FUSE_KERNEL_MINOR_VERSION, FUSE_KERNEL_VERSION, FUSE_MIN_SUPPORTED_MINOR, Errno, InitFlag, PAGE_SIZE } from './protocol';
import { FuseErrnoError } from './types';

/**
 * INIT negotiation. The kernel offers every feature it has; the reply keeps only those a server of
 * block files wants. Deliberately absent: WRITEBACK_CACHE (the kernel would own size and mtime and
 * hold dirty data a crash loses), DO_READDIRPLUS (plain READDIR plus LOOKUP is enough for a handful
 * of files), ATOMIC_O_TRUNC (truncation must arrive as SETATTR so it can be refused).
 */
const WANTED_FLAGS = InitFlag.ASYNC_READ | InitFlag.BIG_WRITES | InitFlag.MAX_PAGES | InitFlag.ASYNC_DIO | InitFlag.PARALLEL_DIROPS;

/** Requests the kernel may keep queued in the background (readahead, async direct IO) at once. */
const MAX_BACKGROUND = 64;
const CONGESTION_THRESHOLD = 48;

export interface Negotiated {
  reply: InitOut;
  /** False when the reply only announces our major and the kernel is expected to INIT again. */
  complete: boolean;
}

export function negotiateInit(request: InitIn, maxIo: number): Negotiated {
  if (request.major < FUSE_KERNEL_VERSION) {
    throw new FuseErrnoError(Errno.EPROTO, `kernel FUSE protocol ${request.major}.${request.minor} is older than 7.x`);
  }
  if (request.major > FUSE_KERNEL_VERSION) {
    // The protocol's way to step a newer major down: answer with ours and wait for another INIT.
    return { reply: emptyReply(FUSE_KERNEL_VERSION, FUSE_KERNEL_MINOR_VERSION), complete: false };
  }
  const minor = Math.min(request.minor, FUSE_KERNEL_MINOR_VERSION);
  if (minor < FUSE_MIN_SUPPORTED_MINOR) {
    throw new FuseErrnoError(Errno.EPROTO, `kernel FUSE protocol 7.${request.minor} is older than 7.${FUSE_MIN_SUPPORTED_MINOR}`);
  }
  const flags = (request.flags & WANTED_FLAGS) >>> 0;
  return {
    reply: {
      ...emptyReply(FUSE_KERNEL_VERSION, minor),
      maxReadahead: Math.min(request.maxReadahead, maxIo),
      flags,
      maxBackground: MAX_BACKGROUND,
      congestionThreshold: CONGESTION_THRESHOLD,
      maxWrite: maxIo,
      timeGran: 1,
      maxPages: flags & InitFlag.MAX_PAGES ? Math.ceil(maxIo / PAGE_SIZE) : 0,
    },
    complete: true,
  };
}

function emptyReply(major: number, minor: number): InitOut {
  return {
    major,
    minor,
    maxReadahead: 0,
    flags: 0,
    maxBackground: 0,
    congestionThreshold: 0,
    maxWrite: 0,
    timeGran: 0,
    maxPages: 0,
    mapAlignment: 0,
    flags2: 0,
    maxStackDepth: 0,
    requestTimeout: 0,
  };
}
