import net from 'node:net';
import { VabError, errnoCode } from '../util/errors';
import { DmUserDecoder, DmUserHeader, DmUserMessage, encodeHeader } from './codec';
import { DmUserRequest, DmUserResponse } from './constants';
import type { ChannelOpener, DmUserChannel } from './channel';
import { miscEndpointPath } from './socket-endpoint';

/**
 * Opens one channel on `<runDir>/dm-user/<name>` (the socket transport's misc device), as a
 * daemon thread opens `/dev/dm-user/<name>`. Fails with ENOTFOUND when no such target exists.
 */
export async function openChannel(runDir: string, name: string): Promise<DmUserChannel> {
  const endpoint = miscEndpointPath(runDir, name);
  const socket = await connect(endpoint);
  return new SocketChannel(name, socket);
}

/** An opener bound to one run directory, for code that must not care about the transport. */
export function socketChannelOpener(runDir: string): ChannelOpener {
  return (name) => openChannel(runDir, name);
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

const requestPayloadLength = (header: DmUserHeader): number => (header.type === DmUserRequest.Write ? header.len : 0);

class SocketChannel implements DmUserChannel {
  private readonly decoder = new DmUserDecoder(requestPayloadLength);
  private readonly inbox: DmUserMessage[] = [];
  private readonly waiters: Array<(message: DmUserMessage | undefined) => void> = [];
  /** Requests delivered and not answered, by seq: what `respond` may answer and how. */
  private readonly unanswered = new Map<number, DmUserHeader>();
  private ended = false;
  private isClosed = false;
  readonly closed: Promise<void>;

  constructor(
    readonly name: string,
    private readonly socket: net.Socket,
  ) {
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('end', () => this.finish());
    socket.on('close', () => {
      this.isClosed = true;
      this.finish();
    });
    // A reset (kernel killed) ends the channel like a removal; `closed` reports it.
    socket.on('error', () => undefined);
  }

  get outstanding(): number {
    return this.unanswered.size;
  }

  next(): Promise<DmUserMessage | undefined> {
    const message = this.inbox.shift();
    if (message) return Promise.resolve(message);
    if (this.ended) return Promise.resolve(undefined);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  async *[Symbol.asyncIterator](): AsyncIterator<DmUserMessage> {
    for (;;) {
      const message = await this.next();
      if (!message) return;
      yield message;
    }
  }

  respond(header: DmUserHeader, payload: Buffer = EMPTY): Promise<void> {
    const request = this.unanswered.get(header.seq);
    if (!request) {
      return Promise.reject(new VabError('EPROTO', `dm-user ${this.name}: no unanswered request with seq ${header.seq} on this channel`));
    }
    const expected = header.type === DmUserResponse.Success && request.type === DmUserRequest.Read ? request.len : 0;
    if (payload.length !== expected) {
      return Promise.reject(
        new VabError('EPROTO', `dm-user ${this.name}: answer to seq ${header.seq} needs ${expected} payload bytes, got ${payload.length}`),
      );
    }
    if (this.isClosed || this.socket.writableEnded) {
      return Promise.reject(new VabError('EIO', `dm-user ${this.name}: channel is closed`));
    }
    this.unanswered.delete(header.seq);
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

  private receive(chunk: Buffer): void {
    let messages: DmUserMessage[];
    try {
      messages = this.decoder.push(chunk);
    } catch {
      // The kernel sent something this side cannot represent: nothing sane can follow.
      this.socket.destroy();
      return;
    }
    for (const message of messages) {
      this.unanswered.set(message.header.seq, message.header);
      const waiter = this.waiters.shift();
      if (waiter) waiter(message);
      else this.inbox.push(message);
    }
  }

  private finish(): void {
    this.ended = true;
    for (const waiter of this.waiters.splice(0)) waiter(undefined);
  }
}

const EMPTY = Buffer.alloc(0);
