import { constants, promises as fs } from 'node:fs';
import net from 'node:net';
import { VabError, errnoCode } from '../util/errors';
import { DmUserHeader, encodeHeader } from './codec';
import type { ChannelOpener, DmUserChannel } from './channel';
import { DmUserResponse } from './constants';
import { DmUserMessageQueue } from './message-queue';
import { Placement, SharedHello, SharedMessage, SharedRequestDecoder, encodeReady } from './shared-frame';
import { nativeSharedMemory, sharedMemoryProblem } from './shared-memory';
import { miscEndpointPath, sharedEndpointPath } from './socket-endpoint';

/**
 * `shared`: READ answers through the channel's shared memory (shared-frame.ts); `plain`: every byte
 * on the socket; `auto`: shared when both sides have the native module and the memory can be mapped.
 */
export type SocketTransport = 'auto' | 'shared' | 'plain';

/**
 * Opens one channel on the target's socket endpoint (the socket transport's misc device), as a
 * daemon thread opens `/dev/dm-user/<name>`. Fails with ENOTFOUND when no such target exists.
 */
export async function openChannel(runDir: string, name: string, transport: SocketTransport = 'auto'): Promise<DmUserChannel> {
  if (transport === 'shared' && !nativeSharedMemory()) {
    throw new VabError('EUNSUPPORTED', `dm-user ${name}: no shared transport here (${sharedMemoryProblem()}); run "npm run build" with g++ installed, or use --transport auto or plain`);
  }
  if (transport !== 'plain' && nativeSharedMemory()) {
    try {
      const socket = await connect(sharedEndpointPath(runDir, name));
      const channel = new SharedSocketChannel(name, socket);
      await channel.ready;
      return channel;
    } catch (err) {
      // No shared endpoint (a kernel without the native module), or memory this side cannot map
      // (another user's kernel): the plain endpoint serves the same target.
      if (transport === 'shared' || !(err instanceof VabError) || (err.code !== 'ENOTFOUND' && err.code !== 'EUNSUPPORTED')) throw err;
    }
  }
  const socket = await connect(miscEndpointPath(runDir, name));
  return new SocketChannel(name, socket);
}

/** An opener bound to one run directory, for code that must not care about the transport. */
export function socketChannelOpener(runDir: string, transport: SocketTransport = 'auto'): ChannelOpener {
  return (name) => openChannel(runDir, name, transport);
}

function connect(endpoint: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    // Half-open: the kernel ends its side when the target is removed, and the daemon may still
    // answer what it holds, as writes to the char device keep working after the target is gone.
    const socket = net.createConnection({ path: endpoint, allowHalfOpen: true });
    const onError = (err: Error): void => {
      socket.destroy();
      const code = errnoCode(err);
      if (code === 'ENOENT' || code === 'ECONNREFUSED') {
        reject(new VabError('ENOTFOUND', `no dm-user target at ${endpoint} (${code})`, { cause: err }));
      } else {
        reject(new VabError('EIO', `cannot open dm-user endpoint ${endpoint}: ${err.message}`, { cause: err }));
      }
    };
    socket.once('error', onError);
    socket.once('connect', () => {
      socket.off('error', onError);
      resolve(socket);
    });
  });
}

class SocketChannel extends DmUserMessageQueue implements DmUserChannel {
  readonly transport: 'shared' | 'plain' = 'plain';
  private isClosed = false;
  readonly closed: Promise<void>;

  constructor(
    name: string,
    protected readonly socket: net.Socket,
    decoder?: ConstructorParameters<typeof DmUserMessageQueue>[1],
  ) {
    super(name, decoder);
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('data', (chunk: Buffer) => {
      // The kernel sent something this side cannot represent: nothing sane can follow.
      if (!this.deliver(chunk)) this.socket.destroy();
    });
    socket.on('end', () => this.finish());
    socket.on('close', () => {
      this.isClosed = true;
      this.finish();
    });
    // A reset (kernel killed) ends the channel like a removal; `closed` reports it.
    socket.on('error', () => undefined);
  }

  respond(header: DmUserHeader, payload: Buffer = EMPTY): Promise<void> {
    const refused = this.takeAnswer(header, payload.length);
    if (refused) return Promise.reject(refused);
    const head = encodeHeader(header);
    return new Promise((resolve, reject) => {
      const done = (err?: Error | null): void =>
        err ? reject(new VabError('EIO', `dm-user ${this.name}: answer to seq ${header.seq} not sent: ${err.message}`)) : resolve();
      if (payload.length === 0) {
        this.socket.write(head, done);
        return;
      }
      // Corked so header and payload leave in one writev, without copying the payload.
      this.socket.cork();
      this.socket.write(head);
      this.socket.write(payload, done);
      this.socket.uncork();
    });
  }

  close(): Promise<void> {
    if (!this.isClosed) this.socket.end(() => this.socket.destroy());
    return this.closed;
  }

  protected transportClosed(): boolean {
    return this.isClosed || this.socket.writableEnded;
  }

  /** The plain transport builds no answer in place: READ answers are copied into the socket. */
  answerBuffer(_header: DmUserHeader): Buffer | undefined {
    return undefined;
  }

  /** Sends an answer's header alone (its payload, if any, is already where the kernel reads it). */
  protected sendHeader(header: DmUserHeader): Promise<void> {
    return new Promise((resolve, reject) => {
      this.socket.write(encodeHeader(header), (err?: Error | null) =>
        err ? reject(new VabError('EIO', `dm-user ${this.name}: answer to seq ${header.seq} not sent: ${err.message}`)) : resolve(),
      );
    });
  }
}

/**
 * The daemon side of a shared-memory channel: requests carry a placement; a placed READ answer is
 * built in the channel's memory at that place (answerBuffer), then its header alone goes on the
 * socket. Placements are checked against the mapping before any byte is written: one outside it is
 * a broken kernel, and the channel is dropped.
 */
class SharedSocketChannel extends SocketChannel {
  override readonly transport = 'shared';
  private readonly placements = new Map<number, Placement>();
  private memory: Buffer | undefined;
  /** Settles once the memory is mapped and the kernel has attached the channel to its target. */
  readonly ready: Promise<void>;

  constructor(name: string, socket: net.Socket) {
    let hello!: (h: SharedHello) => void;
    const helloSeen = new Promise<SharedHello>((resolve) => (hello = resolve));
    let attached!: () => void;
    const attachedSeen = new Promise<void>((resolve) => (attached = resolve));
    const decoder = new SharedRequestDecoder((h) => hello(h), () => attached());
    super(name, socket, {
      push: (chunk) => {
        const messages: SharedMessage[] = decoder.push(chunk);
        for (const m of messages) if (m.placement.length > 0) this.placements.set(m.header.seq, m.placement);
        return messages;
      },
    });
    const early = new Promise<never>((_, reject) =>
      socket.once('close', () => reject(new VabError('EUNSUPPORTED', `dm-user ${name}: the kernel closed the shared channel before attaching it`))),
    );
    const mapped = helloSeen.then(async (h) => {
      this.memory = await mapKernelMemory(socket, h);
      // Only now does the kernel attach the channel to its target; it says so by echoing this.
      socket.write(encodeReady());
      await attachedSeen;
    });
    this.ready = Promise.race([mapped, early]).then(
      () => undefined,
      (err: Error) => {
        socket.destroy();
        const why = err instanceof VabError ? err.message : `cannot map the kernel's shared memory: ${err.message}`;
        // --transport auto falls back to the plain socket on this code; only `shared` shows it.
        throw new VabError('EUNSUPPORTED', `dm-user ${name}: ${why}; use --transport auto or plain to serve over the socket instead`, { cause: err });
      },
    );
    this.ready.catch(() => undefined);
  }

  /** Where to build the answer to a placed READ, or undefined when it goes inline. */
  override answerBuffer(header: DmUserHeader): Buffer | undefined {
    const placement = this.placements.get(header.seq);
    if (!placement) return undefined;
    return this.regionOf(placement, header.seq);
  }

  override async respond(header: DmUserHeader, payload: Buffer = EMPTY): Promise<void> {
    const placement = this.placements.get(header.seq);
    if (!placement) return super.respond(header, payload);
    const refused = this.takeAnswer(header, payload.length);
    if (refused) throw refused;
    this.placements.delete(header.seq);
    if (header.type === DmUserResponse.Success) {
      const region = this.regionOf(placement, header.seq);
      // Built elsewhere (not in answerBuffer's region): one copy, as the socket would have made.
      if (payload.buffer !== region.buffer || payload.byteOffset !== region.byteOffset) payload.copy(region);
    }
    return this.sendHeader(header);
  }

  private regionOf(placement: Placement, seq: number): Buffer {
    const memory = this.memory!;
    if (placement.offset + placement.length > memory.length) {
      this.socket.destroy();
      throw new VabError('EPROTO', `dm-user ${this.name}: request seq ${seq} placed at ${placement.offset}+${placement.length}, outside the ${memory.length}-byte shared memory`);
    }
    return memory.subarray(placement.offset, placement.offset + placement.length);
  }
}

/**
 * Maps the memory the hello names. The descriptor is looked up in the process at the other end of
 * this socket (SO_PEERCRED), never in one the kernel names, and only a sealed memfd is mapped (it
 * cannot shrink under us, which would make our writes fault).
 */
async function mapKernelMemory(socket: net.Socket, hello: SharedHello): Promise<Buffer> {
  const api = nativeSharedMemory()!;
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (fd === undefined || fd < 0) throw new VabError('EUNSUPPORTED', 'the socket has no descriptor to ask for its peer');
  const pid = api.peerPid(fd);
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(`/proc/${pid}/fd/${hello.memoryFd}`, constants.O_RDWR);
  } catch (err) {
    throw new VabError('EUNSUPPORTED', `cannot open the kernel's shared memory (pid ${pid}, descriptor ${hello.memoryFd}): ${(err as Error).message}`);
  }
  try {
    return Buffer.from(api.mapSealed(handle.fd));
  } catch (err) {
    throw new VabError('EUNSUPPORTED', `cannot map the kernel's shared memory (pid ${pid}, descriptor ${hello.memoryFd}): ${(err as Error).message}`);
  } finally {
    // The mapping outlives the descriptor.
    await handle.close();
  }
}

const EMPTY = Buffer.alloc(0);
