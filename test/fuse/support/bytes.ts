/** A deliberately naive little-endian byte builder: the independent oracle for golden-bytes tests. */
export class Bytes {
  private readonly bytes: number[] = [];

  u8(value: number): this {
    this.bytes.push(value & 0xff);
    return this;
  }

  u16(value: number): this {
    return this.little(BigInt(value), 2);
  }

  u32(value: number): this {
    return this.little(BigInt(value >>> 0), 4);
  }

  i32(value: number): this {
    return this.little(BigInt.asUintN(32, BigInt(value)), 4);
  }

  u64(value: number | bigint): this {
    return this.little(BigInt(value), 8);
  }

  zeros(count: number): this {
    for (let i = 0; i < count; i++) this.bytes.push(0);
    return this;
  }

  text(value: string): this {
    for (const byte of Buffer.from(value, 'utf8')) this.bytes.push(byte);
    return this;
  }

  /** Pads with zeros up to the next multiple of 8. */
  align8(): this {
    while (this.bytes.length % 8 !== 0) this.bytes.push(0);
    return this;
  }

  get length(): number {
    return this.bytes.length;
  }

  build(): Buffer {
    return Buffer.from(this.bytes);
  }

  private little(value: bigint, width: number): this {
    for (let i = 0; i < width; i++) this.bytes.push(Number((value >> BigInt(8 * i)) & 0xffn));
    return this;
  }
}
