import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { fsyncDirectory } from '../util/atomic';
import { VabError, errnoCode } from '../util/errors';
import { ownsItsMemory } from '../util/worker-pool';
import { HashFollower, HashFollowerPool } from './hash-follower';
import { PartitionWriter, SourceReader } from './partition-io';

const ZEROS = Buffer.alloc(1024 * 1024);
/**
 * Writes queued at once: enough to overlap writing with decompressing the next op. They reach the
 * file one at a time: concurrent writes to one file wait on its inode lock, and the kernel spins
 * on that lock (measured: 7% of an extract's CPU on two cores).
 */
const MAX_PENDING_WRITES = 4;
/**
 * Small writes that continue each other are gathered up to this size before they go to the file:
 * an incremental payload has tens of thousands of one-block operations, and a write call costs
 * about as much as copying a few blocks.
 */
const GATHER_BYTES = 1024 * 1024;
/** The hashing thread is told about settled data in steps of at least this much. */
const SETTLE_STEP_BYTES = 4 * 1024 * 1024;
/**
 * With durable writing, start writing dirty data back every this many bytes, so the disk works
 * while we decompress and the fsync before the rename has little left to do.
 */
const EARLY_WRITEBACK_BYTES = 64 * 1024 * 1024;

/** The calls the writer makes on its file: a test (or a fault-injecting layer) can stand in for it. */
export type ImageFile = Pick<fs.FileHandle, 'read' | 'write' | 'datasync' | 'sync' | 'truncate' | 'close'>;

export interface ImageWriterOptions {
  /** Opens the temporary file for writing, empty (default: the real file system). */
  open?: (path: string) => Promise<ImageFile>;
  /** fsync the image before it is renamed into place (and write back early as it grows). */
  durable?: boolean;
  /** Dirty bytes between early writebacks (durable only). */
  writebackBytes?: number;
  /** The thread that hashes images as they settle; without one the writer starts its own. */
  hashes?: HashFollowerPool;
}

/**
 * Writes a partition image to a hidden temporary file beside its final name and only renames it
 * into place once its SHA-256 matches; a failed or interrupted extract leaves no `<name>.img`
 * that looks complete. Whoever drives the writer calls `settle` as parts of the image become
 * final; a thread of its own hashes those parts from the page cache meanwhile, whatever order
 * the writes came in.
 *
 * Durability is the caller's choice: without `durable`, the image is complete and checked when
 * it appears under its name, but a power cut soon after may lose it (nothing is fsynced).
 */
export class ImageFileWriter implements PartitionWriter {
  private readonly pending = new Set<Promise<void>>();
  private failure: unknown;
  private unsyncedBytes = 0;
  private writeback: Promise<void> = Promise.resolve();
  private gathered: { position: number; buffer: Buffer; length: number } | undefined;
  /** Gather buffers whose writes are done, for reuse: allocating 1 MiB per small write costs more than the write. */
  private readonly spareBuffers: Buffer[] = [];
  private settleAsked = 0;
  /** The settled prefix as last reported, unrounded: writes below it are final when they land. */
  private settledExact = 0;
  private lastWrite: Promise<void> = Promise.resolve();
  /** One byte per block: has anything been written there? */
  private readonly written: Uint8Array;

  private constructor(
    readonly blockSize: number,
    readonly finalPath: string,
    readonly tempPath: string,
    private readonly handle: ImageFile,
    private readonly size: number,
    private readonly options: ImageWriterOptions,
    private readonly hash: HashFollower,
    private readonly ownHashes: HashFollowerPool | undefined,
  ) {
    this.written = new Uint8Array(Math.ceil(size / blockSize));
  }

  static async create(finalPath: string, blockSize: number, size: number, options: ImageWriterOptions = {}): Promise<ImageFileWriter> {
    const tempPath = path.join(path.dirname(finalPath), `.${path.basename(finalPath)}.partial-${process.pid}`);
    const open = options.open ?? ((file: string) => fs.open(file, 'w+', 0o644));
    const handle = await open(tempPath);
    const ownHashes = options.hashes ? undefined : new HashFollowerPool();
    const hash = (options.hashes ?? ownHashes!).follow(tempPath);
    return new ImageFileWriter(blockSize, finalPath, tempPath, handle, size, options, hash, ownHashes);
  }

  async write(dstBlock: number, data: Buffer): Promise<void> {
    await this.submit(dstBlock * this.blockSize, data);
  }

  async zero(dstBlock: number, numBlocks: number): Promise<void> {
    // The file starts empty: blocks nothing wrote yet already read as zeros (a hole), and the
    // free space of a file system image is often a quarter of it.
    if (!this.anyWritten(dstBlock, numBlocks)) return;
    let position = dstBlock * this.blockSize;
    let remaining = numBlocks * this.blockSize;
    while (remaining > 0) {
      const chunk = ZEROS.subarray(0, Math.min(remaining, ZEROS.length));
      await this.submit(position, chunk);
      position += chunk.length;
      remaining -= chunk.length;
    }
  }

  copy(_srcBlock: number, dstBlock: number, _numBlocks: number, data: Buffer): Promise<void> {
    return this.write(dstBlock, data);
  }

  /**
   * The image's first `bytes` are final: nothing written later lands before that point. They
   * are hashed once the writes made so far have reached the file; a step at a time, so the
   * hashing thread gets a few large reads rather than one per operation.
   */
  settle(bytes: number): void {
    const upTo = Math.min(bytes, this.size);
    this.settledExact = Math.max(this.settledExact, upTo);
    if (upTo < this.settleAsked + SETTLE_STEP_BYTES && upTo < this.size) return;
    this.settleAsked = upTo;
    if (this.gathered && this.gathered.position < upTo) this.flushGathered();
    if (this.pending.size === 0) return this.hash.advance(upTo);
    void Promise.all([...this.pending]).then(() => this.failure || this.hash.advance(upTo));
  }

  /** Waits for the writes, sizes the file, checks its hash, renames it (after an fsync, if durable). */
  async commit(expectedHash: Buffer, partition: string): Promise<void> {
    await this.drain();
    await this.handle.truncate(this.size);
    const actual = await this.hash.finish(this.size);
    if (!actual.equals(expectedHash)) {
      throw new VabError('EHASH', `partition ${partition}: new image hashes to ${actual.toString('hex')}, manifest says ${expectedHash.toString('hex')}`);
    }
    if (this.options.durable) await this.handle.sync();
    await this.handle.close();
    await fs.rename(this.tempPath, this.finalPath);
    if (this.options.durable) await fsyncDirectory(path.dirname(this.finalPath));
    await this.ownHashes?.close();
  }

  /** Gives up: the temporary file is removed, nothing is left under the final name. */
  async abort(): Promise<void> {
    this.gathered = undefined;
    await Promise.allSettled([...this.pending, this.writeback]);
    await this.hash.forget();
    await this.ownHashes?.close();
    await this.handle.close().catch(() => undefined);
    await fs.rm(this.tempPath, { force: true });
  }

  private anyWritten(dstBlock: number, numBlocks: number): boolean {
    const end = Math.min(dstBlock + numBlocks, this.written.length);
    for (let block = dstBlock; block < end; block++) if (this.written[block]) return true;
    return false;
  }

  private async submit(position: number, data: Buffer): Promise<void> {
    if (this.failure) throw this.failure;
    this.written.fill(1, Math.floor(position / this.blockSize), Math.ceil((position + data.length) / this.blockSize));
    const gathered = this.gathered;
    if (gathered && position === gathered.position + gathered.length && gathered.length + data.length <= GATHER_BYTES) {
      data.copy(gathered.buffer, gathered.length);
      gathered.length += data.length;
      return;
    }
    this.flushGathered();
    if (data.length >= GATHER_BYTES) this.startWrite(position, data);
    else {
      const buffer = this.spareBuffers.pop() ?? Buffer.allocUnsafeSlow(GATHER_BYTES);
      data.copy(buffer);
      this.gathered = { position, buffer, length: data.length };
    }
    if (this.pending.size >= MAX_PENDING_WRITES) await Promise.race(this.pending);
  }

  private flushGathered(): void {
    const gathered = this.gathered;
    this.gathered = undefined;
    if (gathered) this.startWrite(gathered.position, gathered.buffer.subarray(0, gathered.length), gathered.buffer);
  }

  private startWrite(position: number, data: Buffer, spare?: Buffer): void {
    const done: Promise<void> = (this.lastWrite = this.lastWrite.then(() => writeFully(this.handle, data, position))).then(
      () => {
        this.pending.delete(done);
        // Final bytes that continue the hash go to its thread from memory, saving the read back.
        const whole = spare ?? data;
        const owned = ownsItsMemory(whole);
        if (owned && position + data.length <= this.settledExact && this.hash.wants(position)) this.hash.feed(position, spare ? spare.subarray(0, data.length) : data);
        else if (spare) this.spareBuffers.push(spare);
      },
      (err) => {
        this.pending.delete(done);
        this.failure ??= new VabError('EIO', `cannot write ${this.tempPath}: ${(err as Error).message}`, { file: this.tempPath, offset: position, cause: err });
      },
    );
    this.pending.add(done);
    if (!this.options.durable) return;
    this.unsyncedBytes += data.length;
    if (this.unsyncedBytes >= (this.options.writebackBytes ?? EARLY_WRITEBACK_BYTES)) {
      this.unsyncedBytes = 0;
      // Not waited for here: it only starts the disk's work early, one at a time. Its error must be
      // kept: Linux reports a writeback error to one fsync and then clears it, so the final fsync
      // in commit() can succeed on a file whose data was lost.
      this.writeback = this.writeback.then(() => this.handle.datasync()).catch((err: unknown) => {
        this.failure ??= new VabError('EIO', `cannot write ${this.tempPath} back to disk: ${(err as Error).message}`, { file: this.tempPath, cause: err });
      });
    }
  }

  private async drain(): Promise<void> {
    this.flushGathered();
    await Promise.all([...this.pending, this.writeback]);
    if (this.failure) throw this.failure;
  }
}

/** Writes all of `data` at `position` (a single write may take only part of it). */
export async function writeFully(handle: Pick<fs.FileHandle, 'write'>, data: Buffer, position: number): Promise<void> {
  for (let done = 0; done < data.length; ) {
    const { bytesWritten } = await handle.write(data, done, data.length - done, position + done);
    done += bytesWritten;
  }
}

/** SHA-256 of the first `size` bytes of an open file (bytes past its end count as zeros). */
export async function hashFile(handle: Pick<fs.FileHandle, 'read'>, size: number): Promise<Buffer> {
  const hash = createHash('sha256');
  const buffer = Buffer.allocUnsafe(4 * 1024 * 1024);
  for (let at = 0; at < size; ) {
    const want = Math.min(buffer.length, size - at);
    const { bytesRead } = await handle.read(buffer, 0, want, at);
    if (bytesRead === 0) {
      buffer.fill(0, 0, want);
      hash.update(buffer.subarray(0, want));
      at += want;
    } else {
      hash.update(buffer.subarray(0, bytesRead));
      at += bytesRead;
    }
  }
  return hash.digest();
}

/**
 * Small source reads (up to SMALL_SOURCE_READ_BYTES) are served from an aligned window of the old
 * image read this size at a time: incremental payloads read the old image in hundreds of
 * one-block pieces, mostly near each other. Larger reads go straight to the file (a window would
 * only add a copy).
 */
const SOURCE_WINDOW_BYTES = 256 * 1024;
const SMALL_SOURCE_READ_BYTES = 64 * 1024;

/** Reads blocks of an old image file. */
export class ImageFileReader implements SourceReader {
  private window: { start: number; data: Promise<Buffer> } | undefined;

  private constructor(
    readonly file: string,
    private readonly handle: fs.FileHandle,
    private readonly blockSize: number,
  ) {}

  static async open(file: string, blockSize: number): Promise<ImageFileReader> {
    try {
      return new ImageFileReader(file, await fs.open(file, 'r'), blockSize);
    } catch (err) {
      // Only a missing file is "not found"; permission and other failures are IO errors.
      const code = errnoCode(err) === 'ENOENT' ? 'ENOTFOUND' : 'EIO';
      throw new VabError(code, `cannot open source image: ${(err as Error).message}`, { file, cause: err });
    }
  }

  async read(startBlock: number, numBlocks: number): Promise<Buffer> {
    const position = startBlock * this.blockSize;
    const length = numBlocks * this.blockSize;
    const windowStart = position - (position % SOURCE_WINDOW_BYTES);
    if (length <= SMALL_SOURCE_READ_BYTES && position + length <= windowStart + SOURCE_WINDOW_BYTES) {
      if (this.window?.start !== windowStart) this.window = { start: windowStart, data: this.readAt(windowStart, SOURCE_WINDOW_BYTES) };
      const data = await this.window.data;
      // A copy: the window is shared, and callers may hand their buffer on.
      return Buffer.from(data.subarray(position - windowStart, position - windowStart + length));
    }
    return this.readAt(position, length);
  }

  /** SHA-256 of the image's first `size` bytes. */
  hash(size: number): Promise<Buffer> {
    return hashFile(this.handle, size);
  }

  async close(): Promise<void> {
    await this.handle.close();
  }

  private async readAt(position: number, length: number): Promise<Buffer> {
    const buffer = Buffer.allocUnsafeSlow(length);
    let done = 0;
    while (done < buffer.length) {
      const { bytesRead } = await this.handle.read(buffer, done, buffer.length - done, position + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    buffer.fill(0, done); // past the end of the image
    return buffer;
  }
}
