import type { Logger } from '../util/log';
import { decodeBatchForget, decodeInitIn, decodeName, encodeAttrOut, encodeDirents, encodeEntryOut, encodeInitOut } from './codec/composite';
import { FuseDecodeError } from './codec/layout';
import { accessIn, fallocateIn, fsyncIn, InHeader, inHeader, interruptIn, ioIn, openIn, openOut, releaseIn, setattrIn, statfsOut, writeOut } from './codec/structs';
import { BlockFileSystem } from './filesystem';
import { negotiateInit } from './init';
import { Errno, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FOPEN_DIRECT_IO, FuseOpcode, IN_HEADER_SIZE } from './protocol';
import { FileRequestContext, FuseErrnoError } from './types';
import { isVabError } from '../util/errors';
import { ERRNO_FOR_CODE } from './errno';

/** What to send back for one request: a body (possibly in several pieces), an errno, or nothing. */
export type Reply =
  | { unique: bigint; error: number }
  /** `sent`: to call once the body has been written (or dropped), so its buffers may be reused. */
  | { unique: bigint; body: Buffer[]; sent?: () => void }
  | { unique: bigint; none: true };

/** Filled in by a route whose reply body borrows a provider's buffer. */
interface AfterReply {
  sent?: () => void;
}

/** Opcodes the kernel never expects a reply to. */
const NO_REPLY = new Set<number>([FuseOpcode.FORGET, FuseOpcode.BATCH_FORGET, FuseOpcode.INTERRUPT, FuseOpcode.NOTIFY_REPLY]);

/** Changes to the namespace: refused outright (a clearer error than ENOSYS for `touch`, `rm`, `mv`). */
const NAMESPACE_CHANGES = new Set<number>([
  FuseOpcode.CREATE,
  FuseOpcode.MKNOD,
  FuseOpcode.MKDIR,
  FuseOpcode.UNLINK,
  FuseOpcode.RMDIR,
  FuseOpcode.RENAME,
  FuseOpcode.RENAME2,
  FuseOpcode.LINK,
  FuseOpcode.SYMLINK,
  FuseOpcode.TMPFILE,
]);

export interface DispatcherOptions {
  directIo: boolean;
  maxIo: number;
  logger: Logger;
}

/**
 * Errno for a failed request: an exact errno when the error carries a valid one (FuseErrnoError,
 * Node's system errors), else the map from the VabError's code, else EIO.
 */
export function errnoOf(err: unknown): number {
  if (err instanceof FuseDecodeError) return Errno.EINVAL;
  const errno = typeof err === 'object' && err !== null ? (err as { errno?: unknown }).errno : undefined;
  if (typeof errno === 'number' && Number.isInteger(errno)) {
    // Node's own system errors carry negative errnos (libuv style); the kernel wants 1..511.
    const positive = Math.abs(errno);
    if (positive >= 1 && positive <= 511) return positive;
  }
  if (isVabError(err)) return ERRNO_FOR_CODE[err.code];
  return Errno.EIO;
}

export class Dispatcher {
  private readonly fs: BlockFileSystem;
  /** The negotiated protocol minor, 0 until INIT has been answered. */
  minor = 0;

  constructor(fs: BlockFileSystem, private readonly options: DispatcherOptions) {
    this.fs = fs;
  }

  /** Serves one raw request. Never throws: every failure becomes an errno reply (or no reply). */
  async handle(request: Buffer): Promise<Reply | undefined> {
    let header: InHeader;
    try {
      header = inHeader.decode(request);
    } catch (err) {
      this.options.logger.warn('dropping a FUSE request without a readable header', { bytes: request.length, error: String(err) });
      return undefined;
    }
    const { unique, opcode } = header;
    try {
      if (header.len !== request.length) {
        throw new FuseDecodeError(`header says ${header.len} bytes, read ${request.length}`, 0, header.len > request.length);
      }
      const body = request.subarray(IN_HEADER_SIZE);
      const after: AfterReply = {};
      const result = await this.route(header, body, after);
      if (NO_REPLY.has(opcode)) return { unique, none: true };
      return { unique, body: result ?? [], sent: after.sent };
    } catch (err) {
      if (NO_REPLY.has(opcode)) return { unique, none: true };
      const errno = errnoOf(err);
      if (errno === Errno.EIO || err instanceof FuseDecodeError) {
        this.options.logger.warn('FUSE request failed', { opcode: FuseOpcode[opcode] ?? opcode, errno, error: String(err) });
      }
      return { unique, error: errno };
    }
  }

  private async route(h: InHeader, body: Buffer, after: AfterReply): Promise<Buffer[] | undefined> {
    const ctx: FileRequestContext = { pid: h.pid, uid: h.uid, gid: h.gid };
    const fs = this.fs;
    switch (h.opcode) {
      case FuseOpcode.INIT:
        return [this.init(body)];
      case FuseOpcode.LOOKUP:
        return [encodeEntryOut(fs.lookup(h.nodeid, decodeName(body)))];
      case FuseOpcode.FORGET:
        return undefined;
      case FuseOpcode.BATCH_FORGET:
        decodeBatchForget(body);
        return undefined;
      case FuseOpcode.INTERRUPT:
        // Provider calls cannot be cancelled; the request is answered when its call settles.
        this.options.logger.debug('FUSE interrupt ignored', { target: interruptIn.decode(body).unique.toString() });
        return undefined;
      case FuseOpcode.GETATTR:
        return [this.attrOut(fs.getattr(h.nodeid))];
      case FuseOpcode.SETATTR:
        return [this.attrOut(fs.setattr(h.nodeid, setattrIn.decode(body)))];
      case FuseOpcode.ACCESS:
        fs.access(h.nodeid, accessIn.decode(body).mask);
        return [];
      case FuseOpcode.OPEN: {
        const fh = fs.open(h.nodeid, openIn.decode(body).flags);
        return [openOut.encode({ fh, openFlags: this.options.directIo ? FOPEN_DIRECT_IO : 0, backingId: 0 })];
      }
      case FuseOpcode.READ: {
        const r = ioIn.decode(body);
        const data = await fs.read(fs.fileOf(r.fh, h.nodeid), r.offset, r.size, ctx);
        after.sent = () => fs.recycle(data);
        return [data];
      }
      case FuseOpcode.WRITE: {
        const w = ioIn.decode(body);
        const data = body.subarray(ioIn.size);
        if (data.length < w.size) throw new FuseDecodeError(`WRITE of ${w.size} bytes carries ${data.length}`, IN_HEADER_SIZE + ioIn.size, true);
        const written = await fs.write(fs.fileOf(w.fh, h.nodeid), w.offset, data.subarray(0, w.size), ctx);
        return [writeOut.encode({ size: written })];
      }
      case FuseOpcode.FLUSH:
        return [];
      case FuseOpcode.FSYNC:
        await fs.fsync(fs.fileOf(fsyncIn.decode(body).fh, h.nodeid), ctx);
        return [];
      case FuseOpcode.FSYNCDIR:
        return [];
      case FuseOpcode.RELEASE:
        fs.release(releaseIn.decode(body).fh);
        return [];
      case FuseOpcode.FALLOCATE: {
        const f = fallocateIn.decode(body);
        if (f.mode !== (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)) throw new FuseErrnoError(Errno.EOPNOTSUPP, `fallocate mode ${f.mode}`);
        await fs.punchHole(fs.fileOf(f.fh, h.nodeid), f.offset, f.length, ctx);
        return [];
      }
      case FuseOpcode.STATFS: {
        const { blocks, files } = fs.statfs();
        return [statfsOut.encode({ blocks, bfree: 0, bavail: 0, files, ffree: 0, bsize: 4096, namelen: 255, frsize: 4096 })];
      }
      case FuseOpcode.OPENDIR:
        openIn.decode(body);
        return [openOut.encode({ fh: fs.opendir(h.nodeid), openFlags: 0, backingId: 0 })];
      case FuseOpcode.READDIR:
      case FuseOpcode.READDIRPLUS: {
        const r = ioIn.decode(body);
        return [encodeDirents(fs.readdir(r.fh, r.offset), r.size, h.opcode === FuseOpcode.READDIRPLUS)];
      }
      case FuseOpcode.RELEASEDIR:
        fs.releasedir(releaseIn.decode(body).fh);
        return [];
      case FuseOpcode.DESTROY:
        return [];
      default:
        if (NAMESPACE_CHANGES.has(h.opcode)) throw new FuseErrnoError(Errno.EPERM, 'the set of block files is fixed by the provider');
        // GETXATTR and LISTXATTR land here too: ENOSYS makes the kernel stop asking.
        throw new FuseErrnoError(Errno.ENOSYS, `opcode ${FuseOpcode[h.opcode] ?? h.opcode}`);
    }
  }

  private init(body: Buffer): Buffer {
    const { reply, complete } = negotiateInit(decodeInitIn(body), this.options.maxIo);
    if (complete) {
      this.minor = reply.minor;
      this.options.logger.info('FUSE connection initialised', { minor: reply.minor, flags: reply.flags.toString(16), maxWrite: reply.maxWrite });
    }
    return encodeInitOut(reply);
  }

  private attrOut(attr: ReturnType<BlockFileSystem['getattr']>): Buffer {
    return encodeAttrOut({ attrValid: BlockFileSystem.cacheSeconds, attrValidNsec: 0, attr });
  }
}
