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
let zeroBlock = Buffer.alloc(0);
function hashBlocks(id, input, blockSize) {
  const count = input.length / blockSize;
  const hashes = new Uint32Array(count);
  const zero = new Uint8Array(count);
  if (zeroBlock.length !== blockSize) zeroBlock = Buffer.alloc(blockSize);
  for (let i = 0; i < count; i++) {
    const block = input.subarray(i * blockSize, (i + 1) * blockSize);
    if (block.equals(zeroBlock)) zero[i] = 1;
    else hashes[i] = zlib.crc32(block);
  }
  // The input goes back too, so the caller can read the next batch into it.
  const data = input.buffer;
  parentPort.postMessage({ id, hashes: hashes.buffer, zero: zero.buffer, data }, [hashes.buffer, zero.buffer, data]);
}
parentPort.on('message', ({ id, data, byteLength, sizes, blockSize }) => {
  try {
    const input = Buffer.from(data, 0, byteLength);
    if (blockSize) return hashBlocks(id, input, blockSize);
    if (!compress) throw new Error('no compressor for algorithm ' + algorithm);
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

/** Per block of a batch: its CRC-32 (as zlib.crc32 gives it), or a zero flag for an all-zero block. */
export interface BlockHashes {
  hashes: Uint32Array;
  zero: Uint8Array;
  /** The batch's bytes, handed back for reuse. */
  data: Uint8Array;
}

interface Reply {
  data?: ArrayBuffer;
  id: number;
  out?: ArrayBuffer;
  lengths?: number[];
  hashes?: ArrayBuffer;
  zero?: ArrayBuffer;
  error?: string;
}

interface Waiter {
  resolve: (reply: Reply) => void;
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
      worker.on('message', (msg: Reply) => {
        slot.busy--;
        const waiter = this.pending.get(msg.id);
        this.pending.delete(msg.id);
        if (!waiter) return;
        if (msg.error !== undefined) waiter.reject(new CowFormatError('EIO', `compression thread failed: ${msg.error}`));
        else waiter.resolve(msg);
      });
      worker.on('error', (err) => this.failAll(new CowFormatError('EIO', `compression thread failed: ${err.message}`, { cause: err })));
      worker.on('exit', (code) => this.failAll(new CowFormatError('EIO', `compression thread exited with code ${code}`)));
      this.workers.push(slot);
    }
  }

  /**
   * Compresses the units laid back to back in `data` (`sizes` bytes each). `data` must start at
   * the start of its ArrayBuffer: that buffer is moved to the worker, unusable here afterwards.
   */
  async compress(data: Uint8Array, sizes: number[]): Promise<CompressedUnits> {
    const reply = await this.send(data, { sizes });
    return { data: Buffer.from(reply.out!), lengths: reply.lengths! };
  }

  /** CRC-32 and zero flag of each block in `data` (moved to the worker, as for compress). */
  async hashBlocks(data: Uint8Array, blockSize: number): Promise<BlockHashes> {
    const reply = await this.send(data, { blockSize });
    return { hashes: new Uint32Array(reply.hashes!), zero: new Uint8Array(reply.zero!), data: new Uint8Array(reply.data!) };
  }

  private send(data: Uint8Array, fields: { sizes?: number[]; blockSize?: number }): Promise<Reply> {
    if (this.failure) return Promise.reject(this.failure);
    // A view from the start of its buffer: the whole buffer moves, byteLength says how much is data.
    // Checked before a waiter is registered, which would otherwise never be answered.
    if (data.byteOffset !== 0) return Promise.reject(new RangeError('a batch must start at the start of its ArrayBuffer'));
    const slot = this.workers.reduce((a, b) => (b.busy < a.busy ? b : a));
    const id = this.nextId++;
    const promise = new Promise<Reply>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
    });
    slot.busy++;
    slot.worker.postMessage({ id, data: data.buffer, byteLength: data.byteLength, ...fields }, [data.buffer as ArrayBuffer]);
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
