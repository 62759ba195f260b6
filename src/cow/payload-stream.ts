import { readExactly } from './file';
import { CowReader } from './reader';

/** Bytes of the data area fetched per read when walking payloads in (roughly) file order. */
const WINDOW_BYTES = 4 << 20;

interface Window {
  buffer: Buffer;
  start: number;
  end: number;
  /** Settles when the bytes are in; undefined once awaited. */
  pending?: Promise<void>;
}

/**
 * Payload bytes for a caller that visits ops in an order whose payloads mostly lie one after the
 * other in the data area (ops in block order of a COW written in block order): big windows, with
 * the next window already being read while the current one is decompressed.
 *
 * A payload returned by `lookup`/`load` stays valid only until the next call, so use it at once.
 */
export class PayloadStream {
  private current: Window;
  private ahead: Window;
  private readonly fileEnd: number;

  constructor(private readonly cow: CowReader) {
    const size = Math.max(WINDOW_BYTES, cow.header.maxCompressionSize, cow.blockSize);
    this.current = { buffer: Buffer.allocUnsafe(size), start: 0, end: 0 };
    this.ahead = { buffer: Buffer.allocUnsafe(size), start: 0, end: 0 };
    this.fileEnd = cow.parsed.fileSize;
  }

  /** The payload when it is already in memory (no await on the common path). */
  lookup(op: number): Buffer | undefined {
    const start = this.cow.ops.dataOffset[op];
    const end = start + this.cow.ops.dataLength[op];
    const w = this.current;
    if (start < w.start || end > w.end) return undefined;
    return w.buffer.subarray(start - w.start, end - w.start);
  }

  async load(op: number): Promise<Buffer> {
    const start = this.cow.ops.dataOffset[op];
    const end = start + this.cow.ops.dataLength[op];
    const ahead = this.ahead;
    if (ahead.pending) {
      const settled = ahead.pending;
      ahead.pending = undefined;
      if (start >= ahead.start && end <= ahead.end) {
        await settled;
        [this.current, this.ahead] = [ahead, this.current];
        this.prefetch(this.current.end);
        return this.lookup(op) as Buffer;
      }
      // A jump elsewhere: the speculative read must finish before its buffer is reused.
      await settled.catch(() => undefined);
    }
    const w = this.current;
    w.start = w.end = start;
    const length = Math.min(w.buffer.length, this.fileEnd - start);
    await readExactly(this.cow.file, w.buffer, 0, length, start, 'op data', op);
    w.end = start + length;
    this.prefetch(w.end);
    return this.lookup(op) as Buffer;
  }

  /** Waits for a read still in flight, so the file can be closed after it. */
  async settle(): Promise<void> {
    const pending = this.ahead.pending;
    this.ahead.pending = undefined;
    await pending?.catch(() => undefined);
  }

  private prefetch(start: number): void {
    const w = this.ahead;
    if (start >= this.fileEnd) return;
    const length = Math.min(w.buffer.length, this.fileEnd - start);
    w.start = w.end = start;
    w.pending = readExactly(this.cow.file, w.buffer, 0, length, start, 'op data').then(() => {
      w.end = start + length;
    });
    // Rejections surface when the window is used; an unused prefetch must not crash the process.
    w.pending.catch(() => undefined);
  }
}
