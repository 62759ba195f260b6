import type { DmUserHeader } from '../dmuser/codec';
import { DmUserRequest } from '../dmuser/constants';
import { Errno } from '../fuse/protocol';
import { FuseErrnoError } from '../fuse/types';
import type { Deadline } from './deadline';

export function ioError(reason: string): FuseErrnoError {
  return new FuseErrnoError(Errno.EIO, `I/O error: ${reason}`);
}

/**
 * One bio's worth of IO on its way through a target: queued, then held by a channel, then settled
 * exactly once (answered, failed, or timed out). A held message may outlive its settlement: when
 * it times out, the channel keeps it so a late answer is still parsed, and then dropped.
 */
export class KernelMessage {
  readonly header: Readonly<DmUserHeader>;
  /** WRITE payload; empty otherwise. */
  readonly data: Buffer;
  /**
   * Where a READ answer's payload is copied (exactly `len` bytes), typically one piece of the
   * buffer of a larger IO; without it the channel allocates one. Bytes arriving for a message that
   * has already settled (timed out) are never copied here: the IO's owner may have moved on.
   */
  readonly answerInto: Buffer | undefined;
  /**
   * On a shared-memory channel the answer may come back as a view of the channel's memory instead
   * of in `answerInto` (a lent region: see region-lease.ts). Only an IO that replies with the answer
   * as it is, in one piece, says yes; it must hand the view up and give its own buffer back.
   */
  readonly mayAnswerWithRegion: boolean;
  readonly promise: Promise<Buffer>;
  settled = false;
  /** The no-daemon timer (the seed patch's per-message delayed work). */
  noDaemonTimer: Deadline | undefined;
  /** The io_timeout_ms bound from submission. */
  deadline: Deadline | undefined;
  private resolveWith!: (data: Buffer) => void;
  private rejectWith!: (err: Error) => void;

  constructor(header: DmUserHeader, data: Buffer, answerInto?: Buffer, mayAnswerWithRegion = false) {
    this.header = header;
    this.data = data;
    this.answerInto = answerInto;
    this.mayAnswerWithRegion = mayAnswerWithRegion;
    this.promise = new Promise<Buffer>((resolve, reject) => {
      this.resolveWith = resolve;
      this.rejectWith = reject;
    });
  }

  get seq(): number {
    return this.header.seq;
  }

  get isRead(): boolean {
    return this.header.type === DmUserRequest.Read;
  }

  /** Bytes a successful answer must carry after its header. */
  get answerPayloadLength(): number {
    return this.isRead ? this.header.len : 0;
  }

  cancelNoDaemonTimer(): void {
    this.noDaemonTimer?.cancel();
    this.noDaemonTimer = undefined;
  }

  succeed(data: Buffer): void {
    if (this.settle()) this.resolveWith(data);
  }

  fail(err: Error): void {
    if (this.settle()) this.rejectWith(err);
  }

  private settle(): boolean {
    if (this.settled) return false;
    this.settled = true;
    this.cancelNoDaemonTimer();
    this.deadline?.cancel();
    this.deadline = undefined;
    return true;
  }
}

export function describeRequest(type: number): string {
  return DmUserRequest[type] ?? `type ${type}`;
}
