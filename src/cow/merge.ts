import { createProgress } from '../util/progress';
import { corrupt } from './errors';
import { openFile, RandomAccessFile, readExactly } from './file';
import { CowHeader, CowOpType, ReadAheadState, SCRATCH_METADATA_SIZE, scratchDataOffset, scratchMetadataOffset, scratchWindowBlocks } from './format';
import { MaterializeScratch, Materializer } from './materialize';
import { CowReader } from './reader';

export interface MergeOptions {
  /** Final size of the base in bytes (when the new image is smaller or larger than the old). */
  size?: number;
  progress?: boolean;
}

export interface MergeResult {
  /** Ops merged by this call. */
  merged: number;
  /** Data ops in the COW. */
  total: number;
}

/** Replace/Zero ops are committed in batches this large, as snapuserd does (256 ops or 1 MiB). */
const REPLACE_BATCH_OPS = 256;
/** num_merge_ops lives at byte 26 of every COW header. */
const NUM_MERGE_OPS_OFFSET = 26;

/**
 * Merges a COW into its base in place, in merge order, resumable after a crash at any point. Its
 * progress is the header's num_merge_ops, as on Android. Copy/Xor ops go window by window through
 * the scratch region, the way snapuserd's read-ahead does:
 *
 *   1. read the window's sources from the base and build each new block in memory;
 *   2. stage them in scratch (metadata at H+1, blocks at H+8192), fsync, set state Done, fsync;
 *   3. write the blocks to the base, fsync the base;
 *   4. num_merge_ops += window, fsync; state InProgress, fsync.
 *
 * A crash after step 2 leaves state Done: the restart replays the window from scratch, because the
 * sources may already be overwritten. Replace/Zero ops need no staging: rewriting them is harmless.
 * Without a scratch region (buffer_size 0) ordered ops are written directly, which, as on
 * Android, is not safe against a crash in the middle of an overlapping window.
 */
export async function mergeInPlace(cowPath: string, basePath: string, options: MergeOptions = {}): Promise<MergeResult> {
  const cowFile = await openFile(cowPath, 'r+');
  try {
    const baseFile = await openFile(basePath, 'r+');
    try {
      return await mergeFiles(cowFile, baseFile, options);
    } finally {
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
    if (readAhead !== undefined) await writeState(cowFile, h, readAhead);
    progress?.advance(count);
  };

  const window = h.bufferSize > 0 ? scratchWindowBlocks(h) : 510;
  if (h.bufferSize > 0 && (await readState(cowFile, h)) === ReadAheadState.Done) await replayStagedWindow(cow, base, order.ops, state, commit);
  const blocks = Buffer.allocUnsafe(window * bs);
  const payload = Buffer.allocUnsafe(Math.max(65536, h.maxCompressionSize, bs, maxDataLength(cow)));
  // The merge reads its sources from the base it is rewriting: the merge order keeps that safe.
  const materializer = new Materializer(cow, base);
  const scratch = new MaterializeScratch(cow);
  const payloadOf = async (op: number): Promise<Buffer> => {
    const bytes = payload.subarray(0, cow.ops.dataLength[op]);
    await readExactly(cow.file, bytes, 0, cow.ops.dataLength[op], cow.ops.dataOffset[op], 'op data', op);
    return bytes;
  };
  const unit = Buffer.allocUnsafe(Math.max(h.maxCompressionSize, bs));
  const isOrdered = (position: number): boolean => {
    const type = cow.ops.type(order.ops[position]);
    return type === CowOpType.Copy || type === CowOpType.Xor;
  };
  while (state.done < total) {
    const ordered = isOrdered(state.done);
    let m = 1;
    const limit = Math.min(ordered ? window : REPLACE_BATCH_OPS, total - state.done);
    while (m < limit && isOrdered(state.done + m) === ordered) m++;
    const ops = order.ops.subarray(state.done, state.done + m);
    if (!ordered) {
      for (const op of ops) {
        const data = unit.subarray(0, cow.unitSize(op));
        if (cow.ops.type(op) === CowOpType.Zero) data.fill(0);
        else await cow.readPayload(op, data, payload);
        await base.write(data, 0, data.length, cow.ops.newBlock[op] * bs);
      }
      await base.sync();
      await commit(m);
      continue;
    }
    for (let i = 0; i < m; i++) await materializer.buildOrdered(ops[i], blocks, i * bs, payloadOf, scratch);
    if (h.bufferSize > 0) await stageWindow(cowFile, h, cow, ops, blocks);
    await writeBlocks(base, cow, ops, blocks);
    await base.sync();
    await commit(m, h.bufferSize > 0 ? ReadAheadState.InProgress : undefined);
  }
  if (options.size !== undefined && (await base.size()) !== options.size) {
    await base.truncate(options.size);
    await base.sync();
  }
  progress?.finish();
  return { merged: state.done - startedAt, total };
}

async function stageWindow(cowFile: RandomAccessFile, h: CowHeader, cow: CowReader, ops: Uint32Array, blocks: Buffer): Promise<void> {
  const bs = h.blockSize;
  const meta = Buffer.alloc((ops.length + 1) * SCRATCH_METADATA_SIZE); // ends with an all-zero entry
  const dataAt = scratchDataOffset(h);
  for (let i = 0; i < ops.length; i++) {
    meta.writeBigUInt64LE(BigInt(cow.ops.newBlock[ops[i]]), i * SCRATCH_METADATA_SIZE);
    meta.writeBigUInt64LE(BigInt(dataAt + i * bs), i * SCRATCH_METADATA_SIZE + 8);
  }
  await cowFile.write(meta, 0, meta.length, scratchMetadataOffset(h));
  await cowFile.write(blocks, 0, ops.length * bs, dataAt);
  await cowFile.sync();
  await writeState(cowFile, h, ReadAheadState.Done);
}

/**
 * After a crash with a window staged (state Done): if num_merge_ops does not cover it yet, write
 * it again from scratch; if the commit already happened, only the state byte was left behind.
 */
async function replayStagedWindow(cow: CowReader, base: RandomAccessFile, order: Uint32Array, state: { done: number }, commit: (count: number, s?: ReadAheadState) => Promise<void>): Promise<void> {
  const h = cow.header;
  const bs = h.blockSize;
  const where = { file: cow.path, offset: scratchMetadataOffset(h) };
  const meta = Buffer.alloc(scratchWindowBlocks(h) * SCRATCH_METADATA_SIZE + SCRATCH_METADATA_SIZE);
  await readExactly(cow.file, meta, 0, meta.length, scratchMetadataOffset(h), 'scratch metadata');
  const staged: number[] = [];
  for (let at = 0; at < meta.length; at += SCRATCH_METADATA_SIZE) {
    const newBlock = meta.readBigUInt64LE(at);
    const fileOffset = meta.readBigUInt64LE(at + 8);
    if (newBlock === 0n && fileOffset === 0n) break;
    if (fileOffset !== BigInt(scratchDataOffset(h) + staged.length * bs)) throw corrupt(`scratch entry ${staged.length} points at ${fileOffset}`, where);
    staged.push(Number(newBlock));
  }
  const matches = (from: number): boolean => from >= 0 && from + staged.length <= order.length && staged.every((b, i) => cow.ops.newBlock[order[from + i]] === b);
  if (matches(state.done)) {
    const blocks = Buffer.allocUnsafe(staged.length * bs);
    await readExactly(cow.file, blocks, 0, blocks.length, scratchDataOffset(h), 'scratch data');
    await writeBlocks(base, cow, order.subarray(state.done, state.done + staged.length), blocks);
    await base.sync();
    await commit(staged.length, ReadAheadState.InProgress);
  } else if (matches(state.done - staged.length)) {
    await writeState(cow.file, h, ReadAheadState.InProgress);
  } else {
    throw corrupt('the staged read-ahead window matches no window of the merge order', where);
  }
}

/** Writes a window's blocks to the base, one write per run of adjacent target blocks. */
async function writeBlocks(base: RandomAccessFile, cow: CowReader, ops: Uint32Array, blocks: Buffer): Promise<void> {
  const bs = cow.blockSize;
  for (let i = 0; i < ops.length; ) {
    let run = 1;
    while (i + run < ops.length && cow.ops.newBlock[ops[i + run]] === cow.ops.newBlock[ops[i]] + run) run++;
    await base.write(blocks, i * bs, run * bs, cow.ops.newBlock[ops[i]] * bs);
    i += run;
  }
}

async function readState(cowFile: RandomAccessFile, h: CowHeader): Promise<number> {
  const byte = Buffer.alloc(1);
  await readExactly(cowFile, byte, 0, 1, h.headerSize, 'read-ahead state');
  return byte[0];
}

async function writeState(cowFile: RandomAccessFile, h: CowHeader, value: ReadAheadState): Promise<void> {
  await cowFile.write(Buffer.from([value]), 0, 1, h.headerSize);
  await cowFile.sync();
}

/** The largest payload in the COW, so one buffer holds any of them. */
function maxDataLength(cow: CowReader): number {
  let max = 0;
  for (const length of cow.ops.dataLength) if (length > max) max = length;
  return max;
}
