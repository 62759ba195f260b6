import fs, { promises as fsp } from 'node:fs';
import { replaceFileAtomically } from '../util/atomic';
import { createProgress, Progress } from '../util/progress';
import { writeEveryChunk } from './apply-full';
import { MaterializeScratch } from './materialize';
import { PayloadStream } from './payload-stream';
import { SnapshotReader } from './snapshot-reader';

export interface ApplyCowOptions {
  /** Size of the new image in bytes; defaults to the larger of the base and the COW's last block. */
  size?: number;
  progress?: boolean;
  /**
   * Durable (fsync before rename): the image is fsynced before it is renamed into place and the
   * directory after. Off by default: `vab cow apply` is a host tool whose output can be made again.
   */
  fsync?: boolean;
}

/** The image is patched in chunks of this many bytes (a multiple of every unit size Android uses). */
const CHUNK_BYTES = 2 << 20;
/** Chunk buffers: one being patched, the others having their sources read ahead. */
const SLOTS = 6;
/** Patched chunks held in memory while the kernel is still copying the base, before waiting for it. */
const HELD_BYTES_MAX = 64 << 20;

/**
 * Writes the new image a COW describes over `basePath` to `outPath` (offline: the base is only
 * read). The image is built under a temporary name and appears at `outPath` only once complete;
 * with `fsync` it is also durable by then. Returns the blocks written.
 *
 * When the base is a regular file that the filesystem can reflink, or when most chunks have no op,
 * the temporary file starts as a kernel-side copy of the base (a reflink, else an in-kernel copy
 * run while chunks are patched) and only the blocks ops change are written over it. Otherwise every
 * chunk is read from the base, patched and written: on ext4 an in-kernel copy of the whole base
 * costs as much CPU as copying it through user space (measured: copyFile ~115 ms CPU for 256 MiB,
 * read+write ~90-140 ms), and then the scattered writes of a densely changed image come on top.
 */
export async function applyCow(cowPath: string, basePath: string, outPath: string, options: ApplyCowOptions = {}): Promise<{ blocks: number; bytes: number }> {
  const snapshot = await SnapshotReader.open(cowPath, basePath, { deviceBytes: options.size });
  const progress = options.progress ? createProgress('cow apply', snapshot.blockCount) : undefined;
  const fsync = options.fsync ?? false;
  const produce = async (tmpPath: string): Promise<{ blocks: number; bytes: number }> => {
    const chunkBlocks = Math.max(1, Math.floor(CHUNK_BYTES / snapshot.blockSize));
    const chunks = touchedChunks(snapshot, chunkBlocks);
    let copy: Promise<void> | undefined;
    if ((await fsp.stat(basePath)).isFile()) {
      if (await reflink(basePath, tmpPath)) copy = Promise.resolve();
      else if (chunks.length * 2 <= Math.ceil(snapshot.blockCount / chunkBlocks)) copy = fsp.copyFile(basePath, tmpPath, fs.constants.COPYFILE_FICLONE);
    }
    if (copy) await patchOverCopy(snapshot, copy, tmpPath, chunks, chunkBlocks, fsync, progress);
    else await writeEveryChunk(snapshot, tmpPath, chunkBlocks, fsync, progress);
    return { blocks: snapshot.blockCount, bytes: snapshot.byteLength };
  };
  try {
    return await replaceFileAtomically(outPath, produce, { durable: fsync });
  } finally {
    progress?.finish();
    await snapshot.close();
  }
}

/** Makes `to` share the blocks of `from` when the filesystem can (btrfs, xfs, ...); false if it cannot. */
async function reflink(from: string, to: string): Promise<boolean> {
  try {
    await fsp.copyFile(from, to, fs.constants.COPYFILE_FICLONE_FORCE);
    return true;
  } catch {
    await fsp.rm(to, { force: true });
    return false;
  }
}

interface Held {
  buffer: Buffer;
  first: number;
  end: number;
}

/**
 * `copy` puts the base at `tmpPath` while the `chunks` that have ops are patched here (their
 * unchanged blocks left unread); once it is done, each patched chunk's op blocks are written over it.
 */
async function patchOverCopy(
  snapshot: SnapshotReader,
  copy: Promise<void>,
  tmpPath: string,
  chunks: number[],
  chunkBlocks: number,
  fsync: boolean,
  progress?: Progress,
): Promise<void> {
  const bs = snapshot.blockSize;
  let copied = false;
  copy.then(
    () => (copied = true),
    () => undefined,
  );
  const stream = new PayloadStream(snapshot.cow);
  const scratch = new MaterializeScratch(snapshot.cow);
  const slots = Array.from({ length: Math.min(SLOTS, Math.max(chunks.length, 1)) }, () => Buffer.allocUnsafe(chunkBlocks * bs));
  const loads: Promise<unknown>[] = [];
  const held: Held[] = [];
  let out: fsp.FileHandle | undefined;
  const span = (i: number): [number, number] => [chunks[i] * chunkBlocks, Math.min(chunks[i] * chunkBlocks + chunkBlocks, snapshot.blockCount)];
  const startLoad = (i: number): void => {
    const [first, end] = span(i);
    loads[i % slots.length] = snapshot.loadBaseLayer(first, end, slots[i % slots.length], 0, true);
    loads[i % slots.length].catch(() => undefined);
  };
  const writeHeld = async (): Promise<void> => {
    if (!out) {
      await copy;
      out = await fsp.open(tmpPath, 'r+');
    }
    for (const h of held.splice(0)) writeOpBlocks(snapshot, out.fd, h.buffer, h.first, h.end);
  };
  try {
    for (let i = 0; i < Math.min(slots.length - 1, chunks.length); i++) startLoad(i);
    for (let i = 0; i < chunks.length; i++) {
      if (i + slots.length - 1 < chunks.length) startLoad(i + slots.length - 1);
      const [first, end] = span(i);
      const buffer = slots[i % slots.length];
      await loads[i % slots.length];
      await snapshot.materializer.patch(first, end, buffer, 0, (op) => stream.lookup(op) ?? stream.load(op), scratch);
      held.push({ buffer, first, end });
      if (copied || held.length * buffer.length >= HELD_BYTES_MAX) await writeHeld();
      // A held buffer is the image's until written: the slot reads ahead into a new one.
      else slots[i % slots.length] = Buffer.allocUnsafe(buffer.length);
      progress?.advance(end - first);
    }
    await writeHeld();
    progress?.advance(snapshot.blockCount - chunks.reduce((sum, _, i) => sum + span(i)[1] - span(i)[0], 0));
    await out!.truncate(snapshot.byteLength);
    if (fsync) await out!.sync();
  } finally {
    // Nothing may still be reading once the files are closed, nor copying once the file is removed.
    await Promise.allSettled([...loads, copy]);
    await stream.settle();
    await out?.close();
  }
}

/** The chunks at least one op writes to, in order. */
function touchedChunks(snapshot: SnapshotReader, chunkBlocks: number): number[] {
  const { ops, index } = snapshot.cow;
  const chunks: number[] = [];
  for (const op of index.order) {
    const first = Math.floor(ops.newBlock[op] / chunkBlocks);
    const last = Math.floor((Math.min(ops.newBlock[op] + ops.span(op), snapshot.blockCount) - 1) / chunkBlocks);
    for (let c = Math.max(first, (chunks[chunks.length - 1] ?? -1) + 1); c <= last; c++) chunks.push(c);
  }
  return chunks;
}

/**
 * Writes the runs of blocks ops produced in chunk [first, end) (held in `buffer`) over the copy.
 * Synchronous writes: a run is often a single block, and a pwrite into the page cache costs a few
 * microseconds where a round trip through the thread pool costs ten times that. Apply is a
 * command of its own, so nothing else waits on its event loop.
 */
function writeOpBlocks(snapshot: SnapshotReader, fd: number, buffer: Buffer, first: number, end: number): void {
  const { ops, index } = snapshot.cow;
  const { order } = index;
  const bs = snapshot.blockSize;
  let runStart = -1;
  let runEnd = -1;
  const flush = (): void => {
    for (let at = (runStart - first) * bs, stop = (runEnd - first) * bs; at < stop; ) at += fs.writeSync(fd, buffer, at, stop - at, first * bs + at);
  };
  for (let k = index.firstEndingAfter(first); k < order.length && ops.newBlock[order[k]] < end; k++) {
    const op = order[k];
    const a = Math.max(first, ops.newBlock[op]);
    const b = Math.min(end, ops.newBlock[op] + ops.span(op));
    if (a === runEnd) runEnd = b;
    else {
      if (runStart >= 0) flush();
      runStart = a;
      runEnd = b;
    }
  }
  if (runStart >= 0) flush();
}
