import { Worker } from 'node:worker_threads';
import { CompressionSpec } from './codec';
import { CowFormatError } from './errors';
import { CowCompression } from './format';

/**
 * Compresses Replace units on worker threads, each unit exactly as `createCodec(...).compress`
 * does on the main thread (codec.test.ts and create-threads.test.ts hold the two to the same
 * bytes), with the writer's rule applied: a unit that does not shrink comes back raw.
 */

// Eval'd so that it also runs under ts-jest (no .ts worker files); module paths come resolved.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('worker_threads');
const zlib = require('zlib');
const { algorithm, level, maxUnitSize, codes } = workerData;
let compress;
if (algorithm === codes.gz) compress = (unit) => zlib.deflateSync(unit, { level });
else if (algorithm === codes.brotli) {
  compress = (unit) => zlib.brotliCompressSync(unit, { params: {
    [zlib.constants.BROTLI_PARAM_QUALITY]: level,
    [zlib.constants.BROTLI_PARAM_LGWIN]: zlib.constants.BROTLI_DEFAULT_WINDOW,
    [zlib.constants.BROTLI_PARAM_SIZE_HINT]: unit.length,
  } });
} else if (algorithm === codes.lz4) {
  const lz4 = require(workerData.lz4Path);
  compress = (unit) => lz4.compressSync(unit).subarray(4);
} else if (algorithm === codes.zstd) {
  const zstd = require(workerData.zstdPath);
  const cctx = new zstd.CCtx();
  cctx.setParameter(zstd.CParameter.compressionLevel, level);
  cctx.setParameter(zstd.CParameter.windowLog, Math.max(10, Math.log2(maxUnitSize)));
  let output = Buffer.allocUnsafe(zstd.compressBound(maxUnitSize));
  compress = (unit) => {
    const bound = zstd.compressBound(unit.length);
    if (output.length < bound) output = Buffer.allocUnsafe(bound);
    return output.subarray(0, cctx.compress2(output, unit));
  };
}
parentPort.on('message', ({ id, data, sizes }) => {
  try {
    if (!compress) throw new Error('no compressor for algorithm ' + algorithm);
    const input = Buffer.from(data);
    const payloads = [];
    let total = 0;
    for (let i = 0, at = 0; i < sizes.length; at += sizes[i], i++) {
      const unit = input.subarray(at, at + sizes[i]);
      const packed = compress(unit);
      // zstd's output buffer is reused by the next unit: keep a copy.
      const kept = packed.length >= unit.length ? unit : Buffer.from(packed);
      payloads.push(kept);
      total += kept.length;
    }
    // Its own ArrayBuffer (never the shared Buffer pool), so it can be moved to the main thread.
    const out = new Uint8Array(total);
    const lengths = [];
    let at = 0;
    for (const p of payloads) { out.set(p, at); at += p.length; lengths.push(p.length); }
    parentPort.postMessage({ id, out: out.buffer, lengths }, [out.buffer]);
  } catch (err) {
    parentPort.postMessage({ id, error: String((err && err.message) || err) });
  }
});
`;

/** The payloads of a batch of units, back to back, and each one's length (unit size means raw). */
export interface CompressedUnits {
  data: Buffer;
  lengths: number[];
}

interface Waiter {
  resolve: (out: CompressedUnits) => void;
  reject: (err: Error) => void;
}

export class CompressPool {
  private readonly workers: Array<{ worker: Worker; busy: number }> = [];
  private readonly pending = new Map<number, Waiter>();
  private nextId = 0;
  private failure: Error | undefined;

  constructor(threads: number, spec: CompressionSpec, maxUnitSize: number) {
    const workerData = {
      algorithm: spec.algorithm,
      level: spec.level,
      maxUnitSize,
      codes: { gz: CowCompression.Gz, brotli: CowCompression.Brotli, lz4: CowCompression.Lz4, zstd: CowCompression.Zstd },
      zstdPath: require.resolve('zstd-napi/binding'),
      lz4Path: require.resolve('lz4-napi'),
    };
    for (let i = 0; i < threads; i++) {
      const worker = new Worker(WORKER_SOURCE, { eval: true, workerData });
      const slot = { worker, busy: 0 };
      worker.on('message', (msg: { id: number; out?: ArrayBuffer; lengths?: number[]; error?: string }) => {
        slot.busy--;
        const waiter = this.pending.get(msg.id);
        this.pending.delete(msg.id);
        if (!waiter) return;
        if (msg.error !== undefined) waiter.reject(new CowFormatError('EIO', `compression thread failed: ${msg.error}`));
        else waiter.resolve({ data: Buffer.from(msg.out!), lengths: msg.lengths! });
      });
      worker.on('error', (err) => this.failAll(new CowFormatError('EIO', `compression thread failed: ${err.message}`, { cause: err })));
      worker.on('exit', (code) => this.failAll(new CowFormatError('EIO', `compression thread exited with code ${code}`)));
      this.workers.push(slot);
    }
  }

  /**
   * Compresses the units laid back to back in `data` (`sizes` bytes each). `data` must own its
   * whole ArrayBuffer: it is moved to the worker, unusable here afterwards.
   */
  compress(data: Uint8Array, sizes: number[]): Promise<CompressedUnits> {
    if (this.failure) return Promise.reject(this.failure);
    const slot = this.workers.reduce((a, b) => (b.busy < a.busy ? b : a));
    const id = this.nextId++;
    const promise = new Promise<CompressedUnits>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
    });
    slot.busy++;
    slot.worker.postMessage({ id, data: data.buffer, sizes }, [data.buffer as ArrayBuffer]);
    return promise;
  }

  /** Stops every thread; anything still waiting fails (never hangs). */
  async close(): Promise<void> {
    const workers = this.workers.splice(0);
    await Promise.all(workers.map((w) => w.worker.terminate()));
    this.failAll(new CowFormatError('ESTATE', 'the compression pool is closed'));
  }

  private failAll(err: Error): void {
    this.failure ??= err;
    for (const waiter of this.pending.values()) waiter.reject(this.failure);
    this.pending.clear();
  }
}
