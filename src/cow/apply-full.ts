import type { Progress } from '../util/progress';
import { openFile, RandomAccessFile } from './file';
import { MaterializeScratch } from './materialize';
import { PayloadStream } from './payload-stream';
import type { SnapshotReader } from './snapshot-reader';

/** Chunk buffers: one being patched, the others reading the base ahead or being written. */
const SLOTS = 6;
/**
 * With fsync: after this many bytes written, an fsync starts in the background, so the disk drains
 * while the rest is decompressed and the final fsync has only the tail left (about 20% off apply).
 */
const SYNC_EVERY_BYTES = 32 << 20;

interface Slot {
  buffer: Buffer;
  /** The slot's last write; the next chunk may be read into the buffer only after it. */
  busy: Promise<void>;
}

/**
 * Writes the whole image to `tmpPath`, for a base the kernel cannot copy (a block device): while
 * chunk c is patched on the main thread, the base reads of the next chunks and the writes of the
 * previous ones run in the thread pool.
 */
export async function writeEveryChunk(snapshot: SnapshotReader, tmpPath: string, chunkBlocks: number, fsync: boolean, progress?: Progress): Promise<void> {
  const out = await openFile(tmpPath, 'w+');
  try {
    await writeChunks(snapshot, out, chunkBlocks, fsync, progress);
    await out.truncate(snapshot.byteLength);
    if (fsync) await out.sync();
  } finally {
    await out.close();
  }
}

async function writeChunks(snapshot: SnapshotReader, out: RandomAccessFile, chunkBlocks: number, fsync: boolean, progress?: Progress): Promise<void> {
  const bs = snapshot.blockSize;
  const total = snapshot.blockCount;
  const chunks = Math.ceil(total / chunkBlocks);
  const stream = new PayloadStream(snapshot.cow);
  const scratch = new MaterializeScratch(snapshot.cow);
  const slots: Slot[] = Array.from({ length: Math.min(SLOTS, Math.max(chunks, 1)) }, () => ({ buffer: Buffer.allocUnsafe(chunkBlocks * bs), busy: Promise.resolve() }));
  const loads: Promise<boolean>[] = [];
  const syncer = fsync ? new BackgroundSync(out) : undefined;
  const startLoad = (c: number): void => {
    const slot = slots[c % slots.length];
    const first = c * chunkBlocks;
    const end = Math.min(first + chunkBlocks, total);
    loads[c % slots.length] = slot.busy.then(() => snapshot.loadBaseLayer(first, end, slot.buffer, 0));
    loads[c % slots.length].catch(() => undefined);
  };
  try {
    for (let c = 0; c < Math.min(slots.length - 1, chunks); c++) startLoad(c);
    for (let c = 0; c < chunks; c++) {
      if (c + slots.length - 1 < chunks) startLoad(c + slots.length - 1);
      const slot = slots[c % slots.length];
      const first = c * chunkBlocks;
      const end = Math.min(first + chunkBlocks, total);
      await loads[c % slots.length];
      await snapshot.materializer.patch(first, end, slot.buffer, 0, (op) => stream.lookup(op) ?? stream.load(op), scratch);
      slot.busy = out.write(slot.buffer, 0, (end - first) * bs, first * bs);
      slot.busy.catch(() => undefined);
      syncer?.wrote((end - first) * bs);
      progress?.advance(end - first);
    }
  } finally {
    // Nothing may still be reading or writing once the files are closed.
    await Promise.allSettled([...loads, ...slots.map((s) => s.busy)]);
    await stream.settle();
    await syncer?.settle();
  }
  for (const slot of slots) await slot.busy;
  syncer?.check();
}

/**
 * Early fsyncs of the output. Linux reports a writeback error to one fsync only, so an error seen
 * here is kept and rethrown: the final fsync might succeed without having seen it.
 */
class BackgroundSync {
  private unsynced = 0;
  private running: Promise<void> | undefined;
  private error: unknown;

  constructor(private readonly out: RandomAccessFile) {}

  wrote(bytes: number): void {
    this.unsynced += bytes;
    if (this.unsynced < SYNC_EVERY_BYTES || this.running) return;
    this.unsynced = 0;
    this.running = this.out.sync().then(
      () => {
        this.running = undefined;
      },
      (err: unknown) => {
        this.error ??= err;
        this.running = undefined;
      },
    );
  }

  async settle(): Promise<void> {
    await this.running;
  }

  check(): void {
    if (this.error !== undefined) throw this.error;
  }
}
