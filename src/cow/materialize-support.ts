import type { RandomAccessFile } from './file';
import type { CowReader } from './reader';

/** What the materializer's callers keep across calls, and the reads it is built on. */

/** Scratch a caller keeps across calls: one per concurrent caller, never shared. */
export class MaterializeScratch {
  readonly block: Buffer;
  readonly blockWords: Int32Array;
  private readonly unit: Buffer;
  private unitOp = -1;
  private staging: Buffer = Buffer.alloc(0);
  private side: Buffer = Buffer.alloc(0);

  constructor(cow: CowReader) {
    // Its own ArrayBuffer, so the Int32Array view over it is aligned.
    this.block = Buffer.from(new ArrayBuffer(cow.blockSize));
    this.blockWords = new Int32Array(this.block.buffer, 0, cow.blockSize >> 2);
    this.unit = Buffer.allocUnsafe(Math.max(cow.header.maxCompressionSize, cow.blockSize));
  }

  /**
   * The expanded unit of a multi-block Replace op. The last one is kept: reads that walk through a
   * unit, or land on its neighbouring blocks, decompress it once (snapuserd's prev_op cache).
   */
  async unitOf(cow: CowReader, op: number, payload: () => Buffer | Promise<Buffer>): Promise<Buffer> {
    const unit = this.unit.subarray(0, cow.unitSize(op));
    if (this.unitOp !== op) {
      this.unitOp = -1;
      cow.expandPayload(op, await payload(), unit);
      this.unitOp = op;
    }
    return unit;
  }

  /** At least `bytes` of space for reads that must not land in the caller's buffer yet. */
  aside(bytes: number): Buffer {
    if (this.side.length < bytes) this.side = Buffer.allocUnsafe(bytes);
    return this.side;
  }

  /** At least `bytes` of staging space, kept for later calls. */
  stage(bytes: number): Buffer {
    if (this.staging.length < bytes) this.staging = Buffer.allocUnsafe(bytes);
    return this.staging;
  }
}

/** Reads file bytes; bytes past its end read as zeros (an image that grew). */
export async function readZeroPadded(file: RandomAccessFile, dst: Uint8Array, out: number, length: number, position: number): Promise<void> {
  let done = 0;
  while (done < length) {
    const got = await file.read(dst, out + done, length - done, position + done);
    if (got === 0) break;
    done += got;
  }
  if (done < length) dst.fill(0, out + done, out + length);
}

/** Waits for every read (none may still be filling a buffer when this returns), then throws the first failure. */
export async function settleAll(reads: Promise<unknown>[]): Promise<void> {
  if (reads.length === 1) {
    await reads[0];
    return;
  }
  const results = await Promise.allSettled(reads);
  for (const r of results) if (r.status === 'rejected') throw r.reason;
}

/** XORs one block into dst, a 32-bit word at a time when dst is aligned. */
export function xorInto(dst: Uint8Array, at: number, data: Buffer, words: Int32Array): void {
  if (((dst.byteOffset + at) & 3) === 0 && (data.length & 3) === 0) {
    const target = new Int32Array(dst.buffer, dst.byteOffset + at, data.length >> 2);
    for (let i = 0; i < words.length; i++) target[i] ^= words[i];
    return;
  }
  for (let i = 0; i < data.length; i++) dst[at + i] ^= data[i];
}
