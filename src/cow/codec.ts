import zlib from 'node:zlib';
import * as lz4 from 'lz4-napi';
import * as zstd from 'zstd-napi/binding';
import { badArgument } from './errors';
import { compressionFromName, compressionName, CowCompression } from './format';
import { decodeLz4Block } from './lz4-block';
import { VabError } from '../util/errors';

/**
 * One compressor/decompressor per COW. Android compresses each op's unit (block_size << bits bytes)
 * independently: gz = zlib compress2 (zlib-wrapped deflate), brotli = BrotliEncoderCompress with the
 * default window, lz4 = LZ4_compress_default (raw block), zstd = one frame with windowLog set to
 * log2(max_compression_size).
 */
export interface CowCodec {
  readonly algorithm: CowCompression;
  readonly level: number;
  /**
   * Compresses one unit. The result may be no smaller than the input: the writer then stores the
   * unit raw. The returned bytes may live in a buffer the next call reuses; copy them to keep them.
   */
  compress(unit: Uint8Array): Uint8Array;
  /**
   * Decompresses `src` into all of `dst`; throws CodecError unless it yields exactly dst.length
   * bytes. Decoding stops as soon as the output would pass dst.length (a bomb costs no memory).
   */
  decompressInto(src: Uint8Array, dst: Uint8Array): void;
}

/** Compressed data that does not decode to what it must: corrupt input, so ECORRUPT. */
export class CodecError extends VabError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ECORRUPT', message, options);
    this.name = 'CodecError';
  }
}

/** Android's defaults (GetDefaultCompressionLevel): gz Z_BEST_COMPRESSION, brotli BROTLI_DEFAULT_QUALITY, zstd ZSTD_defaultCLevel. */
export const DEFAULT_LEVELS: Readonly<Record<number, number>> = {
  [CowCompression.None]: 0,
  [CowCompression.Gz]: 9,
  [CowCompression.Brotli]: 11,
  [CowCompression.Lz4]: 0,
  [CowCompression.Zstd]: 3,
};

export interface CompressionSpec {
  algorithm: CowCompression;
  level: number;
}

/** Parses "zstd", "gz,6", "none" ... the way CowOptions.compression is written (one comma at most). */
export function parseCompression(text: string): CompressionSpec {
  const parts = text.split(',');
  if (parts.length > 2) throw badArgument(`compression "${text}" has more than one comma`);
  const algorithm = compressionFromName(parts[0].trim());
  if (algorithm === undefined) throw badArgument(`unknown compression "${parts[0]}" (none, gz, brotli, lz4, zstd)`);
  if (parts.length === 1) return { algorithm, level: DEFAULT_LEVELS[algorithm] };
  const level = Number(parts[1]);
  if (!Number.isInteger(level)) throw badArgument(`compression level "${parts[1]}" is not an integer`);
  return { algorithm, level };
}

export function createCodec(algorithm: CowCompression, level: number = DEFAULT_LEVELS[algorithm] ?? 0, maxUnitSize = 4096): CowCodec {
  switch (algorithm) {
    case CowCompression.None:
      return noneCodec;
    case CowCompression.Gz:
      return new GzCodec(level);
    case CowCompression.Brotli:
      return new BrotliCodec(level);
    case CowCompression.Lz4:
      return new Lz4Codec();
    case CowCompression.Zstd:
      return new ZstdCodec(level, maxUnitSize);
    default:
      throw badArgument(`unknown compression algorithm ${compressionName(algorithm)}`);
  }
}

const noneCodec: CowCodec = {
  algorithm: CowCompression.None,
  level: 0,
  compress: (unit) => unit,
  decompressInto(src, dst) {
    if (src.length !== dst.length) throw new CodecError(`raw data is ${src.length} bytes, expected ${dst.length}`);
    dst.set(src);
  },
};

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function checkedCopy(out: Buffer, dst: Uint8Array, name: string): void {
  if (out.length !== dst.length) throw new CodecError(`${name} data decompressed to ${out.length} bytes, expected ${dst.length}`);
  dst.set(out);
}

class GzCodec implements CowCodec {
  readonly algorithm = CowCompression.Gz;
  constructor(readonly level: number) {}

  compress(unit: Uint8Array): Uint8Array {
    return zlib.deflateSync(unit, { level: this.level });
  }

  decompressInto(src: Uint8Array, dst: Uint8Array): void {
    let out: Buffer;
    try {
      out = zlib.inflateSync(src, { maxOutputLength: dst.length });
    } catch (err) {
      throw new CodecError(`gz data does not inflate to ${dst.length} bytes: ${(err as Error).message}`, { cause: err });
    }
    checkedCopy(out, dst, 'gz');
  }
}

class BrotliCodec implements CowCodec {
  readonly algorithm = CowCompression.Brotli;
  constructor(readonly level: number) {}

  compress(unit: Uint8Array): Uint8Array {
    return zlib.brotliCompressSync(unit, {
      params: {
        [zlib.constants.BROTLI_PARAM_QUALITY]: this.level,
        [zlib.constants.BROTLI_PARAM_LGWIN]: zlib.constants.BROTLI_DEFAULT_WINDOW,
        [zlib.constants.BROTLI_PARAM_SIZE_HINT]: unit.length,
      },
    });
  }

  decompressInto(src: Uint8Array, dst: Uint8Array): void {
    let out: Buffer;
    try {
      out = zlib.brotliDecompressSync(src, { maxOutputLength: dst.length });
    } catch (err) {
      throw new CodecError(`brotli data does not decode to ${dst.length} bytes: ${(err as Error).message}`, { cause: err });
    }
    checkedCopy(out, dst, 'brotli');
  }
}

/** lz4-napi prefixes the block with its u32 size; the COW stores the raw block after it. */
const LZ4_NAPI_SIZE_PREFIX = 4;

class Lz4Codec implements CowCodec {
  readonly algorithm = CowCompression.Lz4;
  readonly level = 0;

  compress(unit: Uint8Array): Uint8Array {
    return lz4.compressSync(asBuffer(unit)).subarray(LZ4_NAPI_SIZE_PREFIX);
  }

  decompressInto(src: Uint8Array, dst: Uint8Array): void {
    let written: number;
    try {
      written = decodeLz4Block(src, 0, src.length, dst, 0, dst.length);
    } catch (err) {
      throw new CodecError(`lz4 data is malformed: ${(err as Error).message}`, { cause: err });
    }
    if (written !== dst.length) throw new CodecError(`lz4 data decompressed to ${written} bytes, expected ${dst.length}`);
  }
}

class ZstdCodec implements CowCodec {
  readonly algorithm = CowCompression.Zstd;
  private readonly cctx = new zstd.CCtx();
  private readonly dctx = new zstd.DCtx();
  private output: Buffer;

  constructor(readonly level: number, maxUnitSize: number) {
    this.cctx.setParameter(zstd.CParameter.compressionLevel, level);
    this.cctx.setParameter(zstd.CParameter.windowLog, Math.max(10, Math.log2(maxUnitSize)));
    this.output = Buffer.allocUnsafe(zstd.compressBound(maxUnitSize));
  }

  compress(unit: Uint8Array): Uint8Array {
    const bound = zstd.compressBound(unit.length);
    if (this.output.length < bound) this.output = Buffer.allocUnsafe(bound);
    const size = this.cctx.compress2(this.output, unit);
    return this.output.subarray(0, size);
  }

  decompressInto(src: Uint8Array, dst: Uint8Array): void {
    let written: number;
    try {
      // A frame declaring more than the unit is refused before any decoding; any other frame
      // decodes straight into dst, which fails as soon as the output does not fit.
      const declared = zstd.getFrameContentSize(src);
      if (declared !== null && declared > dst.length) throw new CodecError(`zstd frame declares ${declared} bytes, more than the ${dst.length} expected`);
      written = this.dctx.decompress(dst, src);
    } catch (err) {
      if (err instanceof CodecError) throw err;
      throw new CodecError(`zstd data is malformed: ${(err as Error).message}`, { cause: err });
    }
    if (written !== dst.length) throw new CodecError(`zstd data decompressed to ${written} bytes, expected ${dst.length}`);
  }
}
