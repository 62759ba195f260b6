import { Worker } from 'worker_threads';

/**
 * Reads /dev/fuse off the event loop. A read() on /dev/fuse blocks until the kernel has a request,
 * so it must never run on the main thread (that would freeze the server) nor on libuv's threadpool
 * (a few idle blocked reads would starve every fs call the provider makes). Each worker thread
 * blocks in readSync on the shared fd (the kernel hands each request to exactly one reader) and
 * transfers the bytes to the main thread, which decodes, serves and replies.
 *
 * The worker's code is passed as source (`eval`) rather than a file path so that it runs the same
 * from compiled dist/ and from ts-jest, which cannot load a .ts file into a worker.
 */
const WORKER_SOURCE = `
'use strict';
const fs = require('fs');
const { parentPort, workerData } = require('worker_threads');
const { fd, bufferSize, copyBelow } = workerData;
// Requests this small are copied out so the large buffer can be reused; larger ones (WRITE data)
// are transferred whole and a fresh buffer is allocated, which avoids copying megabytes.
let buffer = new Uint8Array(bufferSize);
for (;;) {
  let length;
  try {
    length = fs.readSync(fd, buffer, 0, bufferSize, null);
  } catch (err) {
    // ENOENT is a historical "interrupted, try again"; EINTR and EAGAIN are retried as well.
    if (err.code === 'EINTR' || err.code === 'EAGAIN' || err.code === 'ENOENT') continue;
    parentPort.postMessage({ kind: 'end', code: err.code || 'UNKNOWN', message: String(err.message) });
    break;
  }
  if (length === 0) {
    parentPort.postMessage({ kind: 'end', code: 'EOF', message: 'read returned 0 bytes' });
    break;
  }
  if (length < copyBelow) {
    const copy = buffer.slice(0, length);
    parentPort.postMessage({ kind: 'request', bytes: copy.buffer, length }, [copy.buffer]);
  } else {
    const full = buffer;
    buffer = new Uint8Array(bufferSize);
    parentPort.postMessage({ kind: 'request', bytes: full.buffer, length }, [full.buffer]);
  }
}
`;

export type ReaderMessage =
  | { kind: 'request'; bytes: ArrayBuffer; length: number }
  | { kind: 'end'; code: string; message: string };

export interface ReaderPoolHandlers {
  /** One whole request as the kernel sent it; the buffer belongs to the receiver. */
  onRequest(request: Buffer): void;
  /** A reader stopped: `code` is the errno name (ENODEV once the connection is gone). */
  onReaderEnd(code: string, message: string): void;
  /** Every reader thread has exited. */
  onAllExited(): void;
}

const COPY_BELOW = 64 * 1024;

/** A fixed set of reader threads on one /dev/fuse fd. */
export class ReaderPool {
  private readonly workers = new Set<Worker>();

  constructor(fd: number, bufferSize: number, count: number, private readonly handlers: ReaderPoolHandlers) {
    for (let i = 0; i < count; i++) {
      const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { fd, bufferSize, copyBelow: COPY_BELOW } });
      this.workers.add(worker);
      worker.on('message', (message: ReaderMessage) => this.onMessage(message));
      worker.on('error', (err) => this.handlers.onReaderEnd('WORKER_ERROR', err.message));
      worker.on('exit', () => {
        this.workers.delete(worker);
        if (this.workers.size === 0) this.handlers.onAllExited();
      });
    }
  }

  get running(): number {
    return this.workers.size;
  }

  private onMessage(message: ReaderMessage): void {
    if (message.kind === 'request') this.handlers.onRequest(Buffer.from(message.bytes, 0, message.length));
    else this.handlers.onReaderEnd(message.code, message.message);
  }
}
