import zlib from 'node:zlib';
import type { Progress } from '../util/progress';
import { RandomAccessFile, readExactly } from './file';
import { CowOpType } from './format';

/** What `vab cow create` decides for each block of the new image. */
export const UNCHANGED = 0;

export interface CowPlan {
  blockSize: number;
  /** Blocks of the new image. */
  blockCount: number;
  /** Per new block: UNCHANGED or a CowOpType (Copy, Replace, Zero, Xor). */
  kinds: Uint8Array;
  /** Per Copy block: the old block it copies. Xor blocks always use their own old block. */
  sources: Uint32Array;
  /** The Copy and Xor blocks in an order that is safe to merge in place. */
  sequence: Uint32Array;
}

export interface PlanOptions {
  blockSize: number;
  /** Emit Xor ops for blocks that still resemble their old content. */
  xor: boolean;
  progress?: Progress;
  /**
   * Called once a chunk of NEW (`count` blocks from `first`, bytes in `data`) is classified, before
   * `data` is reused: its kinds are final unless orderForMerge later breaks a cycle there.
   */
  onChunk?: (first: number, count: number, data: Buffer, kinds: Uint8Array) => void;
  /**
   * Hashes a batch of OLD blocks elsewhere (worker threads), as hashBlock and isZero would here;
   * `data` owns its ArrayBuffer and may be moved away.
   */
  hashBlocks?: (data: Uint8Array, blockSize: number) => Promise<{ hashes: Uint32Array; zero: Uint8Array; data: Uint8Array }>;
}

/** Batches of OLD being hashed off the main thread at once. */
const HASH_WINDOW_CHUNKS = 8;

/** NEW is classified this many blocks at a time. */
export const CHUNK_BLOCKS = 256;
const EMPTY = 0;

/**
 * Compares OLD and NEW block by block: unchanged blocks get no op, zero blocks a Zero op, blocks
 * found elsewhere in OLD a Copy op, blocks that resemble their old self an Xor op (with `xor`),
 * anything else a Replace op. Then it orders the Copy/Xor ops so that merging them in place never
 * overwrites a block before every op that reads it has run (see orderForMerge).
 */
export async function planCow(base: RandomAccessFile, target: RandomAccessFile, options: PlanOptions): Promise<CowPlan> {
  const bs = options.blockSize;
  const baseBlocks = Math.floor((await base.size()) / bs);
  const blockCount = (await target.size()) / bs;
  const table = options.hashBlocks
    ? await hashBaseOffThread(base, baseBlocks, bs, options.hashBlocks, options.progress)
    : await hashBase(base, baseBlocks, bs, options.progress);
  const kinds = new Uint8Array(blockCount);
  const sources = new Uint32Array(blockCount);
  const newChunks = [Buffer.allocUnsafe(CHUNK_BLOCKS * bs), Buffer.allocUnsafe(CHUNK_BLOCKS * bs)];
  const oldChunks = [Buffer.allocUnsafe(CHUNK_BLOCKS * bs), Buffer.allocUnsafe(CHUNK_BLOCKS * bs)];
  const candidates = Buffer.allocUnsafe(CHUNK_BLOCKS * bs);
  const candidateBlocks = new Uint32Array(CHUNK_BLOCKS);
  // The next chunk of both images is read while this one is compared.
  const readPair = (first: number, slot: number): Promise<unknown> => {
    const n = Math.min(CHUNK_BLOCKS, blockCount - first);
    const oldN = Math.max(0, Math.min(n, baseBlocks - first));
    return quiet(Promise.all([target.read(newChunks[slot], 0, n * bs, first * bs), oldN > 0 ? base.read(oldChunks[slot], 0, oldN * bs, first * bs) : 0]));
  };
  let pending = blockCount > 0 ? readPair(0, 0) : Promise.resolve();
  for (let first = 0, slot = 0; first < blockCount; first += CHUNK_BLOCKS, slot ^= 1) {
    const n = Math.min(CHUNK_BLOCKS, blockCount - first);
    const oldN = Math.max(0, Math.min(n, baseBlocks - first));
    await pending;
    if (first + CHUNK_BLOCKS < blockCount) pending = readPair(first + CHUNK_BLOCKS, slot ^ 1);
    const newChunk = newChunks[slot];
    const oldChunk = oldChunks[slot];
    // First pass: what each block is without reading anything more. Blocks whose hash names
    // another old block are checked afterwards, their candidates read all at once (one read each,
    // in parallel), not one awaited read per block.
    let candidateCount = 0;
    for (let i = 0; i < n; i++) {
      const t = first + i;
      const from = i * bs;
      // Most blocks are unchanged: compared in place, no view allocated for them.
      if (i < oldN && newChunk.compare(oldChunk, from, from + bs, from, from + bs) === 0) continue;
      if (zeroBlockOf(bs).compare(newChunk, from, from + bs) === 0) {
        kinds[t] = CowOpType.Zero;
        continue;
      }
      const block = newChunk.subarray(from, from + bs);
      const old = i < oldN ? oldChunk.subarray(from, from + bs) : undefined;
      const s = table.find(hashBlock(block));
      if (s >= 0 && s !== t) {
        candidateBlocks[candidateCount] = i;
        sources[t] = s;
        candidateCount++;
      }
      kinds[t] = options.xor && old && resembles(block, old) ? CowOpType.Xor : CowOpType.Replace;
      if (kinds[t] === CowOpType.Xor && !(s >= 0 && s !== t)) sources[t] = t;
    }
    if (candidateCount > 0) {
      const reads: Promise<number>[] = [];
      for (let c = 0; c < candidateCount; c++) {
        const s = sources[first + candidateBlocks[c]];
        reads.push(base.read(candidates, c * bs, bs, s * bs));
      }
      const got = await Promise.all(reads);
      for (let c = 0; c < candidateCount; c++) {
        const i = candidateBlocks[c];
        const t = first + i;
        const block = newChunk.subarray(i * bs, (i + 1) * bs);
        if (got[c] === bs && candidates.subarray(c * bs, (c + 1) * bs).equals(block)) kinds[t] = CowOpType.Copy;
        else sources[t] = kinds[t] === CowOpType.Xor ? t : 0;
      }
    }
    options.onChunk?.(first, n, newChunk, kinds);
    options.progress?.advance(n);
  }
  const sequence = orderForMerge(kinds, sources);
  return { blockSize: bs, blockCount, kinds, sources, sequence };
}

/**
 * Orders the Copy/Xor ops for an in-place merge. Op A must run before op B when A reads the block
 * B overwrites. Each op reads one block, so every op has at most one such B: the constraints form
 * a functional graph, sorted here with Kahn's algorithm. What remains unsorted are cycles (A reads
 * B's block, B reads A's); each is broken by turning one of its ops into a Replace op, which merges
 * after every ordered op.
 */
export function orderForMerge(kinds: Uint8Array, sources: Uint32Array): Uint32Array {
  const n = kinds.length;
  const ordered = (t: number): boolean => kinds[t] === CowOpType.Copy || kinds[t] === CowOpType.Xor;
  const overwriterOf = (t: number): number => {
    const s = sources[t];
    return s !== t && s < n && ordered(s) ? s : -1;
  };
  const waiting = new Uint32Array(n);
  let orderedCount = 0;
  for (let t = 0; t < n; t++) {
    if (!ordered(t)) continue;
    orderedCount++;
    const b = overwriterOf(t);
    if (b >= 0) waiting[b]++;
  }
  const out = new Uint32Array(orderedCount);
  const queue = new Uint32Array(orderedCount);
  const done = new Uint8Array(n);
  let head = 0;
  let tail = 0;
  let emitted = 0;
  const release = (t: number): void => {
    const b = overwriterOf(t);
    if (b >= 0 && --waiting[b] === 0 && !done[b]) queue[tail++] = b;
  };
  for (let t = 0; t < n; t++) if (ordered(t) && waiting[t] === 0) queue[tail++] = t;
  let scan = 0;
  while (emitted < out.length) {
    while (head < tail) {
      const t = queue[head++];
      if (done[t] || !ordered(t)) continue;
      done[t] = 1;
      out[emitted++] = t;
      release(t);
    }
    // Only cycles are left: break the next one by storing one of its blocks whole.
    while (scan < n && (done[scan] || !ordered(scan))) scan++;
    if (scan >= n) break;
    const victim = scan;
    release(victim);
    kinds[victim] = CowOpType.Replace;
    waiting[victim] = 0;
  }
  return out.subarray(0, emitted);
}

async function hashBase(base: RandomAccessFile, blocks: number, bs: number, progress?: Progress): Promise<BlockHashTable> {
  const table = new BlockHashTable(blocks);
  const chunks = [Buffer.allocUnsafe(CHUNK_BLOCKS * bs), Buffer.allocUnsafe(CHUNK_BLOCKS * bs)];
  const readChunk = (first: number, slot: number) => quiet(base.read(chunks[slot], 0, Math.min(CHUNK_BLOCKS, blocks - first) * bs, first * bs));
  let pending: Promise<unknown> = blocks > 0 ? readChunk(0, 0) : Promise.resolve();
  for (let first = 0, slot = 0; first < blocks; first += CHUNK_BLOCKS, slot ^= 1) {
    const n = Math.min(CHUNK_BLOCKS, blocks - first);
    await pending;
    // The next chunk is read while this one is hashed.
    if (first + CHUNK_BLOCKS < blocks) pending = readChunk(first + CHUNK_BLOCKS, slot ^ 1);
    const chunk = chunks[slot];
    for (let i = 0; i < n; i++) {
      const block = chunk.subarray(i * bs, (i + 1) * bs);
      if (!isZero(block)) table.insert(hashBlock(block), first + i);
    }
    progress?.advance(n);
  }
  return table;
}

/** hashBase with the hashing done by `hashBlocks`, a window of chunks at a time; inserted in block order. */
async function hashBaseOffThread(base: RandomAccessFile, blocks: number, bs: number, hashBlocks: NonNullable<PlanOptions['hashBlocks']>, progress?: Progress): Promise<BlockHashTable> {
  const table = new BlockHashTable(blocks);
  const chunkCount = Math.ceil(blocks / CHUNK_BLOCKS);
  const jobs: Array<ReturnType<typeof hashBlocks>> = [];
  // Buffers come back with the hashes and are read into again: fresh memory costs page faults.
  const free: Uint8Array[] = [];
  const start = (c: number) => {
    const first = c * CHUNK_BLOCKS;
    const bytes = Math.min(CHUNK_BLOCKS, blocks - first) * bs;
    const data = (free.pop() ?? new Uint8Array(CHUNK_BLOCKS * bs)).subarray(0, bytes);
    jobs[c] = quiet(readExactly(base, data, 0, bytes, first * bs, 'old image block').then(() => hashBlocks(data, bs)));
  };
  for (let c = 0; c < chunkCount; c++) {
    for (let k = c; k < Math.min(chunkCount, c + HASH_WINDOW_CHUNKS); k++) if (!jobs[k]) start(k);
    const { hashes, zero, data } = await jobs[c];
    delete jobs[c];
    free.push(new Uint8Array(data.buffer));
    const first = c * CHUNK_BLOCKS;
    for (let i = 0; i < hashes.length; i++) if (!zero[i]) table.insert(hashes[i], first + i);
    progress?.advance(hashes.length);
  }
  return table;
}

/** A read started ahead: its failure is seen where it is awaited, never as an unhandled rejection. */
function quiet<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => undefined);
  return promise;
}

/** Open-addressing map from a block's 32-bit hash to the first old block with it (8 bytes a slot). */
class BlockHashTable {
  private readonly keys: Uint32Array;
  private readonly values: Int32Array;
  private readonly mask: number;

  constructor(entries: number) {
    let size = 16;
    while (size < entries * 2) size *= 2;
    this.keys = new Uint32Array(size);
    this.values = new Int32Array(size).fill(EMPTY);
    this.mask = size - 1;
  }

  insert(hash: number, block: number): void {
    for (let slot = hash & this.mask; ; slot = (slot + 1) & this.mask) {
      if (this.values[slot] === EMPTY) {
        this.keys[slot] = hash;
        this.values[slot] = block + 1;
        return;
      }
      if (this.keys[slot] === hash) return; // keep the first block with this content
    }
  }

  find(hash: number): number {
    for (let slot = hash & this.mask; this.values[slot] !== EMPTY; slot = (slot + 1) & this.mask) {
      if (this.keys[slot] === hash) return this.values[slot] - 1;
    }
    return -1;
  }
}

/** CRC-32 (native zlib): cheap, and every candidate is confirmed by comparing the bytes. */
function hashBlock(block: Buffer): number {
  return zlib.crc32(block);
}

let zeroBlock = Buffer.alloc(0);

function zeroBlockOf(size: number): Buffer {
  if (zeroBlock.length !== size) zeroBlock = Buffer.alloc(size);
  return zeroBlock;
}

function isZero(block: Buffer): boolean {
  return block.equals(zeroBlockOf(block.length));
}

/** A block "resembles" its old self when at least half its bytes are unchanged: XOR then compresses well. */
function resembles(block: Buffer, old: Buffer): boolean {
  let same = 0;
  for (let i = 0; i < block.length; i++) if (block[i] === old[i]) same++;
  return same * 2 >= block.length;
}
