import net from 'node:net';
import { VabError, errnoCode } from '../../util/errors';
import type { ControlCommand } from './protocol';
import { encodeRequest, MAX_REQUEST_BYTES } from './protocol';

/** Android's client retries a refused or missing socket this often. */
const RETRY_MS = 100;
/** A reply longer than this is not snapuserd's. */
const MAX_REPLY_BYTES = 4096;

/**
 * A connection to snapuserd's control socket, like Android's SnapuserdClient: connect (retrying
 * while the daemon is starting), check that it answers `query` with `active`, then one request
 * and one reply at a time.
 */
export class SnapuserdClient {
  private pending: { resolve: (reply: string) => void; reject: (err: Error) => void; timer: NodeJS.Timeout } | undefined;
  private closedError: Error | undefined;

  private constructor(
    private readonly socket: net.Socket,
    readonly socketPath: string,
    private readonly replyTimeoutMs: number,
  ) {
    socket.on('data', (chunk: Buffer) => {
      const waiter = this.pending;
      this.pending = undefined;
      if (!waiter) return;
      clearTimeout(waiter.timer);
      if (chunk.length > MAX_REPLY_BYTES) waiter.reject(new VabError('EPROTO', `snapuserd at ${socketPath} sent a ${chunk.length}-byte reply`));
      else waiter.resolve(chunk.toString('latin1'));
    });
    const onGone = (err?: Error): void => {
      this.closedError ??= new VabError('EPROTO', `snapuserd at ${socketPath} closed the connection${err ? `: ${err.message}` : ''}`);
      const waiter = this.pending;
      this.pending = undefined;
      if (waiter) {
        clearTimeout(waiter.timer);
        waiter.reject(this.closedError);
      }
    };
    socket.on('error', onGone);
    socket.on('close', () => onGone());
  }

  /** Connects within `timeoutMs` and validates the daemon (`query` → `active`). */
  static async connect(socketPath: string, timeoutMs = 10_000): Promise<SnapuserdClient> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      try {
        const socket = await openSocket(socketPath);
        const client = new SnapuserdClient(socket, socketPath, Math.max(1000, timeoutMs));
        const status = await client.send('query');
        if (status !== 'active') {
          client.close();
          throw new VabError('ESTATE', `snapuserd at ${socketPath} is ${JSON.stringify(status)}, not active (it is shutting down)`);
        }
        return client;
      } catch (err) {
        const code = errnoCode(err);
        if ((code === 'ENOENT' || code === 'ECONNREFUSED') && Date.now() + RETRY_MS <= until) {
          await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
          continue;
        }
        if (code === 'ENOENT' || code === 'ECONNREFUSED') throw new VabError('ETIMEDOUT', `no snapuserd answered on ${socketPath} within ${timeoutMs} ms (${code}): start it with vab snapuserd --run DIR, or vab boot`);
        if (code === 'EACCES') throw new VabError('EPERM', `not allowed to connect to ${socketPath} (the socket is root-only)`);
        throw err;
      }
    }
  }

  /** Sends one request and resolves with the reply. */
  send(request: string | ControlCommand): Promise<string> {
    const bytes = typeof request === 'string' ? Buffer.from(request, 'latin1') : encodeRequest(request);
    if (bytes.length > MAX_REQUEST_BYTES) return Promise.reject(new VabError('EINVAL_INPUT', `request of ${bytes.length} bytes exceeds snapuserd's ${MAX_REQUEST_BYTES}`));
    if (this.closedError) return Promise.reject(this.closedError);
    if (this.pending) return Promise.reject(new VabError('ESTATE', 'one request at a time on a snapuserd connection'));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending = undefined;
        reject(new VabError('ETIMEDOUT', `snapuserd at ${this.socketPath} did not answer ${JSON.stringify(bytes.toString('latin1').split(',')[0])} within ${this.replyTimeoutMs} ms`));
      }, this.replyTimeoutMs);
      this.pending = { resolve, reject, timer };
      this.socket.write(bytes);
    });
  }

  /** For `detach` and `stop`, which get no reply: sends and waits until the bytes are written. */
  async sendNoReply(request: string): Promise<void> {
    await new Promise<void>((resolve, reject) => this.socket.write(Buffer.from(request, 'latin1'), (err) => (err ? reject(err) : resolve())));
  }

  /** Resolves when the daemon closes the connection (after stop), or after `timeoutMs`. */
  async waitClosed(timeoutMs: number): Promise<boolean> {
    if (this.socket.destroyed || this.closedError) return true;
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.socket.once('close', () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  close(): void {
    this.socket.destroy();
  }
}

/** Like `SnapuserdClient.send` for one request, on a connection of its own (what the manager's DaemonControl needs). */
export function daemonControl(socketPath: string, timeoutMs = 10_000): { request(command: string): Promise<string> } {
  return {
    async request(command) {
      const client = await SnapuserdClient.connect(socketPath, timeoutMs);
      try {
        return await client.send(command);
      } finally {
        client.close();
      }
    },
  };
}

function openSocket(socketPath: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection({ path: socketPath });
    socket.once('connect', () => {
      socket.off('error', reject);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}
