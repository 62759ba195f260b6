import type { Attr, SetattrIn } from './codec/structs';
import { Dirent, EntryOut } from './codec/composite';
import { DT_DIR, DT_REG, Errno, FIRST_FILE_NODEID, FUSE_ROOT_ID, O_ACCMODE, O_RDONLY, PAGE_SIZE, S_IFDIR, S_IFREG, SetattrValid, W_OK } from './protocol';
import { BlockFile, BlockFileProvider, FileRequestContext, FuseErrnoError } from './types';

/**
 * The filesystem the kernel sees: one root directory whose entries are the provider's block
 * files. It holds no per-inode lookup state: a node id is the file id plus FIRST_FILE_NODEID and
 * is resolved against the provider's current list each time, so FORGET has nothing to undo.
 */

/** Attribute and entry cache lifetime handed to the kernel, in seconds. */
const CACHE_SECONDS = 1;
const BLOCK_SIZE = PAGE_SIZE;

export const nodeidOfFile = (file: BlockFile): number => file.id + FIRST_FILE_NODEID;

interface OpenFile {
  file: BlockFile;
}

export class BlockFileSystem {
  private readonly openFiles = new Map<number, OpenFile>();
  private readonly openDirs = new Map<number, Dirent[]>();
  private nextHandle = 1;
  private readonly startSeconds = Math.floor(Date.now() / 1000);

  /** @param readerGid a group that may read the block files (0640); without it they are 0600 root:root. */
  constructor(
    private readonly provider: BlockFileProvider,
    private readonly readerGid?: number,
  ) {}

  get openHandleCount(): number {
    return this.openFiles.size + this.openDirs.size;
  }

  lookup(parent: number, name: string): EntryOut {
    this.requireRoot(parent);
    const file = this.provider.lookup(name);
    if (!file) throw new FuseErrnoError(Errno.ENOENT, `no block file named ${name}`);
    return this.entryOf(file);
  }

  getattr(nodeid: number): Attr {
    return nodeid === FUSE_ROOT_ID ? this.rootAttr() : this.fileAttr(this.resolve(nodeid));
  }

  /**
   * Block files never change size: a truncate to another size is refused (EPERM, as for a block
   * device), one to the same size is a no-op so `truncate -s <size>` and `dd` without notrunc
   * still work. Mode and time changes are accepted and ignored; ownership cannot change.
   */
  setattr(nodeid: number, change: SetattrIn): Attr {
    const attr = this.getattr(nodeid);
    if (change.valid & SetattrValid.SIZE && change.size !== BigInt(attr.size)) {
      throw new FuseErrnoError(nodeid === FUSE_ROOT_ID ? Errno.EISDIR : Errno.EPERM, 'block files cannot change size');
    }
    if ((change.valid & SetattrValid.UID && change.uid !== attr.uid) || (change.valid & SetattrValid.GID && change.gid !== attr.gid)) {
      throw new FuseErrnoError(Errno.EPERM, 'block files cannot change owner');
    }
    if (change.valid & SetattrValid.MODE && (change.mode & 0o7777) !== (attr.mode & 0o7777)) {
      throw new FuseErrnoError(Errno.EPERM, 'block files cannot change mode');
    }
    return attr;
  }

  access(nodeid: number, mask: number): void {
    if (nodeid === FUSE_ROOT_ID) return;
    const file = this.resolve(nodeid);
    if (mask & W_OK && !file.writable) throw new FuseErrnoError(Errno.EROFS, `${file.name} is read-only`);
  }

  open(nodeid: number, flags: number): number {
    if (nodeid === FUSE_ROOT_ID) throw new FuseErrnoError(Errno.EISDIR);
    const file = this.resolve(nodeid);
    if ((flags & O_ACCMODE) !== O_RDONLY && !file.writable) throw new FuseErrnoError(Errno.EROFS, `${file.name} is read-only`);
    const fh = this.nextHandle++;
    this.openFiles.set(fh, { file });
    return fh;
  }

  release(fh: number): void {
    this.openFiles.delete(fh);
  }

  /** The file behind an open handle; falls back to the node for kernels that send fh 0. */
  fileOf(fh: number, nodeid: number): BlockFile {
    return this.openFiles.get(fh)?.file ?? this.resolve(nodeid);
  }

  async read(file: BlockFile, offset: number, size: number, ctx: FileRequestContext): Promise<Buffer> {
    const length = Math.max(0, Math.min(size, file.size - offset));
    if (length === 0) return Buffer.alloc(0);
    const data = await this.provider.read(file, offset, length, ctx);
    // A short reply inside the file would read as end-of-file (and could shrink the kernel's size).
    if (data.length < length) throw new FuseErrnoError(Errno.EIO, `provider returned ${data.length} of ${length} bytes`);
    return data.length === length ? data : data.subarray(0, length);
  }

  /** The reply carrying a buffer from `read` has left: the provider may reuse it. */
  recycle(data: Buffer): void {
    this.provider.recycle?.(data);
  }

  /** Like a block device: what fits before the end is written, nothing past it (ENOSPC). */
  async write(file: BlockFile, offset: number, data: Buffer, ctx: FileRequestContext): Promise<number> {
    if (!file.writable) throw new FuseErrnoError(Errno.EROFS, `${file.name} is read-only`);
    if (data.length === 0) return 0;
    if (offset >= file.size) throw new FuseErrnoError(Errno.ENOSPC, `write at ${offset} is past the end of ${file.name}`);
    const fits = data.length <= file.size - offset ? data : data.subarray(0, file.size - offset);
    await this.provider.write(file, offset, fits, ctx);
    return fits.length;
  }

  async fsync(file: BlockFile, ctx: FileRequestContext): Promise<void> {
    await this.provider.flush(file, ctx);
  }

  async punchHole(file: BlockFile, offset: number, length: number, ctx: FileRequestContext): Promise<void> {
    if (!file.writable) throw new FuseErrnoError(Errno.EROFS, `${file.name} is read-only`);
    const end = Math.min(file.size, offset + length);
    if (end <= offset) return;
    await this.provider.discard(file, offset, end - offset, ctx);
  }

  opendir(nodeid: number): number {
    this.requireRoot(nodeid);
    const fh = this.nextHandle++;
    this.openDirs.set(fh, this.listing());
    return fh;
  }

  /** Entries after the cookie `offset`, from the listing taken at OPENDIR so paging stays consistent. */
  readdir(fh: number, offset: number): Dirent[] {
    const listing = this.openDirs.get(fh) ?? this.listing();
    return listing.slice(offset);
  }

  releasedir(fh: number): void {
    this.openDirs.delete(fh);
  }

  statfs(): { blocks: number; files: number } {
    const files = this.provider.list();
    const blocks = files.reduce((sum, f) => sum + Math.ceil(f.size / BLOCK_SIZE), 0);
    return { blocks, files: files.length + 1 };
  }

  private listing(): Dirent[] {
    const entries: Dirent[] = [
      { ino: FUSE_ROOT_ID, off: 1, type: DT_DIR, name: '.' },
      { ino: FUSE_ROOT_ID, off: 2, type: DT_DIR, name: '..' },
    ];
    for (const file of this.provider.list()) {
      entries.push({ ino: nodeidOfFile(file), off: entries.length + 1, type: DT_REG, name: file.name, entry: this.entryOf(file) });
    }
    return entries;
  }

  private entryOf(file: BlockFile): EntryOut {
    const nodeid = nodeidOfFile(file);
    return { nodeid, generation: 0, entryValid: CACHE_SECONDS, attrValid: CACHE_SECONDS, entryValidNsec: 0, attrValidNsec: 0, attr: this.fileAttr(file) };
  }

  private resolve(nodeid: number): BlockFile {
    const id = nodeid - FIRST_FILE_NODEID;
    const file = this.provider.list().find((f) => f.id === id);
    if (file) return file;
    for (const open of this.openFiles.values()) if (open.file.id === id) return open.file;
    throw new FuseErrnoError(Errno.ENOENT, `node ${nodeid} is not a block file`);
  }

  private requireRoot(nodeid: number): void {
    if (nodeid !== FUSE_ROOT_ID) throw new FuseErrnoError(Errno.ENOTDIR);
  }

  private rootAttr(): Attr {
    return this.attrOf(FUSE_ROOT_ID, 0, S_IFDIR | 0o755, 2);
  }

  private fileAttr(file: BlockFile): Attr {
    // Like a block device: only root writes; a reader group, when there is one, may read.
    const owner = file.writable ? 0o600 : 0o400;
    const group = this.readerGid === undefined ? 0 : 0o040;
    return this.attrOf(nodeidOfFile(file), file.size, S_IFREG | owner | group, 1, this.readerGid ?? 0);
  }

  private attrOf(ino: number, size: number, mode: number, nlink: number, gid = 0): Attr {
    const t = this.startSeconds;
    return {
      ino,
      size,
      blocks: Math.ceil(size / 512),
      atime: t,
      mtime: t,
      ctime: t,
      atimensec: 0,
      mtimensec: 0,
      ctimensec: 0,
      mode,
      nlink,
      uid: 0,
      gid,
      rdev: 0,
      blksize: BLOCK_SIZE,
      flags: 0,
    };
  }

  /** For the cache lifetime in replies built outside this class (attr_out). */
  static readonly cacheSeconds = CACHE_SECONDS;
}
