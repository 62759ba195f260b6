import { Worker } from 'node:worker_threads';
import { VabError, VabErrorCode } from './errors';

/**
 * A few worker threads running one job function, owned by whoever creates the pool (there is no
 * shared instance: the owner closes it). Jobs go to the least busy thread. A job that throws
 * rejects with a VabError carrying the code the job gave (EIO otherwise); a thread that dies fails
 * every waiting job and the pool, so nothing ever waits on a thread that is gone.
 *
 * The job is JavaScript source (eval'd, so the pool also runs under ts-jest, which cannot start
 * .ts worker files). It runs with `require` and `workerData` in scope and must define
 * `async function job(message)` returning `{ reply, transfer }` (transfer optional).
 */
/** Whether `bytes` spans its whole ArrayBuffer, so that buffer can move to a thread (be transferred). */
export function ownsItsMemory(bytes: Uint8Array): boolean {
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer;
}

export interface WorkerPoolOptions {
  /** Names the threads in errors: "<name> thread failed: ...". */
  name: string;
  threads: number;
  source: string;
  workerData?: unknown;
}

export interface JobResult<Reply> {
  reply: Reply;
  transfer?: ArrayBuffer[];
}

interface Waiter {
  resolve: (reply: unknown) => void;
  reject: (err: Error) => void;
}

interface Slot {
  worker: Worker;
  busy: number;
}

const PRELUDE = `
const { parentPort, workerData } = require('worker_threads');
`;
const LOOP = `
parentPort.on('message', async ({ id, message }) => {
  try {
    const { reply, transfer } = await job(message);
    parentPort.postMessage({ id, reply }, transfer || []);
  } catch (err) {
    const code = err && typeof err.code === 'string' ? err.code : undefined;
    parentPort.postMessage({ id, error: { code, message: String((err && err.message) || err) } });
  }
});
`;

const KNOWN_CODES: ReadonlySet<string> = new Set<VabErrorCode>([
  'EINVAL_INPUT', 'ECORRUPT', 'ETRUNCATED', 'EHASH', 'EUNSUPPORTED', 'EPROTO', 'ENOTFOUND', 'EEXIST', 'ETIMEDOUT', 'EIO', 'ESTATE',
]);

export class WorkerPool {
  private readonly slots: Slot[] = [];
  private readonly pending = new Map<number, Waiter>();
  private nextId = 0;
  private failure: Error | undefined;
  /** Threads stopped by close() are not failures: waiting jobs learn that the pool closed. */
  private closing = false;

  constructor(private readonly options: WorkerPoolOptions) {
    if (!Number.isInteger(options.threads) || options.threads < 1) throw new RangeError(`a worker pool needs at least one thread, not ${options.threads}`);
    for (let i = 0; i < options.threads; i++) this.slots.push(this.start());
  }

  get threads(): number {
    return this.slots.length;
  }

  /** Runs the job on `message`. Buffers listed in `transfer` move to the thread (unusable here after). */
  run<Reply>(message: object, transfer: ArrayBuffer[] = []): Promise<Reply> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closing) return Promise.reject(new VabError('ESTATE', `the ${this.options.name} pool is closed`));
    const slot = this.slots.reduce((a, b) => (b.busy < a.busy ? b : a));
    const id = this.nextId++;
    const promise = new Promise<Reply>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (reply: unknown) => void, reject });
    });
    if (slot.busy++ === 0) slot.worker.ref();
    slot.worker.postMessage({ id, message }, transfer);
    return promise;
  }

  /** Stops every thread; anything still waiting fails (never hangs). */
  async close(): Promise<void> {
    const slots = this.slots.splice(0);
    this.closing = true;
    await Promise.all(slots.map((s) => s.worker.terminate()));
    this.failAll(new VabError('ESTATE', `the ${this.options.name} pool is closed`));
  }

  private start(): Slot {
    const worker = new Worker(PRELUDE + this.options.source + LOOP, { eval: true, workerData: this.options.workerData });
    const slot: Slot = { worker, busy: 0 };
    const name = this.options.name;
    worker.on('message', (msg: { id: number; reply?: unknown; error?: { code?: string; message: string } }) => {
      // An idle thread must not keep the process alive: an owner that forgets close() still exits.
      if (--slot.busy === 0) worker.unref();
      const waiter = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      if (!waiter) return;
      if (msg.error === undefined) return waiter.resolve(msg.reply);
      const code = msg.error.code !== undefined && KNOWN_CODES.has(msg.error.code) ? (msg.error.code as VabErrorCode) : 'EIO';
      waiter.reject(new VabError(code, code === 'EIO' ? `${name} thread failed: ${msg.error.message}` : msg.error.message));
    });
    worker.on('error', (err) => this.failAll(new VabError('EIO', `${name} thread failed: ${err.message}`, { cause: err })));
    worker.on('exit', (code) => this.closing || this.failAll(new VabError('EIO', `${name} thread exited with code ${code}`)));
    worker.unref();
    return slot;
  }

  private failAll(err: Error): void {
    this.failure ??= err;
    for (const waiter of this.pending.values()) waiter.reject(this.failure);
    this.pending.clear();
  }
}
