import type { DmUserHeader, DmUserMessage } from './codec';

/**
 * The daemon's side of one dm-user channel: one `open()` of the target's misc device. Messages come
 * in FIFO order; every message must be answered on the channel that delivered it, exactly once.
 *
 * Two transports can stand behind this interface:
 * - the socket transport (`<run>/dm-user/<name>`, served by `vab kernel`), built here;
 * - Android's character device `/dev/dm-user/<name>`, not built: its read() blocks and has no poll,
 *   so it would need blocking reads on a worker thread; its writes map onto `respond` directly.
 * Daemon code that only uses this interface runs unchanged on either.
 */
export interface DmUserChannel {
  /** The target's control name. */
  readonly name: string;
  /**
   * The next request, or undefined once the target is gone (the char device's ENOTBLK) or the
   * channel is closed. A WRITE carries its `len` payload bytes; every other request has none.
   */
  next(): Promise<DmUserMessage | undefined>;
  /**
   * Answers the request with `header.seq`. A successful READ answer carries exactly the request's
   * `len` bytes; every other answer carries none. A malformed answer is refused here, before any
   * byte is sent, because the kernel would poison the whole channel over it.
   * Resolves once the bytes are handed to the transport.
   */
  respond(header: DmUserHeader, payload?: Buffer): Promise<void>;
  /**
   * Where the answer to a READ can be built so that `respond` sends it without copying it (the
   * shared-memory transport's region for it), or undefined. Valid until that answer is sent.
   */
  answerBuffer?(header: DmUserHeader): Buffer | undefined;
  /** How answers travel: `shared` (READ answers in shared memory) or `plain` (every byte on the socket). */
  readonly transport?: 'shared' | 'plain';
  /** Requests delivered and not yet answered. */
  readonly outstanding: number;
  /** Closes the channel; requests it holds unanswered fail with EIO in the kernel. */
  close(): Promise<void>;
  /** Settles when the channel is closed, for whatever reason. */
  readonly closed: Promise<void>;
  [Symbol.asyncIterator](): AsyncIterator<DmUserMessage>;
}

/** Opens channels by target name; one opener per transport. */
export type ChannelOpener = (name: string) => Promise<DmUserChannel>;
