import net from 'node:net';
import { VabError, errnoCode } from '../util/errors';
import { DmUserHeader, encodeHeader } from './codec';
import type { ChannelOpener, DmUserChannel } from './channel';
import { DmUserMessageQueue } from './message-queue';
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

class SocketChannel extends DmUserMessageQueue implements DmUserChannel {
  private isClosed = false;
  readonly closed: Promise<void>;

  constructor(
    name: string,
    private readonly socket: net.Socket,
  ) {
    super(name);
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
}

const EMPTY = Buffer.alloc(0);
