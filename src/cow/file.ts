import fsCallbacks, { promises as fs } from 'node:fs';
import { truncated } from './errors';

/**
 * Positional file access, the only IO the COW code does. Everything goes through this interface so
 * tests can substitute a file that loses unsynced writes or "crashes" after the N-th write, and so
 * nothing in the read path blocks the event loop.
 */
export interface RandomAccessFile {
  readonly path: string;
  /** Reads up to `length` bytes; returns how many were read (fewer only at end of file). */
  read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<number>;
  write(buffer: Uint8Array, offset: number, length: number, position: number): Promise<void>;
  /** Writes the buffers back to back starting at `position`. */
  writev(buffers: readonly Uint8Array[], position: number): Promise<void>;
  sync(): Promise<void>;
  truncate(length: number): Promise<void>;
  size(): Promise<number>;
  close(): Promise<void>;
}

export type OpenMode = 'r' | 'r+' | 'w+';

export async function openFile(path: string, mode: OpenMode): Promise<RandomAccessFile> {
  return new NodeFile(path, await fs.open(path, mode, 0o644));
}

class NodeFile implements RandomAccessFile {
  /** Reads running on the raw descriptor: close() waits for them, as FileHandle does for its own. */
  private readonly reading = new Set<Promise<number>>();

  constructor(
    readonly path: string,
    private readonly handle: fs.FileHandle,
  ) {}

  async read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    let done = 0;
    while (done < length) {
      const bytesRead = await this.pread(buffer, offset + done, length - done, position + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return done;
  }

  /**
   * One pread through the callback API on the handle's descriptor: it costs the main thread about
   * half what FileHandle.read does, which counts when a read of 1 MiB of the new image takes a
   * dozen small reads. A close waits for these reads: the descriptor's number could otherwise be
   * reused by another file while one is still running.
   */
  private pread(buffer: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    const read = new Promise<number>((resolve, reject) => {
      fsCallbacks.read(this.handle.fd, buffer, offset, length, position, (err, bytesRead) => (err ? reject(err) : resolve(bytesRead)));
    });
    this.reading.add(read);
    const forget = () => void this.reading.delete(read);
    read.then(forget, forget);
    return read;
  }

  async write(buffer: Uint8Array, offset: number, length: number, position: number): Promise<void> {
    let done = 0;
    while (done < length) {
      const { bytesWritten } = await this.handle.write(buffer, offset + done, length - done, position + done);
      done += bytesWritten;
    }
  }

  async writev(buffers: readonly Uint8Array[], position: number): Promise<void> {
    // Linux caps one writev at IOV_MAX (1024) buffers.
    for (let first = 0; first < buffers.length; first += 1024) {
      const batch = buffers.slice(first, first + 1024);
      const total = batch.reduce((sum, b) => sum + b.length, 0);
      const { bytesWritten } = await this.handle.writev(batch as Uint8Array[], position);
      if (bytesWritten !== total) {
        // A short writev is rare (signals, full disk); finish the rest one buffer at a time.
        let skip = bytesWritten;
        let at = position + bytesWritten;
        for (const b of batch) {
          if (skip >= b.length) {
            skip -= b.length;
            continue;
          }
          await this.write(b, skip, b.length - skip, at);
          at += b.length - skip;
          skip = 0;
        }
      }
      position += total;
    }
  }

  async sync(): Promise<void> {
    await this.handle.sync();
  }

  async truncate(length: number): Promise<void> {
    await this.handle.truncate(length);
  }

  async size(): Promise<number> {
    return (await this.handle.stat()).size;
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.reading]);
    await this.handle.close();
  }
}

/** Reads exactly `length` bytes or throws a truncation error naming what was being read. */
export async function readExactly(file: RandomAccessFile, buffer: Uint8Array, offset: number, length: number, position: number, what: string, op?: number): Promise<void> {
  const got = await file.read(buffer, offset, length, position);
  if (got !== length) {
    throw truncated(`${what} needs ${length} bytes at offset ${position}, the file ends after ${got}`, { file: file.path, offset: position + got, op });
  }
}
