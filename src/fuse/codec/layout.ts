import { VabError } from '../../util/errors';

/**
 * Fixed-size kernel structs described as field tables, so every struct gets its encoder and its
 * decoder from one list of (name, kind) pairs in wire order and the two cannot drift apart.
 * `pad*` fields are written as zero and not decoded. `u64` fields are JS numbers and refuse values
 * beyond 2^53 (offsets, sizes and ids never get there); `big64` keeps a field exact as a bigint
 * (request ids, lock owners, timestamps the kernel may send as any 64-bit pattern).
 */
export type FieldKind = 'u16' | 'u32' | 'i32' | 'u64' | 'big64' | 'pad16' | 'pad32' | 'pad64';
export type Layout = readonly (readonly [string, FieldKind])[];

type PadKind = 'pad16' | 'pad32' | 'pad64';
type ValueOf<K extends FieldKind> = K extends 'big64' ? bigint : number;
export type StructOf<L extends Layout> = {
  [F in L[number] as F[1] extends PadKind ? never : F[0]]: ValueOf<F[1]>;
};

const WIDTH: Record<FieldKind, number> = { u16: 2, u32: 4, i32: 4, u64: 8, big64: 8, pad16: 2, pad32: 4, pad64: 8 };
const TWO_POW_32 = 0x1_0000_0000;
const MAX_SAFE_HIGH_WORD = 0x1f_ffff;

/** Decoding ran past the end of the bytes the kernel sent, or met a value it cannot represent. */
export class FuseDecodeError extends VabError {
  constructor(message: string, offset: number, truncated: boolean) {
    super(truncated ? 'ETRUNCATED' : 'EPROTO', message, { file: 'fuse request', offset });
    this.name = 'FuseDecodeError';
  }
}

/** Throws a typed error unless `size` bytes are available at `offset`. */
export function need(source: Uint8Array, offset: number, size: number, what: string): void {
  if (offset < 0 || source.length - offset < size) {
    throw new FuseDecodeError(`${what} needs ${size} bytes, only ${Math.max(0, source.length - offset)} present`, offset, true);
  }
}

export interface StructCodec<L extends Layout> {
  readonly name: string;
  readonly size: number;
  encode(value: StructOf<L>, target?: Buffer, offset?: number): Buffer;
  decode(source: Buffer, offset?: number): StructOf<L>;
}

export function defineStruct<const L extends Layout>(name: string, layout: L): StructCodec<L> {
  const size = layout.reduce((sum, [, kind]) => sum + WIDTH[kind], 0);
  return {
    name,
    size,
    encode(value, target = Buffer.alloc(size), offset = 0) {
      if (target.length - offset < size) throw new RangeError(`${name} needs ${size} bytes at offset ${offset}`);
      const fields = value as Record<string, number | bigint>;
      let at = offset;
      for (const [field, kind] of layout) {
        writeField(target, at, kind, fields[field], `${name}.${field}`);
        at += WIDTH[kind];
      }
      return target;
    },
    decode(source, offset = 0) {
      need(source, offset, size, name);
      const out: Record<string, number | bigint> = {};
      let at = offset;
      for (const [field, kind] of layout) {
        if (!kind.startsWith('pad')) out[field] = readField(source, at, kind, `${name}.${field}`);
        at += WIDTH[kind];
      }
      return out as StructOf<L>;
    },
  };
}

function writeField(target: Buffer, at: number, kind: FieldKind, value: number | bigint | undefined, what: string): void {
  switch (kind) {
    case 'pad16':
      target.writeUInt16LE(0, at);
      return;
    case 'pad32':
      target.writeUInt32LE(0, at);
      return;
    case 'pad64':
      target.writeBigUInt64LE(0n, at);
      return;
    case 'u16':
      target.writeUInt16LE(asNumber(value, what), at);
      return;
    case 'u32':
      target.writeUInt32LE(asNumber(value, what), at);
      return;
    case 'i32':
      target.writeInt32LE(asNumber(value, what), at);
      return;
    case 'u64': {
      const n = asNumber(value, what);
      if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`${what} must be a non-negative safe integer, got ${n}`);
      target.writeUInt32LE(n % TWO_POW_32, at);
      target.writeUInt32LE(Math.floor(n / TWO_POW_32), at + 4);
      return;
    }
    case 'big64':
      if (typeof value !== 'bigint') throw new TypeError(`${what} must be a bigint`);
      target.writeBigUInt64LE(value, at);
      return;
  }
}

function readField(source: Buffer, at: number, kind: FieldKind, what: string): number | bigint {
  switch (kind) {
    case 'u16':
      return source.readUInt16LE(at);
    case 'u32':
      return source.readUInt32LE(at);
    case 'i32':
      return source.readInt32LE(at);
    case 'big64':
      return source.readBigUInt64LE(at);
    default: {
      const high = source.readUInt32LE(at + 4);
      if (high > MAX_SAFE_HIGH_WORD) {
        throw new FuseDecodeError(`${what} 0x${source.readBigUInt64LE(at).toString(16)} is beyond 2^53`, at, false);
      }
      return high * TWO_POW_32 + source.readUInt32LE(at);
    }
  }
}

function asNumber(value: number | bigint | undefined, what: string): number {
  if (typeof value !== 'number') throw new TypeError(`${what} must be a number`);
  return value;
}
