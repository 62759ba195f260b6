
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

export { Disk, MemoryFile, PowerCut } from '../../src/cow/testing/memory-file';

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
