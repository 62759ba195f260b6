import { VabError } from '../../util/errors';
import type { DmUserChannel } from '../channel';
import { DmUserDecoder, DmUserHeader, DmUserMessage, encodeHeader } from '../codec';
import { DmUserRequest, DmUserResponse } from '../constants';
import type { MiscConnection, MiscConnectionEvents } from '../socket-endpoint';

/** Whatever takes opens of a misc device: the kernel's Target, or a test's fake. */
export interface MiscDevice {
  attach(connection: MiscConnection): MiscConnectionEvents;
}

/**
 * One open of `device`, in memory: the kernel side is a MiscConnection, the daemon side a
 * DmUserChannel, with the same wire bytes as the socket transport between them. Lets a whole
 * handler run against the real kernel channel code in one process, without FUSE or sockets (as
 * AOSP's TestBlockServer does). Bytes cross on the next turn of the event loop, in order, so
 * neither side is re-entered from the other's call.
 */
export function openMemoryChannel(device: MiscDevice, name: string): DmUserChannel {
  const channel = new MemoryChannel(name);
  channel.connect(device);
  return channel;
}

/** A factory with the shape of a ChannelOpener, for code that opens channels by name. */
export function memoryChannelOpener(devices: (name: string) => MiscDevice | undefined): (name: string) => Promise<DmUserChannel> {
  return async (name) => {
    const device = devices(name);
    if (!device) throw new VabError('ENOTFOUND', `no dm-user target named ${name}`);
    return openMemoryChannel(device, name);
  };
}

const requestPayloadLength = (header: DmUserHeader): number => (header.type === DmUserRequest.Write ? header.len : 0);

class MemoryChannel implements DmUserChannel {
  private readonly decoder = new DmUserDecoder(requestPayloadLength);
  private readonly inbox: DmUserMessage[] = [];
  private readonly waiters: Array<(message: DmUserMessage | undefined) => void> = [];
  private readonly unanswered = new Map<number, DmUserHeader>();
  private events: MiscConnectionEvents | undefined;
  private ended = false;
  private isClosed = false;
  private resolveClosed!: () => void;
  readonly closed = new Promise<void>((resolve) => (this.resolveClosed = resolve));

  constructor(readonly name: string) {}

  connect(device: MiscDevice): void {
    const connection: MiscConnection = {
      send: (chunks) => {
        if (this.isClosed || this.ended) return;
        const copies = chunks.map((c) => Buffer.from(c));
        setImmediate(() => {
          for (const chunk of copies) this.receive(chunk);
        });
      },
      endOfMessages: () => setImmediate(() => this.finish()),
      destroy: () => setImmediate(() => this.shut()),
    };
    this.events = device.attach(connection);
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

  respond(header: DmUserHeader, payload?: Buffer): Promise<void> {
    const request = this.unanswered.get(header.seq);
    if (!request) return Promise.reject(new VabError('EPROTO', `dm-user ${this.name}: no unanswered request with seq ${header.seq} on this channel`));
    const expected = header.type === DmUserResponse.Success && request.type === DmUserRequest.Read ? request.len : 0;
    if ((payload?.length ?? 0) !== expected) {
      return Promise.reject(new VabError('EPROTO', `dm-user ${this.name}: answer to seq ${header.seq} needs ${expected} payload bytes, got ${payload?.length ?? 0}`));
    }
    if (this.isClosed) return Promise.reject(new VabError('EIO', `dm-user ${this.name}: channel is closed`));
    this.unanswered.delete(header.seq);
    const head = encodeHeader(header);
    // The payload is handed over before the promise settles: the caller may reuse it afterwards.
    return new Promise((resolve, reject) =>
      setImmediate(() => {
        if (this.isClosed) {
          reject(new VabError('EIO', `dm-user ${this.name}: answer to seq ${header.seq} not sent: channel closed`));
          return;
        }
        this.events?.data(head);
        if (payload && payload.length > 0) this.events?.data(payload);
        resolve();
      }),
    );
  }

  close(): Promise<void> {
    this.shut();
    return this.closed;
  }

  private receive(chunk: Buffer): void {
    if (this.isClosed) return;
    let messages: DmUserMessage[];
    try {
      messages = this.decoder.push(chunk);
    } catch {
      this.shut();
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

  private shut(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.finish();
    this.events?.closed();
    this.resolveClosed();
  }
}
