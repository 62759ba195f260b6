import { promises as fs, readSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import type { DmUserChannel } from '../dmuser/channel';
import type { DmUserHeader } from '../dmuser/codec';
import { DmUserFlag, DmUserRequest, DmUserResponse, SECTOR_SIZE } from '../dmuser/constants';
import { openChannel } from '../dmuser/socket-channel';
import { VabError } from '../util/errors';
import { Logger, nullLogger } from '../util/log';

export interface PassthroughOptions {
  runDir: string;
  /** The target's control name. */
  name: string;
  /** Backing image: reads, writes and discards go straight to it. */
  image: string;
  /** Channels to open (each one an independent connection, like snapuserd's worker threads). */
  channels?: number;
  logger?: Logger;
}

export interface PassthroughDaemon {
  /** Settles when every channel has ended (the target was removed, or the kernel went away). */
  readonly done: Promise<void>;
  /** Closes the channels; what they hold fails in the kernel (or is requeued in supervised mode). */
  stop(): Promise<void>;
}

export const DEFAULT_PASSTHROUGH_CHANNELS = 4;

/** Zero-fill chunk for discards (Node has no fallocate). */
const ZERO_CHUNK = Buffer.alloc(1 << 20);

/**
 * The reference dm-user daemon, like the kernel selftests' example: it serves a target from an
 * image file. Each channel answers its messages one at a time, as a snapuserd read worker does;
 * the channels run side by side. Reads of more than 64 KiB, writes and syncs use async fs, so the event
 * loop stays free while they wait.
 */
export async function startPassthrough(options: PassthroughOptions): Promise<PassthroughDaemon> {
  const count = options.channels ?? DEFAULT_PASSTHROUGH_CHANNELS;
  if (!Number.isInteger(count) || count < 1 || count > 64) {
    throw new VabError('EINVAL_INPUT', `channels must be an integer from 1 to 64, got ${count}`);
  }
  const logger = options.logger ?? nullLogger;
  const image = await fs.open(options.image, 'r+');
  const channels: DmUserChannel[] = [];
  try {
    for (let i = 0; i < count; i++) channels.push(await openChannel(options.runDir, options.name));
  } catch (err) {
    await Promise.all(channels.map((c) => c.close()));
    await image.close();
    throw err;
  }
  logger.info(`passthrough: serving ${options.name} from ${options.image}`, { target: options.name, image: options.image, channels: count });
  const done = Promise.all(channels.map((channel, index) => serveChannel(channel, index, image, options.image, logger))).then(async () => {
    await image.close();
    logger.info(`passthrough: ${options.name} ended`, { target: options.name });
  });
  return {
    done,
    async stop() {
      await Promise.all(channels.map((c) => c.close()));
      await done;
    },
  };
}

async function serveChannel(channel: DmUserChannel, index: number, image: FileHandle, imagePath: string, logger: Logger): Promise<void> {
  // One read buffer per channel, reused: a channel answers one message at a time, and a fresh
  // 1 MiB buffer per read costs more in page faults than the copy from the page cache.
  const scratch = new ScratchBuffer();
  for await (const { header, payload } of channel) {
    let answer: { type: DmUserResponse; data?: Buffer };
    try {
      answer = await perform(image, header, payload, scratch);
    } catch (err) {
      logger.error(`passthrough: ${DmUserRequest[header.type] ?? header.type} at sector ${header.sector} failed: ${(err as Error).message}`, {
        image: imagePath,
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

async function perform(image: FileHandle, header: DmUserHeader, payload: Buffer, scratch: ScratchBuffer): Promise<{ type: DmUserResponse; data?: Buffer }> {
  const offset = header.sector * SECTOR_SIZE;
  switch (header.type) {
    case DmUserRequest.Read:
      return { type: DmUserResponse.Success, data: await readFully(image, offset, scratch.get(header.len)) };
    case DmUserRequest.Write:
      if (header.flags & DmUserFlag.Preflush) await image.datasync();
      if (payload.length > 0) await writeFully(image, offset, payload);
      if (header.flags & DmUserFlag.Fua) await image.datasync();
      return { type: DmUserResponse.Success };
    case DmUserRequest.Flush:
      await image.datasync();
      return { type: DmUserResponse.Success };
    case DmUserRequest.Discard:
    case DmUserRequest.WriteZeroes:
      for (let done = 0; done < header.len; done += ZERO_CHUNK.length) {
        await writeFully(image, offset + done, ZERO_CHUNK.subarray(0, Math.min(ZERO_CHUNK.length, header.len - done)));
      }
      return { type: DmUserResponse.Success };
    default:
      return { type: DmUserResponse.Unsupported };
  }
}

/**
 * Reads up to this size use a synchronous pread. A threadpool read costs two thread wake-ups (to the
 * pool and back), which at 4 KiB were most of the daemon's share of an IO's latency (measured: about
 * +30% random 4 KiB IOPS through the kernel, daemon CPU halved); a small pread from a cached image
 * blocks the loop for microseconds. Larger reads stay asynchronous, so one channel's read overlaps
 * the others' socket transfers, and a slow disk never stalls every channel for long.
 */
const SYNC_READ_MAX = 64 * 1024;

/** Fills `out` from `offset`; past the end of the image reads as zeros, like a sparse tail. */
async function readFully(image: FileHandle, offset: number, out: Buffer): Promise<Buffer> {
  let done = 0;
  const sync = out.length <= SYNC_READ_MAX;
  while (done < out.length) {
    const bytesRead = sync
      ? readSync(image.fd, out, done, out.length - done, offset + done)
      : (await image.read(out, done, out.length - done, offset + done)).bytesRead;
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  out.fill(0, done);
  return out;
}

/** A buffer that grows to the largest request seen; valid until the next `get`. */
class ScratchBuffer {
  private buffer = Buffer.alloc(0);

  get(length: number): Buffer {
    if (this.buffer.length < length) this.buffer = Buffer.allocUnsafe(Math.max(length, 64 * 1024));
    return this.buffer.subarray(0, length);
  }
}

async function writeFully(image: FileHandle, offset: number, data: Buffer): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await image.write(data, done, data.length - done, offset + done);
    done += bytesWritten;
  }
}
