import { promises as fs, readSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import type { DmUserChannel } from '../dmuser/channel';
import { DmUserFlag, SECTOR_SIZE } from '../dmuser/constants';
import { SocketTransport, openChannel } from '../dmuser/socket-channel';
import { VabError } from '../util/errors';
import { Logger, nullLogger } from '../util/log';
import { BlockDevice, describeTransports, serveTarget } from './block-device';

export interface PassthroughOptions {
  runDir: string;
  /** The target's control name. */
  name: string;
  /** Backing image: reads, writes and discards go straight to it. */
  image: string;
  /** Channels to open (each one an independent connection, like snapuserd's worker threads). */
  channels?: number;
  /** dm-user socket transport (default `auto`: shared memory when both sides can). */
  transport?: SocketTransport;
  logger?: Logger;
}

export interface PassthroughDaemon {
  /** The channels' transport, as the log says it ("transport shared", ...). */
  readonly transport: string;
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
 * image file, as one BlockDevice behind serveTarget. Reads of more than 64 KiB, writes and syncs
 * use async fs, so the event loop stays free while they wait.
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
    for (let i = 0; i < count; i++) channels.push(await openChannel(options.runDir, options.name, options.transport));
  } catch (err) {
    await Promise.all(channels.map((c) => c.close()));
    await image.close();
    throw err;
  }
  const transport = describeTransports(channels);
  logger.info(`passthrough: serving ${options.name} from ${options.image} (${transport})`, { target: options.name, image: options.image, channels: count, transport });
  const served = serveTarget(channels, new ImageDevice(image), { name: options.name, logger, component: 'passthrough' });
  const done = served.done.then(async () => {
    await image.close();
    logger.info(`passthrough: ${options.name} ended`, { target: options.name });
  });
  return {
    transport,
    done,
    async stop() {
      await Promise.all(channels.map((c) => c.close()));
      await done;
    },
  };
}

/** An image file as a block device: reads, writes and discards go straight to it. */
export class ImageDevice implements BlockDevice {
  constructor(private readonly image: FileHandle) {}

  read(sector: number, dst: Buffer): Promise<void> {
    return readFully(this.image, sector * SECTOR_SIZE, dst);
  }

  async write(sector: number, data: Buffer, flags: number): Promise<void> {
    if (flags & DmUserFlag.Preflush) await this.image.datasync();
    if (data.length > 0) await writeFully(this.image, sector * SECTOR_SIZE, data);
    if (flags & DmUserFlag.Fua) await this.image.datasync();
  }

  flush(): Promise<void> {
    return this.image.datasync();
  }

  async discard(sector: number, length: number): Promise<void> {
    const offset = sector * SECTOR_SIZE;
    for (let done = 0; done < length; done += ZERO_CHUNK.length) {
      await writeFully(this.image, offset + done, ZERO_CHUNK.subarray(0, Math.min(ZERO_CHUNK.length, length - done)));
    }
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
async function readFully(image: FileHandle, offset: number, out: Buffer): Promise<void> {
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
}

async function writeFully(image: FileHandle, offset: number, data: Buffer): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await image.write(data, done, data.length - done, offset + done);
    done += bytesWritten;
  }
}
