import { VabError } from '../util/errors';
import { DmUserDecoder, DmUserHeader, DmUserMessage } from './codec';
import { DmUserRequest, DmUserResponse } from './constants';

const requestPayloadLength = (header: DmUserHeader): number => (header.type === DmUserRequest.Write ? header.len : 0);

/**
 * The daemon side of a channel, whatever carries its bytes: messages decoded from the kernel's
 * stream, handed out in order to `next()`, and the record of what is still unanswered, which
 * decides what `respond` may send. Transports (socket, in-memory) feed bytes in and send answers.
 */
export abstract class DmUserMessageQueue {
  private readonly inbox: DmUserMessage[] = [];
  private readonly waiters: Array<(message: DmUserMessage | undefined) => void> = [];
  /** Requests delivered and not answered, by seq: what `respond` may answer and how. */
  private readonly unanswered = new Map<number, DmUserHeader>();
  private ended = false;

  constructor(
    readonly name: string,
    /** The kernel's byte stream → messages; the plain dm-user framing unless a transport has its own. */
    private readonly decoder: { push(chunk: Buffer): DmUserMessage[] } = new DmUserDecoder(requestPayloadLength),
  ) {}

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

  /**
   * Checks an answer against the request it names and, when it may be sent, forgets that
   * request: the error to reject with, or undefined.
   */
  protected takeAnswer(header: DmUserHeader, payloadLength: number): VabError | undefined {
    const request = this.unanswered.get(header.seq);
    if (!request) return new VabError('EPROTO', `dm-user ${this.name}: no unanswered request with seq ${header.seq} on this channel`);
    const expected = header.type === DmUserResponse.Success && request.type === DmUserRequest.Read ? request.len : 0;
    if (payloadLength !== expected) {
      return new VabError('EPROTO', `dm-user ${this.name}: answer to seq ${header.seq} needs ${expected} payload bytes, got ${payloadLength}`);
    }
    if (this.transportClosed()) return new VabError('EIO', `dm-user ${this.name}: channel is closed`);
    this.unanswered.delete(header.seq);
    return undefined;
  }

  /** Decodes bytes from the kernel; false when they cannot be a message stream (nothing sane can follow). */
  protected deliver(chunk: Buffer): boolean {
    let messages: DmUserMessage[];
    try {
      messages = this.decoder.push(chunk);
    } catch {
      return false;
    }
    for (const message of messages) {
      this.unanswered.set(message.header.seq, message.header);
      const waiter = this.waiters.shift();
      if (waiter) waiter(message);
      else this.inbox.push(message);
    }
    return true;
  }

  /** No more messages will come: pending and later `next()` calls resolve to undefined. */
  protected finish(): void {
    this.ended = true;
    for (const waiter of this.waiters.splice(0)) waiter(undefined);
  }

  protected get finished(): boolean {
    return this.ended;
  }

  /** Whether answers can no longer be sent. */
  protected abstract transportClosed(): boolean;
}
