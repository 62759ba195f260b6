import { promises as fs } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { VabError, errnoCode } from '../util/errors';
import { PRIVATE_DIR_MODE, listenPrivate } from '../util/private-socket';
import { SHARED_READY_SIZE, decodeReady, encodeHello, encodeReady } from './shared-frame';
import { SharedArea, nativeSharedMemory } from './shared-memory';

/**
 * The kernel's side of the socket transport: a unix socket per target at `<run>/dm-user/<name>`,
 * standing in for the misc device `/dev/dm-user/<name>`. Each accepted connection is one `open()`,
 * that is one channel. Bytes are the dm-user wire format unchanged in both directions; there is no
 * extra framing, so a read or write boundary carries no meaning on this transport.
 */
export function miscEndpointPath(runDir: string, name: string): string {
  return path.join(runDir, 'dm-user', name);
}

/**
 * The same target's shared-memory endpoint (see shared-frame.ts): a daemon that knows that transport
 * connects here; anything else keeps using the plain endpoint, which is unchanged. It exists only
 * when the kernel has the native module.
 */
export function sharedEndpointPath(runDir: string, name: string): string {
  return path.join(runDir, SHARED_DIR, name);
}

const SHARED_DIR = 'dm-user-shared';

/** What the kernel can do with one open of the endpoint. */
export interface MiscConnection {
  /** Queues bytes for the daemon, in order (one or more whole messages). */
  send(chunks: readonly Buffer[]): void;
  /**
   * No message will follow (the target is gone): the daemon's reads see end of file, its ENOTBLK.
   * Answers to what it holds are still accepted until it closes.
   */
  endOfMessages(): void;
  /** Drops the connection at once; pending output is discarded. */
  destroy(): void;
  /** On a shared-memory connection: its memory, where placed READ answers are found. */
  readonly shared?: SharedArea;
}

/** The kernel's callbacks for one connection. */
export interface MiscConnectionEvents {
  /** Bytes the daemon wrote: answers, possibly cut anywhere. */
  data(chunk: Buffer): void;
  /** The daemon closed its end (or died); called once, and nothing follows it. */
  closed(): void;
}

export interface MiscEndpoint {
  readonly path: string;
  /** Stops accepting opens and removes the socket file; open connections stay as they are. */
  close(): Promise<void>;
}

/**
 * Listens on `file` (replacing a stale socket left by a dead kernel) and calls `open` for each
 * connection. The caller owns the directory and must make sure no live kernel uses the path.
 */
export async function listenMiscEndpoint(
  file: string,
  open: (connection: MiscConnection) => MiscConnectionEvents,
  options: { shared?: boolean } = {},
): Promise<MiscEndpoint> {
  await removeStaleSocket(file);
  // Paused: `accept` takes the connection over before any byte is read.
  const server = net.createServer({ allowHalfOpen: false, pauseOnConnect: true }, (socket) => accept(socket, open));
  await listenPrivate(server, file);
  const servers = [{ server, file }];
  if ((options.shared ?? true) && nativeSharedMemory()) {
    // <run>/dm-user/<name> → <run>/dm-user-shared/<name>
    const runDir = path.dirname(path.dirname(file));
    const sharedFile = sharedEndpointPath(runDir, path.basename(file));
    try {
      await fs.mkdir(path.dirname(sharedFile), { recursive: true, mode: PRIVATE_DIR_MODE });
      await removeStaleSocket(sharedFile);
      const shared = net.createServer({ allowHalfOpen: false, pauseOnConnect: true }, (socket) => acceptShared(socket, open));
      await listenPrivate(shared, sharedFile);
      servers.push({ server: shared, file: sharedFile });
    } catch (err) {
      server.close();
      await fs.rm(file, { force: true });
      throw err;
    }
  }
  let closing: Promise<void> | undefined;
  return {
    path: file,
    close() {
      // server.close() stops accepting at once; its callback would wait for every open channel.
      for (const s of servers) s.server.close();
      closing ??= Promise.all(servers.map((s) => fs.rm(s.file, { force: true }))).then(() => undefined);
      return closing;
    },
  };
}

/** A shared-memory open: its memory first, announced by the hello, then a channel like any other. */
function acceptShared(socket: net.Socket, open: (connection: MiscConnection) => MiscConnectionEvents): void {
  let area: SharedArea | undefined;
  try {
    area = SharedArea.create();
  } catch {
    // Out of memory or descriptors: this open fails; the daemon may retry on the plain endpoint.
  }
  if (!area) {
    socket.destroy();
    return;
  }
  accept(socket, open, area);
}

/** Size of the per-connection read buffer: a few socket buffers' worth of answer bytes per read. */
const READ_BUFFER_SIZE = 512 * 1024;

function accept(accepted: net.Socket, open: (connection: MiscConnection) => MiscConnectionEvents, shared?: SharedArea): void {
  let events: MiscConnectionEvents | undefined;
  let closed = false;
  // A shared channel joins its target only once the daemon says it has mapped the memory: one
  // that cannot (and falls back to the plain endpoint) never holds a message it would then fail.
  const ready = shared ? new ReadyReader() : undefined;
  const socket = withReusedReadBuffer(accepted, (chunk) => {
    if (closed) return;
    if (!events && ready) {
      const rest = ready.push(chunk);
      if (rest === 'bad') return socket.destroy();
      if (rest === undefined) return;
      // The echo goes out before anything the attach hands this channel.
      socket.write(encodeReady());
      events = open(connection);
      chunk = rest;
    }
    if (!events || chunk.length === 0) return;
    try {
      events.data(chunk);
    } catch {
      // A handler bug must not take the kernel down with it: drop this one channel instead.
      socket.destroy();
    }
  });
  if (shared) {
    socket.write(encodeHello({ memoryFd: shared.fd }));
    // The descriptor stays open while the channel is: the daemon opens it through /proc meanwhile.
    socket.once('close', () => shared.close());
  }
  let ended = false;
  const connection: MiscConnection = {
    send(chunks) {
      if (ended || socket.destroyed) return;
      if (chunks.length === 1) {
        socket.write(chunks[0]);
        return;
      }
      socket.cork();
      for (const chunk of chunks) socket.write(chunk);
      socket.uncork();
    },
    endOfMessages() {
      if (ended) return;
      ended = true;
      socket.end();
    },
    destroy() {
      socket.destroy();
    },
    shared,
  };
  if (!ready) events = open(connection);
  const close = (): void => {
    if (closed) return;
    closed = true;
    events?.closed();
  };
  // The daemon's FIN means its fd is gone for writing answers: the channel is released.
  socket.on('end', close);
  socket.on('close', close);
  socket.on('error', () => undefined);
  socket.resume();
}

/**
 * READ answers are the bulk of the traffic (up to 1 MiB each). A stream socket allocates a fresh
 * 64 KiB Buffer per read; with net's `onread` the bytes land in one reused buffer, in fewer and
 * larger reads: less garbage and fewer callbacks (measured: about twice the socket throughput, and
 * far more small answers per second). Reading straight into each answer's payload was tried and was
 * slower than this one copy; so was `onread.buffer` as a function handing out the rest of the IO's
 * own buffer mid-payload (no gain measurable: the copy is a small share of an IO's latency). Node offers `onread` only when constructing a socket, so the accepted
 * handle is wrapped in a new one; without that handle the plain stream is used. `deliver` must not
 * keep its chunk: the next read overwrites it.
 */
function withReusedReadBuffer(accepted: net.Socket, deliver: (chunk: Buffer) => void): net.Socket {
  const handle = (accepted as unknown as { _handle?: unknown })._handle;
  if (!handle) {
    accepted.on('data', deliver);
    return accepted;
  }
  const buffer = Buffer.allocUnsafe(READ_BUFFER_SIZE);
  const callback = (length: number): void => deliver(buffer.subarray(0, length));
  return new net.Socket({ handle, readable: true, writable: true, onread: { buffer, callback } } as net.SocketConstructorOpts);
}

async function removeStaleSocket(file: string): Promise<void> {
  let stat;
  try {
    stat = await fs.lstat(file);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return;
    throw err;
  }
  if (!stat.isSocket()) {
    throw new VabError('EEXIST', `${file} exists and is not a socket; refusing to replace it`, { file });
  }
  await fs.rm(file, { force: true });
}

/** Collects the daemon's ready message on a shared channel; then hands back what followed it. */
class ReadyReader {
  private readonly bytes = Buffer.alloc(SHARED_READY_SIZE);
  private fill = 0;

  /** undefined: not complete yet; 'bad': not a ready message; else the bytes after it. */
  push(chunk: Buffer): Buffer | 'bad' | undefined {
    const take = Math.min(SHARED_READY_SIZE - this.fill, chunk.length);
    chunk.copy(this.bytes, this.fill, 0, take);
    this.fill += take;
    if (this.fill < SHARED_READY_SIZE) return undefined;
    try {
      decodeReady(this.bytes);
    } catch {
      return 'bad';
    }
    return chunk.subarray(take);
  }
}
