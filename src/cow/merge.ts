import { promises as fs } from 'node:fs';
import path from 'node:path';
import { createProgress } from '../util/progress';
import { corrupt } from './errors';
import { openFile, RandomAccessFile, readExactly } from './file';
import { BUFFER_REGION_DEFAULT_SIZE, CowHeader, CowOpType, ReadAheadState, SCRATCH_METADATA_SIZE, scratchDataOffset, scratchMetadataOffset, scratchWindowBlocks } from './format';
import { MaterializeScratch, Materializer, settleAll } from './materialize';
import { MAX_RUN_BYTES, writeBlocks, writeReplaceRuns } from './merge-writes';
import { CowReader } from './reader';

/** What a merge running inside a daemon needs to hear about, and when it may act. */
export interface MergeHooks {
  /**
   * A window's new blocks are staged durably (merge-order positions [start, start + ops.length)).
   * From now on reads of those ops must come from `blocks`; the promise resolves once no read
   * that might still be reading their sources is left, so the base may be written.
   */
  staged?(start: number, ops: Uint32Array, blocks: Buffer): Promise<void>;
  /** Merge-order positions [0, done) are merged and committed (reads of them come from the base). */
  committed?(done: number): void;
  /** A safe point (before each window is staged, after each commit): may wait (pause), or throw to stop. */
  safePoint?(): Promise<void>;
}

export interface MergeOptions {
  /** Final size of the base in bytes (when the new image is smaller or larger than the old). */
  size?: number;
  progress?: boolean;
  hooks?: MergeHooks;
  /**
   * Where ordered ops are staged when the COW has no scratch region (buffer_size 0): a file of its
   * own, laid out like the region. Without one, such a merge is refused: writing overlapping
   * copies straight to the base is not safe against a crash (Android does it anyway).
   */
  scratch?: RandomAccessFile;
}

export interface MergeResult {
  /** Ops merged by this call. */
  merged: number;
  /** Data ops in the COW. */
  total: number;
}

/** Replace/Zero ops are committed in batches this large, as snapuserd does (256 ops). */
const REPLACE_BATCH_OPS = 256;
/** num_merge_ops lives at byte 26 of every COW header. */
const NUM_MERGE_OPS_OFFSET = 26;

/** Where a window is staged: the COW's own scratch region, or a scratch file laid out the same way. */
interface Staging {
  file: RandomAccessFile;
  /** Offsets as the COW's header would give them (headerSize 0 for a scratch file). */
  layout: CowHeader;
}

/** Opens (creating when missing, never truncating: it may hold a staged window) a merge scratch file. */
export async function openScratchFile(file: string): Promise<RandomAccessFile> {
  try {
    return await openFile(file, 'r+');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    return openFile(file, 'w+');
  }
}

/** The scratch file beside a COW without a scratch region. */
export function scratchPathFor(cowPath: string): string {
  return path.join(path.dirname(cowPath), `.${path.basename(cowPath)}.merge-scratch`);
}

/**
 * Merges a COW into its base in place, in merge order, resumable after a crash at any point. Its
 * progress is the header's num_merge_ops, as on Android. Copy/Xor ops go window by window through
 * the scratch region, the way snapuserd's read-ahead does:
 *
 *   1. read the window's sources from the base and build each new block in memory;
 *   2. stage them in scratch (metadata at H+1, blocks after the metadata), fsync, state Done, fsync;
 *   3. write the blocks to the base, fsync the base;
 *   4. num_merge_ops += window, fsync; state InProgress, fsync.
 *
 * A crash after step 2 leaves state Done: the restart replays the window from scratch, because the
 * sources may already be overwritten. Replace/Zero ops need no staging: rewriting them is harmless.
 * A COW without a scratch region stages in a scratch file beside it (`scratchPathFor`).
 */
export async function mergeInPlace(cowPath: string, basePath: string, options: MergeOptions = {}): Promise<MergeResult> {
  const cowFile = await openFile(cowPath, 'r+');
  try {
    const baseFile = await openFile(basePath, 'r+');
    let scratch: RandomAccessFile | undefined;
    try {
      const h = (await CowReader.fromFile(cowFile)).header;
      if (h.bufferSize === 0 && !options.scratch) scratch = await openScratchFile(scratchPathFor(cowPath));
      const result = await mergeFiles(cowFile, baseFile, { ...options, scratch: options.scratch ?? scratch });
      if (scratch) {
        await scratch.close();
        scratch = undefined;
        await fs.rm(scratchPathFor(cowPath), { force: true });
      }
      return result;
    } finally {
      await scratch?.close();
      await baseFile.close();
    }
  } finally {
    await cowFile.close();
  }
}

export async function mergeFiles(cowFile: RandomAccessFile, base: RandomAccessFile, options: MergeOptions = {}): Promise<MergeResult> {
  const cow = await CowReader.fromFile(cowFile);
  const h = cow.header;
  const order = cow.mergeOrder();
  const problem = cow.verifyMergeOrder(order);
  if (problem) throw corrupt(`merge order is not safe in place at position ${problem.position}: ${problem.message}`, { file: cowFile.path, op: problem.op });
  const total = order.ops.length;
  const startedAt = h.numMergeOps;
  if (startedAt > total) throw corrupt(`num_merge_ops ${startedAt} exceeds the ${total} data ops`, { file: cowFile.path, offset: NUM_MERGE_OPS_OFFSET });
  const staging = stagingFor(cowFile, h, cow, options.scratch);
  const hooks = options.hooks ?? {};
  const progress = options.progress ? createProgress('cow merge', total) : undefined;
  progress?.advance(startedAt);
  const bs = cow.blockSize;
  const state = { done: startedAt };
  const commit = async (count: number, readAhead?: ReadAheadState): Promise<void> => {
    state.done += count;
    const bytes = Buffer.alloc(8);
    bytes.writeBigUInt64LE(BigInt(state.done));
    await cowFile.write(bytes, 0, 8, NUM_MERGE_OPS_OFFSET);
    await cowFile.sync();
    if (readAhead !== undefined && staging) await writeState(staging, readAhead);
    hooks.committed?.(state.done);
    progress?.advance(count);
  };

  hooks.committed?.(state.done);
  if (staging && (await readState(staging)) === ReadAheadState.Done) await replayStagedWindow(cow, staging, base, order.ops, state, commit, hooks);
  const window = staging ? scratchWindowBlocks(staging.layout) : 0;
  const blocks = Buffer.allocUnsafe(Math.max(window, 1) * bs);
  const payload = Buffer.allocUnsafe(Math.max(65536, h.maxCompressionSize, bs, maxDataLength(cow)));
  // The merge reads its sources from the base it is rewriting: the merge order keeps that safe.
  const materializer = new Materializer(cow, base);
  const scratch = new MaterializeScratch(cow);
  const payloadOf = async (op: number): Promise<Buffer> => {
    const bytes = payload.subarray(0, cow.ops.dataLength[op]);
    await readExactly(cow.file, bytes, 0, cow.ops.dataLength[op], cow.ops.dataOffset[op], 'op data', op);
    return bytes;
  };
  const runBuffer = Buffer.allocUnsafe(Math.max(MAX_RUN_BYTES, h.maxCompressionSize, bs));
  const payloadWindow = { buffer: Buffer.allocUnsafe(Math.max(MAX_RUN_BYTES, h.maxCompressionSize, bs)), start: 0, end: 0 };
  const isOrdered = (position: number): boolean => {
    const type = cow.ops.type(order.ops[position]);
    return type === CowOpType.Copy || type === CowOpType.Xor;
  };
  while (state.done < total) {
    await hooks.safePoint?.();
    const ordered = isOrdered(state.done);
    if (ordered && !staging) {
      throw corrupt('the COW has no scratch region (buffer_size 0) and no scratch file was given: its copies cannot be merged safely in place', { file: cowFile.path });
    }
    let m = 1;
    const limit = Math.min(ordered ? window : REPLACE_BATCH_OPS, total - state.done);
    while (m < limit && isOrdered(state.done + m) === ordered) m++;
    const ops = order.ops.subarray(state.done, state.done + m);
    if (!ordered) {
      await writeReplaceRuns(cow, base, ops, runBuffer, payloadWindow);
      await base.sync();
      await commit(m);
      continue;
    }
    // Copies only read their source: those reads go out together; Xors share the payload scratch.
    const copies: Promise<void>[] = [];
    for (let i = 0; i < m; i++) if (cow.ops.type(ops[i]) === CowOpType.Copy) copies.push(materializer.buildOrdered(ops[i], blocks, i * bs, payloadOf, scratch));
    await settleAll(copies);
    for (let i = 0; i < m; i++) if (cow.ops.type(ops[i]) !== CowOpType.Copy) await materializer.buildOrdered(ops[i], blocks, i * bs, payloadOf, scratch);
    await stageWindow(staging!, cow, ops, blocks);
    await hooks.staged?.(state.done, ops, blocks);
    await writeBlocks(base, cow, ops, blocks);
    await base.sync();
    await commit(m, ReadAheadState.InProgress);
  }
  if (options.size !== undefined && (await base.size()) !== options.size) {
    await base.truncate(options.size);
    await base.sync();
  }
  progress?.finish();
  return { merged: state.done - startedAt, total };
}

/** The COW's scratch region, or the given scratch file when it has none (and it has ordered ops). */
function stagingFor(cowFile: RandomAccessFile, h: CowHeader, cow: CowReader, scratch?: RandomAccessFile): Staging | undefined {
  if (h.bufferSize > 0) return { file: cowFile, layout: h };
  if (!scratch || !hasOrderedOps(cow)) return undefined;
  return { file: scratch, layout: { ...h, headerSize: 0, bufferSize: BUFFER_REGION_DEFAULT_SIZE } };
}

function hasOrderedOps(cow: CowReader): boolean {
  for (let op = 0; op < cow.ops.count; op++) {
    const type = cow.ops.type(op);
    if (type === CowOpType.Copy || type === CowOpType.Xor) return true;
  }
  return false;
}

async function stageWindow(staging: Staging, cow: CowReader, ops: Uint32Array, blocks: Buffer): Promise<void> {
  const h = staging.layout;
  const bs = h.blockSize;
  const meta = Buffer.alloc((ops.length + 1) * SCRATCH_METADATA_SIZE); // ends with an all-zero entry
  const dataAt = scratchDataOffset(h);
  for (let i = 0; i < ops.length; i++) {
    meta.writeBigUInt64LE(BigInt(cow.ops.newBlock[ops[i]]), i * SCRATCH_METADATA_SIZE);
    meta.writeBigUInt64LE(BigInt(dataAt + i * bs), i * SCRATCH_METADATA_SIZE + 8);
  }
  await staging.file.write(meta, 0, meta.length, scratchMetadataOffset(h));
  await staging.file.write(blocks, 0, ops.length * bs, dataAt);
  await staging.file.sync();
  await writeState(staging, ReadAheadState.Done);
}

/**
 * After a crash with a window staged (state Done): if num_merge_ops does not cover it yet, write
 * it again from scratch; if the commit already happened, only the state byte was left behind.
 */
async function replayStagedWindow(
  cow: CowReader,
  staging: Staging,
  base: RandomAccessFile,
  order: Uint32Array,
  state: { done: number },
  commit: (count: number, s?: ReadAheadState) => Promise<void>,
  hooks: MergeHooks,
): Promise<void> {
  const h = staging.layout;
  const bs = h.blockSize;
  const staged = await readStagedBlocks(staging);
  const matches = (from: number): boolean => from >= 0 && from + staged.length <= order.length && staged.every((b, i) => cow.ops.newBlock[order[from + i]] === b);
  if (staged.length > 0 && matches(state.done)) {
    const blocks = Buffer.allocUnsafe(staged.length * bs);
    await readExactly(staging.file, blocks, 0, blocks.length, scratchDataOffset(h), 'scratch data');
    const ops = order.subarray(state.done, state.done + staged.length);
    await hooks.staged?.(state.done, ops, blocks);
    await writeBlocks(base, cow, ops, blocks);
    await base.sync();
    await commit(staged.length, ReadAheadState.InProgress);
  } else if (matches(state.done - staged.length)) {
    await writeState(staging, ReadAheadState.InProgress);
  } else {
    throw corrupt('the staged read-ahead window matches no window of the merge order', { file: staging.file.path, offset: scratchMetadataOffset(h) });
  }
}

/** The new_block of each entry of the staged window's metadata, up to its all-zero terminator. */
async function readStagedBlocks(staging: Staging): Promise<number[]> {
  const h = staging.layout;
  const where = { file: staging.file.path, offset: scratchMetadataOffset(h) };
  const meta = Buffer.alloc(scratchWindowBlocks(h) * SCRATCH_METADATA_SIZE + SCRATCH_METADATA_SIZE);
  await readExactly(staging.file, meta, 0, meta.length, scratchMetadataOffset(h), 'scratch metadata');
  const staged: number[] = [];
  for (let at = 0; at < meta.length; at += SCRATCH_METADATA_SIZE) {
    const newBlock = meta.readBigUInt64LE(at);
    const fileOffset = meta.readBigUInt64LE(at + 8);
    if (newBlock === 0n && fileOffset === 0n) break;
    if (fileOffset !== BigInt(scratchDataOffset(h) + staged.length * h.blockSize)) throw corrupt(`scratch entry ${staged.length} points at ${fileOffset}`, where);
    staged.push(Number(newBlock));
  }
  return staged;
}

/**
 * The window a crashed merge left staged and not yet committed (state Done, its blocks matching the
 * merge order right after num_merge_ops), with its blocks: reads must take those ops from it until
 * the merge resumes, since the base may hold half of the window. Undefined when there is none.
 */
export async function stagedWindowToReplay(cow: CowReader, mergeOrder: () => Uint32Array, scratch?: RandomAccessFile): Promise<{ start: number; count: number; blocks: Buffer } | undefined> {
  const staging = stagingFor(cow.file, cow.header, cow, scratch);
  if (!staging || (await readState(staging)) !== ReadAheadState.Done) return undefined;
  // Only now: a handler that starts with nothing staged never pays for the merge order.
  const order = mergeOrder();
  const staged = await readStagedBlocks(staging);
  const start = cow.header.numMergeOps;
  if (staged.length === 0 || start + staged.length > order.length || !staged.every((b, i) => cow.ops.newBlock[order[start + i]] === b)) return undefined;
  const blocks = Buffer.allocUnsafe(staged.length * staging.layout.blockSize);
  await readExactly(staging.file, blocks, 0, blocks.length, scratchDataOffset(staging.layout), 'scratch data');
  return { start, count: staged.length, blocks };
}

async function readState(staging: Staging): Promise<number> {
  const byte = Buffer.alloc(1);
  // A fresh scratch file is empty: nothing staged.
  if ((await staging.file.size()) <= staging.layout.headerSize) return ReadAheadState.NotStarted;
  await readExactly(staging.file, byte, 0, 1, staging.layout.headerSize, 'read-ahead state');
  return byte[0];
}

async function writeState(staging: Staging, value: ReadAheadState): Promise<void> {
  await staging.file.write(Buffer.from([value]), 0, 1, staging.layout.headerSize);
  await staging.file.sync();
}

/** The largest payload in the COW, so one buffer holds any of them. */
function maxDataLength(cow: CowReader): number {
  let max = 0;
  for (const length of cow.ops.dataLength) if (length > max) max = length;
  return max;
}
