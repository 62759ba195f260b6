import { createHash } from 'node:crypto';
import os from 'node:os';
import { VabError } from '../util/errors';
import { WorkerPool, ownsItsMemory } from '../util/worker-pool';
import { bz2Bounded, decodeFailure, xzInto, zstdInto } from './bounded-decode';
import { Compression, checkDecodedSize, decompress } from './codecs';
import { hashFileRange } from './hash-range';

/**
 * Decompression off the main thread, so that several operations decompress at once while the
 * main thread hashes and writes. The decoders (bounded-decode.ts) are synchronous, so large blobs
 * go to a few worker threads, started when the first one arrives; small blobs are not worth the
 * round trip and decode in place. Whoever extracts owns one pool and closes it.
 */

const OFF_THREAD_MIN_BYTES = 64 * 1024;
const OFF_THREAD_KINDS: ReadonlySet<Compression> = new Set(['zstd', 'xz', 'bz2']);

/** Thrown (inside the worker too) when a blob's SHA-256 is not the one the manifest gives. */
export function dataHashMismatch(actual: Buffer, expected: Buffer): VabError {
  return new VabError('EHASH', `data hash mismatch: blob hashes to ${actual.toString('hex')}, manifest says ${expected.toString('hex')}`);
}

// The decoders travel as source text: the same functions run here and on the threads.
const WORKER_SOURCE = `
// Each codec is loaded on first use: a thread that only hashes or only decodes zstd (incremental
// payloads) would otherwise spend more time loading liblzma and the bzip2 WebAssembly than working.
let zstdModule, lzmaModule, Bzip2Module;
const zstdLib = () => (zstdModule = zstdModule || require(workerData.zstdPath));
const lzmaLib = () => (lzmaModule = lzmaModule || require(workerData.lzmaPath));
const bzip2Lib = () => (Bzip2Module = Bzip2Module || require(workerData.bzip2Path));
const { createHash } = require('crypto');
${zstdInto.toString()}
${xzInto.toString()}
${bz2Bounded.toString()}
${decodeFailure.toString()}
let bzip2;
${hashFileRange.toString()}
let rangeBuffer = Buffer.alloc(0);
function sha256OfRanges(file, ranges) {
  const fs = require('fs');
  const hash = createHash('sha256');
  const fd = fs.openSync(file, 'r');
  try {
    for (const [position, length] of ranges) rangeBuffer = hashFileRange(fs, fd, hash, rangeBuffer, position, length);
  } finally {
    fs.closeSync(fd);
  }
  return { reply: { digest: hash.digest() } };
}
async function job({ kind, data, limit, sha256, file, ranges }) {
  if (kind === 'sha256-ranges') return sha256OfRanges(file, ranges);
  if (kind === 'sha256-lend') {
    const digest = createHash('sha256').update(data).digest();
    return { reply: { digest, data }, transfer: [data.buffer] };
  }
  const input = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (sha256) {
    const actual = createHash('sha256').update(input).digest();
    if (!actual.equals(Buffer.from(sha256))) return { reply: { hashMismatch: actual } };
  }
  let out;
  try {
    if (kind === 'bz2') {
      bzip2 = bzip2 || (await bzip2Lib().init());
      out = bz2Bounded(bzip2, input, limit);
    } else {
      const dst = new Uint8Array(limit);
      out = dst.subarray(0, kind === 'zstd' ? zstdInto(zstdLib(), input, dst) : xzInto(lzmaLib(), input, dst));
    }
  } catch (err) {
    throw Object.assign(new Error(decodeFailure(kind, err)), { code: 'ECORRUPT' });
  }
  // Only a view that owns its whole buffer can move to the main thread.
  if (out.byteOffset !== 0 || out.buffer.byteLength !== out.length) out = out.slice();
  return { reply: { out }, transfer: [out.buffer] };
}
`;

function defaultThreads(): number {
  const cores = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
  return Math.max(1, Math.min(4, cores));
}

export class DecodePool {
  private pool: WorkerPool | undefined;

  constructor(private readonly threadCount: number = defaultThreads()) {}

  /**
   * Checks `data` against `sha256` (when given) and decompresses it to exactly `expectedSize`
   * bytes, keeping the main thread free. `data` may be moved to a worker: do not use it after.
   */
  async verifyAndDecompress(kind: Compression, data: Buffer, expectedSize: number, sha256?: Buffer): Promise<Buffer> {
    if (!OFF_THREAD_KINDS.has(kind) || data.length < OFF_THREAD_MIN_BYTES) return verifyAndDecompressHere(kind, data, expectedSize, sha256);
    const pool = this.started();
    const owned = ownsItsMemory(data);
    // The hash may be a view into the whole manifest: send a copy of its 32 bytes, not the manifest.
    const message = { kind, data, limit: expectedSize, sha256: sha256 && Buffer.from(sha256) };
    const reply = await pool.run<{ out?: Uint8Array; hashMismatch?: Uint8Array }>(message, owned ? [data.buffer as ArrayBuffer] : []);
    if (reply.hashMismatch) throw dataHashMismatch(Buffer.from(reply.hashMismatch), sha256!);
    const out = Buffer.from(reply.out!.buffer, reply.out!.byteOffset, reply.out!.byteLength);
    checkDecodedSize(kind, out.length, expectedSize);
    return out;
  }

  /**
   * SHA-256 of byte ranges of a file, read and hashed on a decoder thread: the old image's blocks
   * an operation reads are checked there while the main thread reads them for itself.
   */
  async sha256OfFileRanges(file: string, ranges: ReadonlyArray<readonly [number, number]>): Promise<Buffer> {
    const reply = await this.started().run<{ digest: Uint8Array }>({ kind: 'sha256-ranges', file, ranges });
    return Buffer.from(reply.digest);
  }

  /**
   * SHA-256 of `data`, taken on a decoder thread. The bytes move there and back without a copy:
   * use the returned buffer, not `data`, afterwards. Small or shared buffers are hashed here.
   */
  async sha256Lending(data: Buffer): Promise<{ digest: Buffer; data: Buffer }> {
    const owned = ownsItsMemory(data);
    if (!owned || data.length < OFF_THREAD_MIN_BYTES) return { digest: createHash('sha256').update(data).digest(), data };
    const reply = await this.started().run<{ digest: Uint8Array; data: Uint8Array }>({ kind: 'sha256-lend', data }, [data.buffer as ArrayBuffer]);
    return { digest: Buffer.from(reply.digest), data: Buffer.from(reply.data.buffer, reply.data.byteOffset, reply.data.byteLength) };
  }

  async close(): Promise<void> {
    const pool = this.pool;
    this.pool = undefined;
    await pool?.close();
  }

  private started(): WorkerPool {
    this.pool ??= new WorkerPool({
      name: 'decoder',
      threads: this.threadCount,
      source: WORKER_SOURCE,
      workerData: { zstdPath: require.resolve('zstd-napi/binding'), lzmaPath: require.resolve('lzma-native'), bzip2Path: require.resolve('@foxglove/wasm-bz2') },
    });
    return this.pool;
  }
}

/** The same checks and decoding on the calling thread. */
export async function verifyAndDecompressHere(kind: Compression, data: Buffer, expectedSize: number, sha256?: Buffer): Promise<Buffer> {
  if (sha256) {
    const actual = createHash('sha256').update(data).digest();
    if (!actual.equals(sha256)) throw dataHashMismatch(actual, sha256);
  }
  return decompress(kind, data, expectedSize);
}
