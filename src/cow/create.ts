import os from 'node:os';
import { replaceFileAtomically } from '../util/atomic';
import { createProgress, Progress } from '../util/progress';
import { parseCompression } from './codec';
import { CompressPool } from './compress-pool';
import { badArgument } from './errors';
import { openFile, RandomAccessFile } from './file';
import { CowCompression, CowOpType, DEFAULT_BLOCK_SIZE } from './format';
import { ParallelReplaces } from './parallel-replace';
import { CHUNK_BLOCKS, CowPlan, planCow } from './plan';
import { CowWriter, replaceOpCount } from './writer';

export interface CreateCowOptions {
  /** "none" (default), "gz", "brotli", "lz4", "zstd", optionally with ",level". */
  compression?: string;
  /** Largest Replace unit in bytes, 4 KiB (default) to 256 KiB. */
  compressionFactor?: number;
  /** Use Xor ops for blocks that still resemble their old content. */
  xor?: boolean;
  blockSize?: number;
  /** Reserve the 2 MiB scratch region (default true, as Android does). */
  scratchSpace?: boolean;
  /** Show a progress bar on stderr when it is a terminal. */
  progress?: boolean;
  /**
   * Threads compressing Replace units (default: the cores, at most 4). 1 compresses on the main
   * thread; any count writes the same bytes.
   */
  threads?: number;
}

export interface CreateCowResult {
  blockCount: number;
  opCount: number;
  ops: { copy: number; replace: number; zero: number; xor: number };
  /** Ordered ops recorded as sequence data. */
  sequenceLength: number;
  cowSize: number;
  /** Threads that compressed Replace units (1: the main thread). */
  threads: number;
}

/** NEW is read, and runs are cut, this many blocks at a time (a multiple of every unit size). */
const REPLACE_CHUNK_BLOCKS = CHUNK_BLOCKS;
/** Raw bytes of Replace units planning may hand to the threads before the write pass takes them. */
const PRECOMPRESS_BUDGET_BYTES = 256 * 1024 * 1024;
/** Chunks the write pass keeps compressing ahead of the one it writes (bounds memory, keeps threads busy). */
const WINDOW_CHUNKS = 16;

function defaultThreads(): number {
  const cores = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
  return Math.max(1, Math.min(4, cores));
}

/**
 * Writes the COW that turns `basePath` (OLD) into `targetPath` (NEW). The file appears at
 * `outPath` only once complete and durable (temporary file, fsync, rename, fsync directory).
 */
export async function createCow(basePath: string, targetPath: string, outPath: string, options: CreateCowOptions = {}): Promise<CreateCowResult> {
  const bs = options.blockSize ?? DEFAULT_BLOCK_SIZE;
  const base = await openFile(basePath, 'r');
  const target = await openFile(targetPath, 'r').catch(async (err) => {
    await base.close();
    throw err;
  });
  let progress: Progress | undefined;
  let pool: CompressPool | undefined;
  try {
    const targetSize = await target.size();
    if (targetSize % bs !== 0) throw badArgument(`is ${targetSize} bytes, not a multiple of the ${bs}-byte block size`, { file: targetPath });
    const baseBlocks = Math.floor((await base.size()) / bs);
    progress = options.progress ? createProgress('cow create', baseBlocks + 2 * (targetSize / bs)) : undefined;
    const factor = options.compressionFactor ?? bs;
    const spec = parseCompression(options.compression ?? 'none');
    const threads = options.threads ?? defaultThreads();
    if (!Number.isInteger(threads) || threads < 1 || threads > 64) throw badArgument(`thread count ${threads} is not an integer from 1 to 64`);
    let replaces: ParallelReplaces | undefined;
    // Checked here as the writer would, before a thread is started for it.
    if (threads > 1 && spec.algorithm !== CowCompression.None && factor % bs === 0 && factor >= bs) {
      pool = new CompressPool(threads, spec, factor);
      replaces = new ParallelReplaces(pool, bs, factor / bs, PRECOMPRESS_BUDGET_BYTES);
    }
    const onChunk = replaces && replaces.offer.bind(replaces);
    const hashBlocks = pool && pool.hashBlocks.bind(pool);
    const plan = await planCow(base, target, { blockSize: bs, xor: options.xor ?? false, progress, onChunk, hashBlocks });
    return await replaceFileAtomically(outPath, async (tmpPath) => {
      const file = await openFile(tmpPath, 'w+');
      try {
        const result = await writePlan(file, plan, base, target, options, progress, replaces);
        result.threads = pool ? threads : 1;
        return result;
      } finally {
        await file.close();
      }
    });
  } finally {
    progress?.finish();
    await pool?.close();
    await base.close();
    await target.close();
  }
}

async function writePlan(
  file: RandomAccessFile,
  plan: CowPlan,
  base: RandomAccessFile,
  target: RandomAccessFile,
  options: CreateCowOptions,
  progress?: Progress,
  replaces?: ParallelReplaces,
): Promise<CreateCowResult> {
  const bs = plan.blockSize;
  const factor = options.compressionFactor ?? bs;
  const counts = countOps(plan, factor / bs);
  const opCount = counts.copy + counts.replace + counts.zero + counts.xor;
  const writer = await CowWriter.createOn(file, {
    blockSize: bs,
    compression: options.compression ?? 'none',
    compressionFactor: factor,
    opCountMax: opCount,
    maxBlocks: Math.max(plan.blockCount, 1),
    scratchSpace: options.scratchSpace,
    unpublished: true,
  });
  if (plan.sequence.length > 0) await writer.addSequenceData(plan.sequence);
  const newBlock = Buffer.allocUnsafe(bs);
  const oldBlock = Buffer.allocUnsafe(bs);
  for (const t of plan.sequence) {
    if (plan.kinds[t] === CowOpType.Copy) {
      await writer.addCopy(t, plan.sources[t]);
      continue;
    }
    await Promise.all([target.read(newBlock, 0, bs, t * bs), base.read(oldBlock, 0, bs, t * bs)]);
    for (let i = 0; i < bs; i++) newBlock[i] ^= oldBlock[i];
    await writer.addXorBlocks(t, newBlock, t, 0);
  }
  if (replaces) await writeReplacesParallel(writer, plan, target, replaces, progress);
  else await writeReplaces(writer, plan, target, progress);
  await writer.finalize();
  return { blockCount: plan.blockCount, opCount, ops: counts, sequenceLength: plan.sequence.length, cowSize: writer.estimate().cowSize, threads: 1 };
}

async function writeReplaces(writer: CowWriter, plan: CowPlan, target: RandomAccessFile, progress?: Progress): Promise<void> {
  const bs = plan.blockSize;
  const chunk = Buffer.allocUnsafe(REPLACE_CHUNK_BLOCKS * bs);
  let chunkFirst = -1;
  for (const [kind, t, end] of runs(plan)) {
    if (kind === CowOpType.Zero) await writer.addZeroBlocks(t, end - t);
    else if (kind === CowOpType.Replace) {
      // NEW is read a whole chunk at a time: replace runs are short and many.
      const first = t - (t % REPLACE_CHUNK_BLOCKS);
      if (first !== chunkFirst) {
        await target.read(chunk, 0, Math.min(REPLACE_CHUNK_BLOCKS, plan.blockCount - first) * bs, first * bs);
        chunkFirst = first;
      }
      await writer.addRawBlocks(t, chunk.subarray((t - first) * bs, (end - first) * bs));
    }
    progress?.advance(end - t);
  }
}

/** The same ops as writeReplaces, their units compressed on the threads a window of chunks ahead. */
async function writeReplacesParallel(writer: CowWriter, plan: CowPlan, target: RandomAccessFile, replaces: ParallelReplaces, progress?: Progress): Promise<void> {
  const chunkCount = Math.ceil(plan.blockCount / REPLACE_CHUNK_BLOCKS);
  const prepared = new Map<number, Promise<void>>();
  for (let c = 0; c < chunkCount; c++) {
    for (let k = c; k < Math.min(chunkCount, c + WINDOW_CHUNKS); k++) {
      if (prepared.has(k)) continue;
      const first = k * REPLACE_CHUNK_BLOCKS;
      const promise = replaces.prepare(first, Math.min(REPLACE_CHUNK_BLOCKS, plan.blockCount - first), plan.kinds, target);
      promise.catch(() => undefined); // seen when its chunk is written
      prepared.set(k, promise);
    }
    await prepared.get(c);
    prepared.delete(c);
    const first = c * REPLACE_CHUNK_BLOCKS;
    const compressed = await replaces.take(first);
    let unit = 0;
    let payloadAt = 0;
    for (const [kind, t, end] of runs(plan, first)) {
      if (kind === CowOpType.Zero) await writer.addZeroBlocks(t, end - t);
      else if (kind === CowOpType.Replace && compressed) {
        const { units, payloads } = compressed;
        for (; unit * 2 < units.length && units[unit * 2] < end; unit++) {
          const length = payloads.lengths[unit];
          await writer.addCompressedReplace(units[unit * 2], units[unit * 2 + 1], payloads.data.subarray(payloadAt, payloadAt + length));
          payloadAt += length;
        }
      }
      progress?.advance(end - t);
    }
    // The writer has copied the payloads into its own batch.
    if (compressed) replaces.release(compressed.payloads);
  }
}

function countOps(plan: CowPlan, unitBlocks: number): CreateCowResult['ops'] {
  const ops = { copy: 0, replace: 0, zero: 0, xor: 0 };
  for (const [kind, t, end] of runs(plan)) {
    if (kind === CowOpType.Copy) ops.copy += end - t;
    else if (kind === CowOpType.Xor) ops.xor += end - t;
    else if (kind === CowOpType.Zero) ops.zero += end - t;
    else if (kind === CowOpType.Replace) ops.replace += replaceOpCount(end - t, unitBlocks);
  }
  return ops;
}

/**
 * Runs of blocks with the same kind, split at every chunk boundary (a multiple of every unit size);
 * from block `from`, up to the end of that chunk only when `from` is given.
 */
function* runs(plan: CowPlan, from?: number): Generator<[number, number, number]> {
  const stop = from === undefined ? plan.blockCount : Math.min(plan.blockCount, from + REPLACE_CHUNK_BLOCKS);
  for (let t = from ?? 0; t < stop; ) {
    const kind = plan.kinds[t];
    const limit = Math.min(plan.blockCount, t - (t % REPLACE_CHUNK_BLOCKS) + REPLACE_CHUNK_BLOCKS);
    let end = t + 1;
    while (end < limit && plan.kinds[end] === kind) end++;
    yield [kind, t, end];
    t = end;
  }
}
