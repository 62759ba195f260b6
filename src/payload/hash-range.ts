import type { Hash } from 'node:crypto';

/** What `hashFileRange` needs of `fs`: a worker passes its own `require('fs')`. */
export interface ReadSyncFs {
  readSync(fd: number, buffer: Uint8Array, offset: number, length: number, position: number): number;
}

/**
 * Feeds bytes [position, position + length) of an open file to `hash`, a `buffer` at a time;
 * bytes past the end of the file count as zeros (an image's unwritten tail, or an old image
 * shorter than the blocks an op names). Returns the buffer, grown if it was empty.
 *
 * It runs on worker threads, which receive its source text (hash-follower.ts, codec-pool.ts):
 * self-contained, synchronous (those threads serve no mount and do nothing else meanwhile).
 */
export function hashFileRange(fs: ReadSyncFs, fd: number, hash: Hash, buffer: Buffer, position: number, length: number): Buffer {
  if (buffer.length === 0) buffer = Buffer.allocUnsafe(4 * 1024 * 1024);
  for (let at = 0; at < length; ) {
    const want = Math.min(buffer.length, length - at);
    let got = 0;
    while (got < want) {
      const n = fs.readSync(fd, buffer, got, want - got, position + at + got);
      if (n === 0) break;
      got += n;
    }
    buffer.fill(0, got, want);
    hash.update(buffer.subarray(0, want));
    at += want;
  }
  return buffer;
}
