import type { DmUserChannel } from '../dmuser/channel';
import type { DmUserHeader } from '../dmuser/codec';
import { DmUserFlag, DmUserRequest, DmUserResponse, SECTOR_SIZE } from '../dmuser/constants';
import { Logger, nullLogger } from '../util/log';
import { sharedMemoryProblem } from '../dmuser/shared-memory';

/**
 * What a dm-user daemon serves, by 512-byte sector: the passthrough image, a snapshot over base +
 * COW. It knows nothing of channels or wire bytes; `serveTarget` turns messages into these calls.
 * A method that throws fails that one IO with an ERROR answer; the daemon keeps serving.
 */
export interface BlockDevice {
  /** Fills `dst` (whole length) with the bytes from `sector` on. */
  read(sector: number, dst: Buffer): Promise<void>;
  /** Writes `data` at `sector`; `flags` are the request's (PREFLUSH, FUA). */
  write(sector: number, data: Buffer, flags: number): Promise<void>;
  flush(): Promise<void>;
  /** Discards (or writes zeros over) `length` bytes from `sector`. */
  discard(sector: number, length: number): Promise<void>;
  /** How request types the device has no method for are answered (default UNSUPPORTED). */
  readonly otherRequests?: DmUserResponse.Error | DmUserResponse.Unsupported;
}

export interface ServeOptions {
  /** The target's misc name, in every log line. */
  name: string;
  logger?: Logger;
  /** Component prefix for log lines ("passthrough", "snapuserd"). */
  component?: string;
}

export interface ServedTarget {
  /** Settles when every channel has ended (the target was removed, or the kernel went away). */
  readonly done: Promise<void>;
  /** Closes the channels; what they hold fails in the kernel (or is requeued in supervised mode). */
  stop(): Promise<void>;
}

/**
 * Serves a device on its channels: each channel answers its messages one at a time, as a snapuserd
 * read worker does, and the channels run side by side. Every message is answered exactly once.
 */
export function serveTarget(channels: readonly DmUserChannel[], device: BlockDevice, options: ServeOptions): ServedTarget {
  const logger = options.logger ?? nullLogger;
  const component = options.component ?? 'dm-user daemon';
  const done = Promise.all(channels.map((channel, index) => serveChannel(channel, index, device, options.name, component, logger))).then(() => undefined);
  return {
    done,
    async stop() {
      await Promise.all(channels.map((c) => c.close()));
      await done;
    },
  };
}

async function serveChannel(channel: DmUserChannel, index: number, device: BlockDevice, name: string, component: string, logger: Logger): Promise<void> {
  // One read buffer per channel, reused: a channel answers one message at a time, and a fresh
  // 1 MiB buffer per read costs more in page faults than the copy it saves.
  const scratch = new ScratchBuffer();
  for await (const { header, payload } of channel) {
    let answer: { type: DmUserResponse; data?: Buffer };
    try {
      answer = await perform(device, header, payload, channel.answerBuffer?.(header) ?? scratch.get(header.type === DmUserRequest.Read ? header.len : 0));
    } catch (err) {
      logger.error(`${component}: ${name}: ${DmUserRequest[header.type] ?? header.type} at sector ${header.sector} (+${header.len} bytes) failed: ${(err as Error).message}`, {
        misc: name,
        offset: header.sector * SECTOR_SIZE,
        seq: header.seq,
        channel: index,
      });
      answer = { type: DmUserResponse.Error };
    }
    try {
      await channel.respond({ ...header, type: answer.type }, answer.data);
    } catch {
      break; // the channel closed under us; what it held is the kernel's to fail
    }
  }
  await channel.close();
}

/** `readInto`: where a READ's answer is built (the transport's own memory when it has some). */
async function perform(device: BlockDevice, header: DmUserHeader, payload: Buffer, readInto: Buffer): Promise<{ type: DmUserResponse; data?: Buffer }> {
  switch (header.type) {
    case DmUserRequest.Read: {
      const data = readInto;
      await device.read(header.sector, data);
      return { type: DmUserResponse.Success, data };
    }
    case DmUserRequest.Write:
      // Device-mapper sends a flush as an empty write carrying PREFLUSH.
      if (header.len === 0 && header.flags & DmUserFlag.Preflush) await device.flush();
      else await device.write(header.sector, payload, header.flags);
      return { type: DmUserResponse.Success };
    case DmUserRequest.Flush:
      await device.flush();
      return { type: DmUserResponse.Success };
    case DmUserRequest.Discard:
    case DmUserRequest.WriteZeroes:
      await device.discard(header.sector, header.len);
      return { type: DmUserResponse.Success };
    default:
      return { type: device.otherRequests ?? DmUserResponse.Unsupported };
  }
}

/** A buffer that grows to the largest request seen; valid until the next `get`. */
class ScratchBuffer {
  private buffer = Buffer.alloc(0);

  get(length: number): Buffer {
    if (this.buffer.length < length) this.buffer = Buffer.allocUnsafe(Math.max(length, 64 * 1024));
    return this.buffer.subarray(0, length);
  }
}

/** What the channels of one target use, for the log: one transport, or a mix after a fallback. */
export function describeTransports(channels: readonly DmUserChannel[]): string {
  const kinds = [...new Set(channels.map((c) => c.transport ?? 'in-memory'))];
  const note = kinds.includes('plain') && !kinds.includes('shared') && sharedMemoryProblem() ? `; shared memory off: ${sharedMemoryProblem()}` : '';
  return `${kinds.join('+')}${note}`;
}
