import type { MiscConnection, MiscConnectionEvents } from '../dmuser/socket-endpoint';
import type { Logger } from '../util/log';
import { KernelChannel } from './channel';
import { Clock, monotonicClock } from './deadline';
import { KernelMessage, describeRequest, ioError } from './message';
import type { KernelParams } from './params';

export interface TargetInfo {
  name: string;
  sectors: number;
  channels: number;
  queued: number;
  held: number;
  /** A daemon was attached at some point. */
  had_daemon: boolean;
  removed: boolean;
}

export interface IoRequest {
  type: number;
  flags: number;
  sector: number;
  len: number;
  data?: Buffer;
  /** For a READ: the `len` bytes its answer is copied into (see KernelMessage.answerInto). */
  answerInto?: Buffer;
  /** For a READ: its answer may be a lent region of shared memory (see KernelMessage). */
  mayAnswerWithRegion?: boolean;
}

/**
 * One dm-user target: per-target sequence numbers, the FIFO of messages no channel has taken, the
 * open channels, and the delayed-failure rules of the seed patch (see docs/kernel.md):
 * - no channel and never had one: a message waits daemon_timeout_ms, then fails with EIO;
 * - no channel after a daemon left: it fails at once, or waits for the rest of restart_grace_ms;
 * - a channel attaching takes queued messages and cancels their timers;
 * - whatever the state, io_timeout_ms after submission an unanswered message fails.
 */
export class Target {
  private nextSeq = 0;
  /** Messages no channel has taken, in seq order (a Map keeps insertion order). */
  private queue = new Map<number, KernelMessage>();
  private readonly channels: KernelChannel[] = [];
  private hadDaemon = false;
  /** When the last daemon's grace runs out (monotonic ms); before any daemon left, unused. */
  private graceEnds = 0;
  private removed = false;
  private rotation = 0;

  constructor(
    readonly name: string,
    readonly sectors: number,
    private readonly params: Readonly<KernelParams>,
    readonly logger: Logger,
    private readonly clock: Clock = monotonicClock,
  ) {}

  get isRemoved(): boolean {
    return this.removed;
  }

  get channelCount(): number {
    return this.channels.length;
  }

  info(): TargetInfo {
    let held = 0;
    for (const channel of this.channels) held += channel.liveMessages().length;
    return {
      name: this.name,
      sectors: this.sectors,
      channels: this.channels.length,
      queued: this.queue.size,
      held,
      had_daemon: this.hadDaemon,
      removed: this.removed,
    };
  }

  /** Maps one IO: resolves with the READ data (empty for other types) or rejects with EIO. */
  submit(request: IoRequest): Promise<Buffer> {
    const data = request.data ?? EMPTY;
    const message = new KernelMessage({ seq: this.nextSeq++, type: request.type, flags: request.flags, sector: request.sector, len: request.len }, data, request.answerInto, request.mayAnswerWithRegion);
    if (this.removed) {
      this.fail(message, 'target removed');
      return message.promise;
    }
    const bound = this.params.io_timeout_ms;
    message.deadline = this.clock.fireAt(this.clock.now() + bound, () => this.expire(message, bound));
    this.queue.set(message.seq, message);
    if (this.channels.length > 0) this.pump();
    else this.armNoDaemonTimer(message);
    return message.promise;
  }

  /** A new open of the misc endpoint. */
  attach(connection: MiscConnection): MiscConnectionEvents {
    const channel = new KernelChannel(this, connection);
    if (this.removed) {
      // The endpoint is gone; a racing open gets an immediate ENOTBLK.
      channel.endOfMessages();
    }
    this.channels.push(channel);
    this.hadDaemon = true;
    for (const message of this.queue.values()) message.cancelNoDaemonTimer();
    this.logger.info(`dm-user ${this.name}: channel ${channel.id} opened`, { target: this.name, channel: channel.id, channels: this.channels.length });
    this.pump();
    return {
      data: (chunk) => channel.receive(chunk),
      closed: () => this.channelClosed(channel),
    };
  }

  /**
   * DM removed the target: what is queued fails now; channels see end of messages but may still
   * answer what they hold (and what they hold fails if they close first).
   */
  remove(): void {
    if (this.removed) return;
    this.removed = true;
    const queued = [...this.queue.values()];
    this.queue.clear();
    for (const message of queued) this.fail(message, 'target removed');
    for (const channel of this.channels) channel.endOfMessages();
  }

  /**
   * A table reload takes the messages no channel has taken yet, to go on on the new target; their
   * no-daemon timers stop here (the new target arms its own). Their io_timeout bound stays.
   */
  takeQueued(): KernelMessage[] {
    const queued = [...this.queue.values()];
    this.queue.clear();
    for (const message of queued) message.cancelNoDaemonTimer();
    return queued;
  }

  /** Settles once every message a channel holds has been answered, failed or timed out. */
  async heldSettled(): Promise<void> {
    const held = this.channels.flatMap((channel) => channel.liveMessages());
    await Promise.allSettled(held.map((m) => m.promise));
  }

  /** A message of the previous table continues here as a new message; the old one settles with it. */
  adopt(old: KernelMessage): void {
    const h = old.header;
    this.submit({ type: h.type, flags: h.flags, sector: h.sector, len: h.len, data: old.data, answerInto: old.answerInto, mayAnswerWithRegion: old.mayAnswerWithRegion }).then(
      (data) => old.succeed(data),
      (err: Error) => old.fail(err),
    );
  }

  /** Kernel shutdown: remove, then drop every channel, failing what they hold. */
  shutdown(): void {
    this.remove();
    for (const channel of [...this.channels]) {
      channel.destroy();
      this.channelClosed(channel);
    }
  }

  logFailure(message: KernelMessage, reason: string): void {
    this.logger.error(`I/O error: sector ${message.header.sector}: ${reason} for ${this.name} target`, {
      target: this.name,
      sector: message.header.sector,
      seq: message.seq,
      type: describeRequest(message.header.type),
      reason,
    });
  }

  slotFreed(): void {
    if (this.queue.size > 0) this.pump();
  }

  private fail(message: KernelMessage, reason: string): void {
    if (message.settled) return;
    this.logFailure(message, reason);
    message.fail(ioError(`sector ${message.header.sector}: ${reason} for ${this.name} target`));
  }

  /** Hands queued messages, FIFO, to the least loaded channels with a free slot. */
  private pump(): void {
    if (this.removed) return;
    const window = this.params.channel_window;
    for (const message of this.queue.values()) {
      const channel = this.pickChannel(window);
      if (!channel) return;
      this.queue.delete(message.seq);
      message.cancelNoDaemonTimer();
      channel.hand(message);
    }
  }

  private pickChannel(window: number): KernelChannel | undefined {
    let best: KernelChannel | undefined;
    const count = this.channels.length;
    for (let i = 0; i < count; i++) {
      const channel = this.channels[(this.rotation + i) % count];
      if (channel.canTake(window) && (!best || channel.load < best.load)) best = channel;
    }
    if (best) this.rotation = (this.channels.indexOf(best) + 1) % count;
    return best;
  }

  private channelClosed(channel: KernelChannel): void {
    const index = this.channels.indexOf(channel);
    if (index < 0) return;
    this.channels.splice(index, 1);
    const { orphans, poisoned } = channel.close();
    // Reads are safe to send again; a write might then be applied twice, so it fails as on Android.
    const requeue = this.params.restart_grace_ms > 0 && !poisoned && !this.removed;
    const again: KernelMessage[] = [];
    for (const message of orphans) {
      if (requeue && message.isRead) again.push(message);
      else this.fail(message, poisoned ? 'channel broke the protocol' : 'channel closed with the IO unanswered');
    }
    this.logger.info(`dm-user ${this.name}: channel ${channel.id} closed`, {
      target: this.name,
      channel: channel.id,
      channels: this.channels.length,
      failed: orphans.length - again.length,
      requeued: again.length,
    });
    if (again.length > 0) {
      const merged = [...again, ...this.queue.values()].sort((a, b) => a.seq - b.seq);
      this.queue = new Map(merged.map((m) => [m.seq, m]));
    }
    if (this.channels.length > 0) {
      this.pump();
      return;
    }
    // The daemon is gone. Re-arm EVERY queued message (the seed skipped those whose timer had
    // already fired while a channel was open, leaving them queued forever).
    this.graceEnds = this.clock.now() + this.params.restart_grace_ms;
    for (const message of this.queue.values()) this.armNoDaemonTimer(message);
  }

  private armNoDaemonTimer(message: KernelMessage): void {
    message.cancelNoDaemonTimer();
    const at = this.hadDaemon ? this.graceEnds : this.clock.now() + this.params.daemon_timeout_ms;
    message.noDaemonTimer = this.clock.fireAt(at, () => {
      message.noDaemonTimer = undefined;
      if (this.channels.length > 0 || !this.queue.has(message.seq)) return;
      this.queue.delete(message.seq);
      this.fail(message, 'no user-space daemon');
    });
  }

  private expire(message: KernelMessage, bound: number): void {
    message.deadline = undefined;
    // Queued: drop it. Held: the channel keeps it, so a late answer is still parsed and discarded.
    this.queue.delete(message.seq);
    this.fail(message, `no answer within io_timeout_ms=${bound}`);
  }
}

const EMPTY = Buffer.alloc(0);
