import { RandomAccessFile } from '../../src/cow/file';

/**
 * Little-endian byte builder for expected bytes, written independently of the encoders under test:
 * it knows nothing of COW structs, only how to lay out integers.
 */
export class Bytes {
  private readonly parts: number[] = [];

  u8(v: number): this {
    this.parts.push(v & 0xff);
    return this;
  }
  u16(v: number): this {
    return this.u8(v).u8(v >>> 8);
  }
  u32(v: number): this {
    return this.u16(v & 0xffff).u16(Math.floor(v / 0x10000));
  }
  u64(v: number | bigint): this {
    let x = BigInt(v);
    for (let i = 0; i < 8; i++, x >>= 8n) this.u8(Number(x & 0xffn));
    return this;
  }
  raw(bytes: ArrayLike<number>): this {
    for (let i = 0; i < bytes.length; i++) this.u8(bytes[i]);
    return this;
  }
  zeros(n: number): this {
    for (let i = 0; i < n; i++) this.parts.push(0);
    return this;
  }
  get length(): number {
    return this.parts.length;
  }
  build(): Buffer {
    return Buffer.from(this.parts);
  }
}

/** Thrown by a MemoryFile when the simulated machine loses power. */
export class PowerCut extends Error {}

/**
 * Counts writes across every file on it and cuts the power at write number `cutAt` (that write
 * and everything after it never happen).
 */
export class Disk {
  writes = 0;
  cutAt = Infinity;

  beforeWrite(): void {
    if (++this.writes >= this.cutAt) throw new PowerCut(`power cut at write ${this.writes}`);
  }
}

/**
 * An in-memory file that remembers what was last fsynced. After a power cut `afterCrash` gives
 * the content a reboot could find: only the synced bytes, or every write that happened.
 */
export class MemoryFile implements RandomAccessFile {
  private data: Buffer;
  private length: number;
  private synced: Buffer;

  constructor(
    readonly path: string,
    initial: Buffer = Buffer.alloc(0),
    private readonly disk: Disk = new Disk(),
  ) {
    this.data = Buffer.from(initial);
    this.length = initial.length;
    this.synced = Buffer.from(initial);
  }

  contents(): Buffer {
    return Buffer.from(this.data.subarray(0, this.length));
  }

  afterCrash(keepUnsynced: boolean): Buffer {
    return keepUnsynced ? this.contents() : Buffer.from(this.synced);
  }

  async read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    const n = Math.max(0, Math.min(length, this.length - position));
    buffer.set(this.data.subarray(position, position + n), offset);
    return n;
  }

  async write(buffer: Uint8Array, offset: number, length: number, position: number): Promise<void> {
    this.disk.beforeWrite();
    this.ensure(position + length);
    this.data.set(buffer.subarray(offset, offset + length), position);
    this.length = Math.max(this.length, position + length);
  }

  async writev(buffers: readonly Uint8Array[], position: number): Promise<void> {
    for (const b of buffers) {
      await this.write(b, 0, b.length, position);
      position += b.length;
    }
  }

  async sync(): Promise<void> {
    this.synced = this.contents();
  }

  async truncate(length: number): Promise<void> {
    this.disk.beforeWrite();
    this.ensure(length);
    if (length < this.length) this.data.fill(0, length, this.length);
    this.length = length;
  }

  async size(): Promise<number> {
    return this.length;
  }

  async close(): Promise<void> {}

  private ensure(size: number): void {
    if (size <= this.data.length) return;
    const next = Buffer.alloc(Math.max(size, this.data.length * 2));
    this.data.copy(next, 0, 0, this.length);
    this.data = next;
  }
}

/** Deterministic pseudo-random bytes (xorshift32), so tests need no fixtures. */
export function pseudoRandom(length: number, seed: number): Buffer {
  const out = Buffer.alloc(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** Compressible pseudo-random content: short words from a small vocabulary. */
export function textLike(length: number, seed: number): Buffer {
  const noise = pseudoRandom(length, seed);
  const words = ['vab ', 'cow ', 'block ', 'merge ', 'snapshot ', 'android ', 'update ', '\n'];
  const out = Buffer.alloc(length);
  for (let at = 0, i = 0; at < length; i++) {
    const word = words[noise[i % length] & 7];
    out.write(word.slice(0, length - at), at, 'latin1');
    at += word.length;
  }
  return out;
}
