import { sizeClass } from '../util/size-class';

/**
 * Read buffers for block-file IO, reused once the FUSE reply carrying them has been written.
 *
 * A fresh 1 MiB Buffer per READ is cheap to allocate but not to collect: V8 counts the external
 * memory and, at a few hundred MiB/s, runs a full mark-compact every few tens of milliseconds (seen
 * with --trace-gc: "GC in old space requested", about a fifth of the kernel's CPU on a sequential
 * read). Buffers come in power-of-two classes, each its own ArrayBuffer, so a view handed back is
 * traced to its buffer by identity. Only buffers this pool lent and not yet got back are accepted,
 * so a double give or a foreign buffer can never make two IOs share memory. A buffer whose IO
 * failed is simply never given back (a late answer may still be written into it) and is collected.
 */
export class BufferPool {
  private readonly free = new Map<number, Buffer[]>();
  private readonly lent = new WeakSet<ArrayBufferLike>();

  constructor(
    private readonly smallest = 4096,
    private readonly largest = 2 * 1024 * 1024,
    /** Free buffers kept per class: about what is in flight at once (FUSE max_background is 64). */
    private readonly keepPerClass = 16,
  ) {}

  /** `length` bytes of uninitialised memory. */
  take(length: number): Buffer {
    const size = this.classOf(length);
    if (size === undefined) return Buffer.allocUnsafe(length);
    const buffer = this.free.get(size)?.pop() ?? Buffer.allocUnsafeSlow(size);
    this.lent.add(buffer.buffer);
    return buffer.subarray(0, length);
  }

  /** Hands back a buffer from `take` (or any view of it); anything else is ignored. */
  give(view: Buffer): void {
    const memory = view.buffer;
    if (!this.lent.has(memory)) return;
    this.lent.delete(memory);
    const buffer = Buffer.from(memory, 0, memory.byteLength);
    let list = this.free.get(buffer.length);
    if (!list) this.free.set(buffer.length, (list = []));
    if (list.length < this.keepPerClass) list.push(buffer);
  }

  private classOf(length: number): number | undefined {
    return length > this.largest ? undefined : sizeClass(length, this.smallest);
  }
}
