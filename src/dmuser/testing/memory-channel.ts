import { VabError } from '../../util/errors';
import type { DmUserChannel } from '../channel';
import { DmUserHeader, encodeHeader } from '../codec';
import { DmUserMessageQueue } from '../message-queue';
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

class MemoryChannel extends DmUserMessageQueue implements DmUserChannel {
  private events: MiscConnectionEvents | undefined;
  private isClosed = false;
  private resolveClosed!: () => void;
  readonly closed = new Promise<void>((resolve) => (this.resolveClosed = resolve));

  connect(device: MiscDevice): void {
    const connection: MiscConnection = {
      send: (chunks) => {
        if (this.isClosed || this.finished) return;
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

  respond(header: DmUserHeader, payload?: Buffer): Promise<void> {
    const refused = this.takeAnswer(header, payload?.length ?? 0);
    if (refused) return Promise.reject(refused);
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

  protected transportClosed(): boolean {
    return this.isClosed;
  }

  private receive(chunk: Buffer): void {
    if (this.isClosed) return;
    if (!this.deliver(chunk)) this.shut();
  }

  private shut(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.finish();
    this.events?.closed();
    this.resolveClosed();
  }
}
