import { promises as fs } from 'node:fs';
import path from 'node:path';
import { Errno } from '../fuse/protocol';
import { FuseErrnoError } from '../fuse/types';
import { VabError, errnoCode } from '../util/errors';

/** Zeros written per call when a linear target is discarded. */
const DISCARD_CHUNK = 1 << 20;

/**
 * A target that maps a file straight through, as dm-linear maps a range of a block device: no
 * daemon, no misc endpoint. `vab boot` uses it for partitions without a snapshot, and a merged
 * snapshot's target becomes one.
 */
export class LinearMapping {
  private constructor(
    readonly file: string,
    private readonly handle: fs.FileHandle,
  ) {}

  /** Opens `file` read-write; it must be a regular file at least `size` bytes long. */
  static async open(file: string, size: number): Promise<LinearMapping> {
    if (!path.isAbsolute(file)) throw new VabError('EINVAL_INPUT', `linear file ${file} is not an absolute path`);
    let handle: fs.FileHandle;
    try {
      handle = await fs.open(file, 'r+');
    } catch (err) {
      throw new VabError(errnoCode(err) === 'ENOENT' ? 'ENOTFOUND' : 'EIO', `cannot open linear file ${file}: ${(err as Error).message}`, { file, cause: err });
    }
    try {
      const stat = await handle.stat();
      if (!stat.isFile() && !stat.isBlockDevice()) throw new VabError('EINVAL_INPUT', `linear file ${file} is not a file or block device`, { file });
      if (stat.isFile() && stat.size < size) throw new VabError('EINVAL_INPUT', `linear file ${file} is ${stat.size} bytes, smaller than the ${size}-byte target`, { file });
      return new LinearMapping(file, handle);
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  /** The size of the file, for a target created from it. */
  static async sizeOf(file: string): Promise<number> {
    if (!path.isAbsolute(file)) throw new VabError('EINVAL_INPUT', `linear file ${file} is not an absolute path`);
    try {
      return (await fs.stat(file)).size;
    } catch (err) {
      throw new VabError(errnoCode(err) === 'ENOENT' ? 'ENOTFOUND' : 'EIO', `cannot stat linear file ${file}: ${(err as Error).message}`, { file, cause: err });
    }
  }

  async read(offset: number, into: Buffer): Promise<void> {
    let done = 0;
    while (done < into.length) {
      const { bytesRead } = await this.io(() => this.handle.read(into, done, into.length - done, offset + done));
      if (bytesRead === 0) {
        into.fill(0, done);
        return;
      }
      done += bytesRead;
    }
  }

  async write(offset: number, data: Buffer): Promise<void> {
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.io(() => this.handle.write(data, done, data.length - done, offset + done));
      done += bytesWritten;
    }
  }

  async flush(): Promise<void> {
    await this.io(() => this.handle.sync());
  }

  /** Node cannot punch holes; the blocks read back as zeros either way. */
  async discard(offset: number, length: number): Promise<void> {
    const zeros = Buffer.alloc(Math.min(length, DISCARD_CHUNK));
    for (let at = 0; at < length; at += zeros.length) await this.write(offset + at, zeros.subarray(0, Math.min(zeros.length, length - at)));
  }

  /** Waits for IO still running on the file (FileHandle.close does), then closes it. */
  async close(): Promise<void> {
    await this.handle.close();
  }

  private async io<T>(op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (err) {
      throw new FuseErrnoError(Errno.EIO, `linear ${this.file}: ${(err as Error).message}`);
    }
  }
}
