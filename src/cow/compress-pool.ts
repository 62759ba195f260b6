import { VabError } from '../util/errors';
import { WorkerPool } from '../util/worker-pool';
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
function hashBlocks(input, blockSize) {
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
  return { reply: { hashes: hashes.buffer, zero: zero.buffer, data }, transfer: [hashes.buffer, zero.buffer, data] };
}
async function job({ data, byteLength, sizes, blockSize, out }) {
  const input = Buffer.from(data, 0, byteLength);
  if (blockSize) return hashBlocks(input, blockSize);
  if (!compress) throw new Error('no compressor for algorithm ' + algorithm);
  // A payload is never longer than its unit (one that does not shrink is kept raw), so an output
  // as long as the input holds them all; the caller's recycled one saves fresh pages.
  const output = out && out.byteLength >= byteLength ? new Uint8Array(out) : new Uint8Array(byteLength);
  const lengths = [];
  let at = 0;
  for (let i = 0, from = 0; i < sizes.length; from += sizes[i], i++) {
    const unit = input.subarray(from, from + sizes[i]);
    const packed = compress(unit);
    const kept = packed.length >= unit.length ? unit : packed;
    output.set(kept, at);
    at += kept.length;
    lengths.push(kept.length);
  }
  // The input goes back too, so the caller can fill it with the next batch.
  return { reply: { out: output.buffer, used: at, lengths, data }, transfer: [output.buffer, data] };
}
`;

/** The payloads of a batch of units, back to back, and each one's length (unit size means raw). */
export interface CompressedUnits {
  data: Buffer;
  lengths: number[];
  /** The batch's input buffer, handed back for reuse. */
  input: Uint8Array;
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
  out?: ArrayBuffer;
  used?: number;
  lengths?: number[];
  hashes?: ArrayBuffer;
  zero?: ArrayBuffer;
}

export class CompressPool {
  private readonly pool: WorkerPool;

  constructor(threads: number, spec: CompressionSpec, maxUnitSize: number) {
    const workerData = {
      algorithm: spec.algorithm,
      level: spec.level,
      maxUnitSize,
      codes: { gz: CowCompression.Gz, brotli: CowCompression.Brotli, lz4: CowCompression.Lz4, zstd: CowCompression.Zstd },
      zstdPath: require.resolve('zstd-napi/binding'),
      lz4Path: require.resolve('lz4-napi'),
    };
    this.pool = new WorkerPool({ name: 'compression', threads, source: WORKER_SOURCE, workerData });
  }

  /**
   * Compresses the units laid back to back in `data` (`sizes` bytes each). `data` must start at
   * the start of its ArrayBuffer: that buffer is moved to the worker, unusable here afterwards,
   * and comes back as `input`. `out`, when given, is moved too and reused for the payloads.
   */
  async compress(data: Uint8Array, sizes: number[], out?: ArrayBuffer): Promise<CompressedUnits> {
    const reply = await this.send(data, { sizes, out }, out ? [out] : []);
    return { data: Buffer.from(reply.out!, 0, reply.used!), lengths: reply.lengths!, input: new Uint8Array(reply.data!) };
  }

  /** CRC-32 and zero flag of each block in `data` (moved to the worker, as for compress). */
  async hashBlocks(data: Uint8Array, blockSize: number): Promise<BlockHashes> {
    const reply = await this.send(data, { blockSize });
    return { hashes: new Uint32Array(reply.hashes!), zero: new Uint8Array(reply.zero!), data: new Uint8Array(reply.data!) };
  }

  private async send(data: Uint8Array, fields: { sizes?: number[]; blockSize?: number; out?: ArrayBuffer }, transfer: ArrayBuffer[] = []): Promise<Reply> {
    // A view from the start of its buffer: the whole buffer moves, byteLength says how much is data.
    if (data.byteOffset !== 0) throw new RangeError('a batch must start at the start of its ArrayBuffer');
    try {
      return await this.pool.run<Reply>({ data: data.buffer, byteLength: data.byteLength, ...fields }, [data.buffer as ArrayBuffer, ...transfer]);
    } catch (err) {
      // Callers of the COW layer handle CowFormatErrors; the code says what kind of failure it was.
      if (err instanceof VabError) throw new CowFormatError(err.code, err.message, { cause: err });
      throw err;
    }
  }

  /** Stops every thread; anything still waiting fails (never hangs). */
  close(): Promise<void> {
    return this.pool.close();
  }
}
