import { decodeHeader, encodeHeader } from '../dmuser/codec';
import { DM_USER_HEADER_SIZE, DmUserResponse } from '../dmuser/constants';
import type { MiscConnection } from '../dmuser/socket-endpoint';
import { INLINE, PLACEMENT_SIZE, Placement, encodePlacement } from '../dmuser/shared-frame';
import { lendRegion } from './region-lease';
import type { Logger } from '../util/log';
import { Errno } from '../fuse/protocol';
import { KernelMessage, describeRequest, ioError } from './message';

/** What a channel reports to its target. */
export interface ChannelOwner {
  readonly name: string;
  readonly logger: Logger;
  /** An answer failed an IO (error or unsupported response): log it like the kernel does. */
  logFailure(message: KernelMessage, reason: string): void;
  /** An answer freed one of the channel's slots: it can take the next queued message. */
  slotFreed(): void;
}

/** The result of the char device's write(): bytes consumed, or a negative errno. */
export type WriteResult = number;

/**
 * One open of a target's misc device, as the kernel sees it: the messages handed to it and not yet
 * answered, and the parser for the answers coming back. The parser follows the driver's write():
 * the first 40 bytes form a header, looked up by seq among THIS channel's messages; a successful
 * READ answer then takes exactly `len` payload bytes; a write never consumes past one answer.
 * Anything malformed poisons the channel for good (sticky EINVAL).
 */
export class KernelChannel {
  private static nextId = 1;
  readonly id = KernelChannel.nextId++;
  /** Handed out, not answered, by seq; includes messages already failed by the timeout. */
  private readonly held = new Map<number, KernelMessage>();
  private readonly scratch = Buffer.alloc(DM_USER_HEADER_SIZE);
  private scratchFill = 0;
  /** The READ answer whose payload is arriving; `payload` is undefined when its bytes are discarded. */
  private answering: { message: KernelMessage; payload: Buffer | undefined; length: number; fill: number } | undefined;
  /** Shared-memory channel: the region each placed READ's answer is built in, by seq. */
  private readonly placed = new Map<number, Placement>();
  private poisonReason: string | undefined;
  private isClosed = false;
  private noMoreMessages = false;

  constructor(
    private readonly owner: ChannelOwner,
    private readonly connection: MiscConnection,
  ) {}

  /** Slots in use, counting timed-out messages whose answer has not come (the daemon still has them). */
  get load(): number {
    return this.held.size;
  }

  get poisoned(): boolean {
    return this.poisonReason !== undefined;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** May this channel be handed another message? */
  canTake(window: number): boolean {
    return !this.isClosed && !this.poisoned && !this.noMoreMessages && this.held.size < window;
  }

  /** Unsettled messages this channel holds (what its close would fail). */
  liveMessages(): KernelMessage[] {
    return [...this.held.values()].filter((m) => !m.settled);
  }

  hand(message: KernelMessage): void {
    this.held.set(message.seq, message);
    const shared = this.connection.shared;
    if (!shared) {
      const head = encodeHeader(message.header);
      this.connection.send(message.data.length > 0 ? [head, message.data] : [head]);
      return;
    }
    // READs from PLACE_READS_FROM up are placed when the memory has room; the rest go inline,
    // which the daemon serves the same way. Below that the socket's copy costs less than the
    // bookkeeping of a region (measured: random 4 KiB IOPS, see docs/kernel.md).
    const region = message.isRead && message.header.len >= PLACE_READS_FROM ? shared.allocate(message.header.len) : undefined;
    if (region) this.placed.set(message.seq, region);
    const placement = region ?? INLINE;
    const framed = encodeHeader(message.header, Buffer.allocUnsafe(DM_USER_HEADER_SIZE + PLACEMENT_SIZE));
    encodePlacement(placement, framed, DM_USER_HEADER_SIZE);
    this.connection.send(message.data.length > 0 ? [framed, message.data] : [framed]);
  }

  /** The target is gone: the daemon's next read sees ENOTBLK; answers are still taken. */
  endOfMessages(): void {
    this.noMoreMessages = true;
    this.connection.endOfMessages();
  }

  /** Socket transport: bytes arrive cut anywhere; feed them through write() like a write-all loop. */
  receive(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length && !this.poisoned) {
      const result = this.write(chunk.subarray(at));
      if (result < 0) break;
      at += result;
    }
  }

  /** The driver's write(): consumes at most one answer's bytes. */
  write(bytes: Buffer): WriteResult {
    if (this.poisoned) return -Errno.EINVAL;
    if (this.answering) return this.takePayload(bytes);
    if (bytes.length === 0) return this.poison('zero-length write while a header is expected');
    const take = Math.min(DM_USER_HEADER_SIZE - this.scratchFill, bytes.length);
    bytes.copy(this.scratch, this.scratchFill, 0, take);
    this.scratchFill += take;
    if (this.scratchFill < DM_USER_HEADER_SIZE) return take;
    this.scratchFill = 0;
    let seq: number;
    let type: number;
    try {
      ({ seq, type } = decodeHeader(this.scratch));
    } catch (err) {
      return this.poison(`undecodable answer header: ${(err as Error).message}`);
    }
    const message = this.held.get(seq);
    if (!message) return this.poison(`invalid message seq ${seq} (not held by this channel)`);
    const placement = this.placed.get(seq);
    if (placement) this.placed.delete(seq);
    if (type !== DmUserResponse.Success) {
      this.held.delete(seq);
      if (placement) this.connection.shared?.release(placement);
      const reason = type === DmUserResponse.Unsupported ? 'daemon answered unsupported' : `daemon answered error (type ${type})`;
      if (!message.settled) {
        this.owner.logFailure(message, reason);
        message.fail(ioError(`sector ${message.header.sector}: ${reason} for ${this.owner.name} target`));
      }
      this.owner.slotFreed();
      return take;
    }
    if (message.answerPayloadLength === 0) {
      this.held.delete(seq);
      message.succeed(EMPTY);
      this.owner.slotFreed();
      return take;
    }
    if (placement) {
      this.held.delete(seq);
      this.takePlaced(message, placement);
      this.owner.slotFreed();
      return take;
    }
    const length = message.answerPayloadLength;
    // A late answer to a timed-out message is parsed but its bytes go nowhere.
    const payload = message.settled ? undefined : (message.answerInto ?? Buffer.allocUnsafe(length));
    this.answering = { message, payload, length, fill: 0 };
    return take;
  }

  /**
   * The answer's bytes are in the shared memory already (the daemon put them there before sending
   * the header). A message that may take the region itself gets a view of it, lent until the FUSE
   * reply carrying it is written (see lendRegion); any other is copied into its own buffer and the
   * region is free again at once. A timed-out message's bytes go nowhere.
   */
  private takePlaced(message: KernelMessage, placement: Placement): void {
    const shared = this.connection.shared!;
    if (message.settled) {
      shared.release(placement);
      return;
    }
    const view = shared.view(placement);
    if (message.mayAnswerWithRegion) {
      lendRegion(view, () => shared.release(placement));
      message.succeed(view);
      return;
    }
    const into = message.answerInto ?? Buffer.allocUnsafe(placement.length);
    view.copy(into);
    shared.release(placement);
    message.succeed(into);
  }

  private takePayload(bytes: Buffer): WriteResult {
    const answering = this.answering!;
    const take = Math.min(answering.length - answering.fill, bytes.length);
    // Settled mid-answer (io timeout): stop writing into a buffer its IO no longer owns.
    if (answering.payload && answering.message.settled) answering.payload = undefined;
    if (answering.payload) bytes.copy(answering.payload, answering.fill, 0, take);
    answering.fill += take;
    if (answering.fill === answering.length) {
      this.answering = undefined;
      this.held.delete(answering.message.seq);
      if (answering.payload) answering.message.succeed(answering.payload);
      this.owner.slotFreed();
    }
    return take;
  }

  private poison(reason: string): WriteResult {
    this.poisonReason = reason;
    this.owner.logger.warn(`dm-user ${this.owner.name}: channel ${this.id} poisoned: ${reason}`, {
      target: this.owner.name,
      channel: this.id,
      reason,
    });
    // A socket daemon cannot see the sticky EINVAL a write would return; closing is its signal.
    // The close then fails what this channel holds.
    this.connection.destroy();
    return -Errno.EINVAL;
  }

  /**
   * The fd was released. Returns the messages it held unanswered (the target fails or requeues
   * them) and whether the channel had broken the protocol.
   */
  close(): { orphans: KernelMessage[]; poisoned: boolean } {
    if (this.isClosed) return { orphans: [], poisoned: this.poisoned };
    this.isClosed = true;
    if (this.answering && !this.poisoned) {
      const { message, fill, length } = this.answering;
      this.owner.logger.warn(`dm-user ${this.owner.name}: channel ${this.id} closed ${fill} of ${length} bytes into the answer to seq ${message.seq}`, {
        target: this.owner.name,
        channel: this.id,
        seq: message.seq,
        type: describeRequest(message.header.type),
      });
    }
    this.answering = undefined;
    this.placed.clear();
    const orphans = this.liveMessages();
    this.held.clear();
    return { orphans, poisoned: this.poisoned };
  }

  /** Drops the connection (kernel shutdown). The close is reported through the transport as usual. */
  destroy(): void {
    this.connection.destroy();
  }
}

const EMPTY = Buffer.alloc(0);

/** READs of this size and up are answered through a shared channel's memory. */
export const PLACE_READS_FROM = 64 * 1024;
