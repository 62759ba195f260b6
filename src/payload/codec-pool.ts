import { createHash } from 'node:crypto';
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { VabError } from '../util/errors';
import { Compression, decompress } from './codecs';

/**
 * Decompression off the main thread, so that several operations decompress at once while the
 * main thread hashes and writes. xz (lzma-native) and brotli (zlib) are asynchronous already and
 * run on libuv's pool; zstd-napi and the bzip2 WebAssembly module are synchronous, so they go to
 * a few worker threads. Small blobs are not worth the round trip and decode in place.
 */

const OFF_THREAD_MIN_BYTES = 64 * 1024;

/** Thrown (inside the worker too) when a blob's SHA-256 is not the one the manifest gives. */
export function dataHashMismatch(actual: Buffer, expected: Buffer): VabError {
  return new VabError('EHASH', `data hash mismatch: blob hashes to ${actual.toString('hex')}, manifest says ${expected.toString('hex')}`);
}

// Eval'd so that it also runs under ts-jest (no .ts worker files); module paths come resolved.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('worker_threads');
const zstd = require(workerData.zstdPath);
const Bzip2 = require(workerData.bzip2Path);
let bzip2;
const { createHash } = require('crypto');
parentPort.on('message', async ({ id, kind, data, expectedSize, sha256 }) => {
  try {
    if (sha256) {
      const actual = createHash('sha256').update(data).digest();
      if (!actual.equals(Buffer.from(sha256))) {
        parentPort.postMessage({ id, hashMismatch: actual });
        return;
      }
    }
    let out;
    if (kind === 'zstd') out = zstd.decompress(data);
    else {
      bzip2 = bzip2 || (await Bzip2.init());
      out = Buffer.from(bzip2.decompress(data, expectedSize + 1));
    }
    if (out.byteOffset !== 0 || out.buffer.byteLength !== out.length) out = Buffer.from(out);
    parentPort.postMessage({ id, out }, [out.buffer]);
  } catch (err) {
    parentPort.postMessage({ id, error: String(err && err.message || err) });
  }
});
`;

interface Pending {
  resolve: (out: Buffer) => void;
  reject: (err: Error) => void;
  sha256?: Buffer;
}

class DecodePool {
  private readonly workers: Array<{ worker: Worker; busy: number }> = [];
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  /** Set when a worker died: the pool is then replaced, never waited on again. */
  broken = false;

  constructor(size: number) {
    const workerData = { zstdPath: require.resolve('zstd-napi'), bzip2Path: require.resolve('@foxglove/wasm-bz2') };
    for (let i = 0; i < size; i++) {
      const worker = new Worker(WORKER_SOURCE, { eval: true, workerData });
      const slot = { worker, busy: 0 };
      worker.on('message', (msg: { id: number; out?: Uint8Array; error?: string; hashMismatch?: Uint8Array }) => {
        slot.busy--;
        if (slot.busy === 0) worker.unref();
        const waiter = this.pending.get(msg.id);
        this.pending.delete(msg.id);
        if (!waiter) return;
        if (msg.hashMismatch) waiter.reject(dataHashMismatch(Buffer.from(msg.hashMismatch), waiter.sha256!));
        else if (msg.error !== undefined) waiter.reject(new Error(msg.error));
        else waiter.resolve(Buffer.from(msg.out!.buffer, msg.out!.byteOffset, msg.out!.byteLength));
      });
      worker.on('error', (err) => this.failAll(err));
      worker.on('exit', (code) => this.failAll(new Error(`decoder thread exited with code ${code}`)));
      worker.unref(); // an idle pool never keeps the process alive
      this.workers.push(slot);
    }
  }

  /** `data` is handed over to the worker (its memory moves there) when it owns its whole ArrayBuffer. */
  run(kind: 'zstd' | 'bz2', data: Buffer, expectedSize: number, sha256?: Buffer): Promise<Buffer> {
    const slot = this.workers.reduce((a, b) => (b.busy < a.busy ? b : a));
    const id = this.nextId++;
    const owned = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength && data.buffer instanceof ArrayBuffer;
    return new Promise<Buffer>((resolve, reject) => {
      this.pending.set(id, { resolve, reject, sha256 });
      slot.busy++;
      slot.worker.ref();
      // The hash may be a view into the whole manifest: send a copy of its 32 bytes, not the manifest.
      slot.worker.postMessage({ id, kind, data, expectedSize, sha256: sha256 && Buffer.from(sha256) }, owned ? [data.buffer as ArrayBuffer] : []);
    });
  }

  private failAll(err: Error): void {
    this.broken = true;
    for (const waiter of this.pending.values()) waiter.reject(err);
    this.pending.clear();
  }

  async close(): Promise<void> {
    this.broken = true;
    await Promise.all(this.workers.map((w) => w.worker.terminate()));
  }
}

let pool: DecodePool | undefined;

function poolSize(): number {
  const cores = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
  return Math.max(1, Math.min(4, cores));
}

/**
 * Checks `data` against `sha256` (when given) and decompresses it to exactly `expectedSize`
 * bytes, keeping the main thread free. `data` may be moved to a worker: do not use it after.
 */
export async function verifyAndDecompress(kind: Compression, data: Buffer, expectedSize: number, sha256?: Buffer): Promise<Buffer> {
  if ((kind !== 'zstd' && kind !== 'bz2') || data.length < OFF_THREAD_MIN_BYTES) {
    if (sha256) {
      const actual = createHash('sha256').update(data).digest();
      if (!actual.equals(sha256)) throw dataHashMismatch(actual, sha256);
    }
    return decompress(kind, data, expectedSize);
  }
  if (!pool || pool.broken) pool = new DecodePool(poolSize());
  let out: Buffer;
  try {
    out = await pool.run(kind, data, expectedSize, sha256);
  } catch (err) {
    if (err instanceof VabError) throw err;
    throw new VabError('ECORRUPT', `${kind} data does not decompress: ${(err as Error).message}`, { cause: err });
  }
  if (out.length !== expectedSize) throw new VabError('ECORRUPT', `${kind} data decompresses to ${out.length} bytes, expected ${expectedSize}`);
  return out;
}

/** Stops the worker threads (they are unref'd, so this is only needed for a clean shutdown). */
export async function closeDecodePool(): Promise<void> {
  const current = pool;
  pool = undefined;
  await current?.close();
}
