import { createHash, Hash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { fsyncDirectory } from '../util/atomic';
import { VabError, errnoCode } from '../util/errors';
import { PartitionWriter, SourceReader } from './partition-io';

const ZEROS = Buffer.alloc(1024 * 1024);
/** Writes in flight at once: enough to overlap disk IO with decompressing the next op. */
const MAX_PENDING_WRITES = 4;
/**
 * Start writing dirty data back every this many bytes, so the disk works while we decompress
 * and the fsync before the rename has little left to do.
 */
const EARLY_WRITEBACK_BYTES = 64 * 1024 * 1024;

/** The calls the writer makes on its file: a test (or a fault-injecting layer) can stand in for it. */
export type ImageFile = Pick<fs.FileHandle, 'read' | 'write' | 'datasync' | 'sync' | 'truncate' | 'close'>;

export interface ImageWriterOptions {
  /** Opens the temporary file for writing (default: the real file system). */
  open?: (path: string) => Promise<ImageFile>;
  /** Dirty bytes between early writebacks. */
  writebackBytes?: number;
}

/**
 * Writes a partition image to a hidden temporary file beside its final name and only renames it
 * into place once its SHA-256 matches; a failed or interrupted extract leaves no `<name>.img`
 * that looks complete. The hash is computed on the fly while writes arrive in order (full
 * payloads), and by reading the file back otherwise.
 */
export class ImageFileWriter implements PartitionWriter {
  private readonly pending = new Set<Promise<void>>();
  private failure: unknown;
  private hash: Hash | undefined = createHash('sha256');
  private hashedUpTo = 0;
  private unsyncedBytes = 0;
  private writeback: Promise<void> = Promise.resolve();

  private constructor(
    readonly blockSize: number,
    readonly finalPath: string,
    readonly tempPath: string,
    private readonly handle: ImageFile,
    private readonly size: number,
    private readonly writebackBytes: number,
  ) {}

  static async create(finalPath: string, blockSize: number, size: number, options: ImageWriterOptions = {}): Promise<ImageFileWriter> {
    const tempPath = path.join(path.dirname(finalPath), `.${path.basename(finalPath)}.partial-${process.pid}`);
    const open = options.open ?? ((file: string) => fs.open(file, 'w+', 0o644));
    const handle = await open(tempPath);
    return new ImageFileWriter(blockSize, finalPath, tempPath, handle, size, options.writebackBytes ?? EARLY_WRITEBACK_BYTES);
  }

  async write(dstBlock: number, data: Buffer): Promise<void> {
    const position = dstBlock * this.blockSize;
    this.feedHash(position, data);
    await this.submit(position, data);
  }

  async zero(dstBlock: number, numBlocks: number): Promise<void> {
    let position = dstBlock * this.blockSize;
    let remaining = numBlocks * this.blockSize;
    while (remaining > 0) {
      const chunk = ZEROS.subarray(0, Math.min(remaining, ZEROS.length));
      this.feedHash(position, chunk);
      await this.submit(position, chunk);
      position += chunk.length;
      remaining -= chunk.length;
    }
  }

  copy(_srcBlock: number, dstBlock: number, _numBlocks: number, data: Buffer): Promise<void> {
    return this.write(dstBlock, data);
  }

  /** Waits for the writes, sizes the file, checks its hash, makes it durable, renames it. */
  async commit(expectedHash: Buffer, partition: string): Promise<void> {
    await this.drain();
    await this.handle.truncate(this.size);
    const actual = await this.digest();
    if (!actual.equals(expectedHash)) {
      throw new VabError('EHASH', `partition ${partition}: new image hashes to ${actual.toString('hex')}, manifest says ${expectedHash.toString('hex')}`);
    }
    await this.handle.sync();
    await this.handle.close();
    await fs.rename(this.tempPath, this.finalPath);
    await fsyncDirectory(path.dirname(this.finalPath));
  }

  /** Gives up: the temporary file is removed, nothing is left under the final name. */
  async abort(): Promise<void> {
    await Promise.allSettled([...this.pending, this.writeback]);
    await this.handle.close().catch(() => undefined);
    await fs.rm(this.tempPath, { force: true });
  }

  private async submit(position: number, data: Buffer): Promise<void> {
    if (this.failure) throw this.failure;
    const done: Promise<void> = writeFully(this.handle, data, position).then(
      () => void this.pending.delete(done),
      (err) => {
        this.pending.delete(done);
        this.failure ??= new VabError('EIO', `cannot write ${this.tempPath}: ${(err as Error).message}`, { file: this.tempPath, offset: position, cause: err });
      },
    );
    this.pending.add(done);
    this.unsyncedBytes += data.length;
    if (this.unsyncedBytes >= this.writebackBytes) {
      this.unsyncedBytes = 0;
      // Not waited for here: it only starts the disk's work early, one at a time. Its error must be
      // kept: Linux reports a writeback error to one fsync and then clears it, so the final fsync
      // in commit() can succeed on a file whose data was lost.
      this.writeback = this.writeback.then(() => this.handle.datasync()).catch((err: unknown) => {
        this.failure ??= new VabError('EIO', `cannot write ${this.tempPath} back to disk: ${(err as Error).message}`, { file: this.tempPath, cause: err });
      });
    }
    if (this.pending.size >= MAX_PENDING_WRITES) await Promise.race(this.pending);
  }

  private async drain(): Promise<void> {
    await Promise.all([...this.pending, this.writeback]);
    if (this.failure) throw this.failure;
  }

  private feedHash(position: number, data: Buffer): void {
    if (!this.hash) return;
    if (position !== this.hashedUpTo) {
      this.hash = undefined; // out of order: hash by reading back instead
      return;
    }
    const usable = Math.max(0, Math.min(data.length, this.size - position));
    this.hash.update(data.subarray(0, usable));
    this.hashedUpTo += data.length;
  }

  private async digest(): Promise<Buffer> {
    if (this.hash) {
      for (let at = this.hashedUpTo; at < this.size; at += ZEROS.length) this.hash.update(ZEROS.subarray(0, Math.min(ZEROS.length, this.size - at)));
      return this.hash.digest();
    }
    return hashFile(this.handle, this.size);
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

/** Reads blocks of an old image file. */
export class ImageFileReader implements SourceReader {
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
    const buffer = Buffer.allocUnsafeSlow(numBlocks * this.blockSize);
    const position = startBlock * this.blockSize;
    let done = 0;
    while (done < buffer.length) {
      const { bytesRead } = await this.handle.read(buffer, done, buffer.length - done, position + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    buffer.fill(0, done); // past the end of the image
    return buffer;
  }

  /** SHA-256 of the image's first `size` bytes. */
  hash(size: number): Promise<Buffer> {
    return hashFile(this.handle, size);
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}
