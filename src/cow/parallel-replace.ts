import { CompressedUnits, CompressPool } from './compress-pool';
import { RandomAccessFile, readExactly } from './file';
import { CowOpType } from './format';

/**
 * The Replace units of one chunk of NEW: [first block, block count] pairs in block order, split as
 * CowWriter.addRawBlocks splits a run (whole units, then the tail largest power of two first).
 */
export function chunkUnits(kinds: Uint8Array, first: number, count: number, unitBlocks: number): number[] {
  const units: number[] = [];
  const end = first + count;
  for (let t = first; t < end; ) {
    if (kinds[t] !== CowOpType.Replace) {
      t++;
      continue;
    }
    let runEnd = t + 1;
    while (runEnd < end && kinds[runEnd] === CowOpType.Replace) runEnd++;
    while (t < runEnd) {
      let size = unitBlocks;
      while (size > runEnd - t) size >>= 1;
      units.push(t, size);
      t += size;
    }
  }
  return units;
}

interface Job {
  units: number[];
  result: Promise<CompressedUnits>;
  rawBytes: number;
}

/**
 * Replace units compressed on the pool ahead of the writer, per chunk. Planning offers each chunk
 * as it is classified (while the budget of raw bytes in flight or held lasts); the write pass then
 * prepares whatever planning did not cover or what orderForMerge changed, a few chunks ahead.
 */
/** Batch buffers are at least this long, so a recycled one fits any chunk's units. */
const MIN_BATCH_BYTES = 1 << 20;

export class ParallelReplaces {
  private readonly jobs = new Map<number, Job>();
  private heldBytes = 0;
  // Batch inputs and payload buffers travel to the threads and back and are filled again: fresh
  // memory for each chunk costs page faults and garbage collection on every thread.
  private readonly freeInputs: Uint8Array[] = [];
  private readonly freeOutputs: ArrayBuffer[] = [];

  constructor(
    private readonly pool: CompressPool,
    private readonly blockSize: number,
    private readonly unitBlocks: number,
    private readonly budgetBytes: number,
  ) {}

  /** Planning's hook: `data` holds blocks [first, first+count) and is reused once this returns. */
  offer(first: number, count: number, data: Buffer, kinds: Uint8Array): void {
    if (this.heldBytes >= this.budgetBytes) return;
    const units = chunkUnits(kinds, first, count, this.unitBlocks);
    if (units.length > 0) this.submit(first, units, data);
  }

  /** Makes sure the chunk at `first` is being compressed with the units its kinds now give. */
  async prepare(first: number, count: number, kinds: Uint8Array, target: RandomAccessFile): Promise<void> {
    const units = chunkUnits(kinds, first, count, this.unitBlocks);
    const job = this.jobs.get(first);
    if (job && sameUnits(job.units, units)) return;
    if (job) this.drop(first, job);
    if (units.length === 0) return;
    const data = Buffer.allocUnsafe(count * this.blockSize);
    await readExactly(target, data, 0, data.length, first * this.blockSize, 'new image');
    this.submit(first, units, data);
  }

  /** Hands back a taken chunk's payload buffer once its payloads are written. */
  release(payloads: CompressedUnits): void {
    this.freeOutputs.push(payloads.data.buffer as ArrayBuffer);
  }

  /** The chunk's units and their payloads; undefined when it has no Replace unit. */
  async take(first: number): Promise<{ units: number[]; payloads: CompressedUnits } | undefined> {
    const job = this.jobs.get(first);
    if (!job) return undefined;
    this.drop(first, job);
    return { units: job.units, payloads: await job.result };
  }

  private submit(first: number, units: number[], data: Buffer): void {
    const bs = this.blockSize;
    let rawBytes = 0;
    for (let i = 1; i < units.length; i += 2) rawBytes += units[i] * bs;
    // Its own ArrayBuffer: it moves to the worker.
    const free = this.freeInputs.findIndex((b) => b.byteLength >= rawBytes);
    const whole = free >= 0 ? this.freeInputs.splice(free, 1)[0] : new Uint8Array(Math.max(rawBytes, MIN_BATCH_BYTES));
    const bytes = whole.subarray(0, rawBytes);
    const sizes: number[] = [];
    for (let i = 0, at = 0; i < units.length; i += 2) {
      const start = (units[i] - first) * bs;
      const size = units[i + 1] * bs;
      bytes.set(data.subarray(start, start + size), at);
      sizes.push(size);
      at += size;
    }
    const result = this.pool.compress(bytes, sizes, this.freeOutputs.pop()).then((done) => {
      this.freeInputs.push(done.input);
      return done;
    });
    result.catch(() => undefined); // seen where it is taken, never as an unhandled rejection
    this.jobs.set(first, { units, result, rawBytes });
    this.heldBytes += rawBytes;
  }

  private drop(first: number, job: Job): void {
    this.jobs.delete(first);
    this.heldBytes -= job.rawBytes;
  }
}

function sameUnits(a: number[], b: number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}
