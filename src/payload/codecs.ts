import zlib from 'node:zlib';
import { promisify } from 'node:util';
import * as zstd from 'zstd-napi';
import Bzip2Wasm from '@foxglove/wasm-bz2';
import { errnoCode, VabError } from '../util/errors';
import { LzmaNativeModule, OVERFLOW, ZstdBinding, bz2Bounded, decodeFailure, xzInto, zstdInto } from './bounded-decode';

/**
 * The compressors payloads use, behind one shape. Library choices (see docs/payload.md):
 * - zstd: zstd-napi (native libzstd).
 * - xz: lzma-native (native liblzma, the library the Debian `xz` tool uses). @napi-rs/lzma 1.5
 *   needs Node >= 22.20, and its Node-20-capable 1.4 line encodes without compressing.
 * - bzip2: @foxglove/wasm-bz2 (libbzip2 compiled to WebAssembly) to decompress, compressjs (pure
 *   JavaScript, slow) to compress; no maintained native binding exists.
 * - brotli: Node's zlib.
 */

interface LzmaNative extends LzmaNativeModule {
  compress(data: Buffer, options: { preset: number; threads?: number }): Promise<Buffer>;
}
interface CompressJs {
  Bzip2: { compressFile(data: Uint8Array, output?: undefined, blockSize?: number): number[] | Uint8Array };
}

// Neither package ships type declarations; these are the few calls vab makes.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const lzma = require('lzma-native') as LzmaNative;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const zstdBinding = require('zstd-napi/binding') as ZstdBinding;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const compressjs = require('compressjs') as CompressJs;

const brotliCompress = promisify(zlib.brotliCompress);
const brotliDecompress = promisify(zlib.brotliDecompress);

let bzip2: Promise<Bzip2Wasm> | undefined;
function bzip2Module(): Promise<Bzip2Wasm> {
  bzip2 ??= Bzip2Wasm.init();
  return bzip2;
}

export type Compression = 'zstd' | 'xz' | 'bz2' | 'brotli';

/** Below this, a synchronous call costs less than a trip through libuv's thread pool. */
const SMALL_INPUT = 64 * 1024;

/**
 * Decompresses `data` into at most `limit` bytes: `exact` (the default) requires exactly `limit`,
 * `atMost` accepts less. Every decoder stops as soon as the output would pass `limit`, so a bomb
 * costs no more memory or time than the output it is allowed to have (see bounded-decode.ts).
 */
export async function decompress(kind: Compression, data: Buffer, limit: number, mode: 'exact' | 'atMost' = 'exact'): Promise<Buffer> {
  if (!Number.isSafeInteger(limit) || limit < 0) throw new RangeError(`decompression limit ${limit} is not a byte count`);
  let out: Buffer;
  try {
    out = await decode(kind, data, limit);
  } catch (err) {
    if (err instanceof VabError) throw err;
    throw new VabError('ECORRUPT', decodeFailure(kind, err as Error), { cause: err });
  }
  checkDecodedSize(kind, out.length, limit, mode);
  return out;
}

export function checkDecodedSize(kind: Compression, size: number, limit: number, mode: 'exact' | 'atMost' = 'exact'): void {
  if (size > limit || (mode === 'exact' && size !== limit)) {
    throw new VabError('ECORRUPT', `${kind} data decompresses to ${size} bytes, expected ${mode === 'exact' ? '' : 'at most '}${limit}`);
  }
}

const asBuffer = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);

async function decode(kind: Compression, data: Buffer, limit: number): Promise<Buffer> {
  switch (kind) {
    case 'zstd': {
      const out = Buffer.allocUnsafe(limit);
      return out.subarray(0, zstdInto(zstdBinding, data, out));
    }
    case 'xz': {
      const out = Buffer.allocUnsafe(limit);
      return out.subarray(0, xzInto(lzma, data, out));
    }
    case 'brotli':
      try {
        // Node's zlib stops and fails with ERR_BUFFER_TOO_LARGE once output passes maxOutputLength.
        const options = { maxOutputLength: Math.max(1, limit) };
        return data.length < SMALL_INPUT ? zlib.brotliDecompressSync(data, options) : await brotliDecompress(data, options);
      } catch (err) {
        if (errnoCode(err) === 'ERR_BUFFER_TOO_LARGE') throw new Error(`${OVERFLOW} ${limit} bytes`);
        throw err;
      }
    case 'bz2':
      return asBuffer(bz2Bounded(await bzip2Module(), data, limit));
  }
}

export interface CompressOptions {
  /** xz preset / zstd level / brotli quality; each codec has a sensible default. */
  level?: number;
}

export async function compress(kind: Compression, data: Buffer, options: CompressOptions = {}): Promise<Buffer> {
  switch (kind) {
    case 'zstd':
      return zstd.compress(data, { compressionLevel: options.level ?? 9 });
    case 'xz':
      // lzma-native always writes a CRC32 check (it maps "none" to CRC32); AOSP writes none.
      // Every xz decoder, xz-embedded on devices included, handles CRC32.
      return lzma.compress(data, { preset: options.level ?? 6, threads: 1 });
    case 'brotli': {
      // A window no larger than the data: the default 4 MiB window per call dominates the cost
      // (allocation and garbage collection) of the many small streams bsdiff patches have.
      const window = Math.min(24, Math.max(10, Math.ceil(Math.log2(data.length + 1))));
      const params = {
        [zlib.constants.BROTLI_PARAM_QUALITY]: options.level ?? 9,
        [zlib.constants.BROTLI_PARAM_SIZE_HINT]: data.length,
        [zlib.constants.BROTLI_PARAM_LGWIN]: window,
      };
      return data.length < SMALL_INPUT ? zlib.brotliCompressSync(data, { params }) : brotliCompress(data, { params });
    }
    case 'bz2':
      return Buffer.from(compressjs.Bzip2.compressFile(data, undefined, 9));
  }
}
