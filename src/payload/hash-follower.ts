import { VabError } from '../util/errors';
import { WorkerPool } from '../util/worker-pool';
import { hashFileRange } from './hash-range';

/**
 * SHA-256 of image files that are still being written, computed on a thread of its own. The
 * writer says how far its file is final ("settled": written, and no later operation writes
 * before that point); the thread reads that much back from the page cache and hashes it. So the
 * new image's hash costs the main thread nothing, and writes may come in any order.
 *
 * One thread serves every file of an extract: jobs run in the order they are posted, which is
 * what makes "advance, advance, finish" safe without waiting for each advance.
 */

const WORKER_SOURCE = `
const fs = require('fs');
const { createHash } = require('crypto');
const files = new Map();
let buffer = Buffer.alloc(0);
${hashFileRange.toString()}
function follow(key, path) {
  let state = files.get(key);
  if (!state) {
    state = { fd: fs.openSync(path, 'r'), hash: createHash('sha256'), at: 0 };
    files.set(key, state);
  }
  return state;
}
function hashUpTo(state, end) {
  if (end <= state.at) return;
  buffer = hashFileRange(fs, state.fd, state.hash, buffer, state.at, end - state.at);
  state.at = end;
}
function forget(key) {
  const state = files.get(key);
  files.delete(key);
  if (state) fs.closeSync(state.fd);
}
async function job({ kind, key, path, upTo, position, data }) {
  try {
    if (kind === 'forget') {
      forget(key);
      return { reply: {} };
    }
    const state = follow(key, path);
    if (kind === 'data') {
      // Bytes the writer still had in memory: no need to read them back. Anything else is read.
      if (position === state.at) {
        state.hash.update(data);
        state.at += data.length;
      }
      return { reply: {} };
    }
    hashUpTo(state, upTo);
    if (kind === 'advance') return { reply: {} };
    forget(key);
    const digest = state.hash.digest();
    return { reply: { digest } };
  } catch (err) {
    forget(key);
    throw err;
  }
}
`;

/** The thread, shared by the files of one extract; its owner closes it. */
export class HashFollowerPool {
  private pool: WorkerPool | undefined;
  private nextKey = 0;

  follow(file: string): HashFollower {
    this.pool ??= new WorkerPool({ name: 'image hash', threads: 1, source: WORKER_SOURCE });
    return new HashFollower(this.pool, file, this.nextKey++);
  }

  async close(): Promise<void> {
    const pool = this.pool;
    this.pool = undefined;
    await pool?.close();
  }
}

/** One file's hash; `advance` and `feed` may be called freely, only `finish` waits. */
export class HashFollower {
  /** How far the thread will have hashed once it has done everything posted so far. */
  private posted = 0;
  private failure: unknown;
  private finished = false;

  constructor(
    private readonly pool: WorkerPool,
    readonly file: string,
    private readonly key: number,
  ) {}

  /** The first `bytes` of the file are final. Going backwards is ignored. */
  advance(bytes: number): void {
    if (bytes <= this.posted || this.failure || this.finished) return;
    this.posted = bytes;
    this.post({ kind: 'advance', key: this.key, path: this.file, upTo: bytes });
  }

  /** Whether `feed` would take bytes at `position` (they continue what is hashed so far). */
  wants(position: number): boolean {
    return position === this.posted && !this.failure && !this.finished;
  }

  /**
   * Final bytes at `position`, still in memory: they move to the thread (`data` must own its whole
   * ArrayBuffer, and is unusable here after), which hashes them without reading the file.
   */
  feed(position: number, data: Buffer): void {
    if (!this.wants(position)) return;
    this.posted += data.length;
    this.post({ kind: 'data', key: this.key, path: this.file, position, data }, [data.buffer as ArrayBuffer]);
  }

  /** The SHA-256 of the file's first `size` bytes (the file must be final by now). */
  async finish(size: number): Promise<Buffer> {
    this.finished = true;
    let reply: { digest: Uint8Array };
    try {
      reply = await this.pool.run<{ digest: Uint8Array }>({ kind: 'finish', key: this.key, path: this.file, upTo: size });
    } catch (err) {
      throw this.readBackError(this.failure ?? err);
    }
    if (this.failure) throw this.readBackError(this.failure);
    return Buffer.from(reply.digest);
  }

  /** Stops following (the file is being given up); never throws. */
  async forget(): Promise<void> {
    this.finished = true;
    await this.pool.run({ kind: 'forget', key: this.key }).catch(() => undefined);
  }

  private post(message: object, transfer: ArrayBuffer[] = []): void {
    this.pool.run(message, transfer).catch((err: unknown) => {
      this.failure ??= err;
    });
  }

  private readBackError(err: unknown): VabError {
    return new VabError('EIO', `cannot read ${this.file} back to hash it: ${(err as Error).message}`, { file: this.file, cause: err });
  }
}
