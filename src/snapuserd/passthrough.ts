import { promises as fs, readSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import type { DmUserChannel } from '../dmuser/channel';
import { DmUserFlag, SECTOR_SIZE } from '../dmuser/constants';
import { SocketTransport, openChannel } from '../dmuser/socket-channel';
import { VabError } from '../util/errors';
import { nativeModule } from '../util/native';
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
  /** The channels' transport, as the log says it ("shared", "plain", ...). */
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
  logger.info(`passthrough: serving ${options.name} from ${options.image} (transport ${transport})`, { target: options.name, image: options.image, channels: count, transport });
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
 * blocks the loop for microseconds.
 */
const SYNC_READ_MAX = 64 * 1024;

/**
 * Fills `out` from `offset`; past the end of the image reads as zeros, like a sparse tail. A larger
 * read first takes what the page cache already holds, synchronously and without ever waiting for
 * the disk (the native module's RWF_NOWAIT read): the threadpool's two wake-ups were a fifth of a
 * cached 1 MiB read through the shared transport (measured: sequential through the daemon 0.74x of
 * no-hop with them, about 1.0x without, see docs/kernel.md). What is not cached, and everything
 * when the module is missing, is read on the threadpool, so a slow disk never stalls the loop.
 */
async function readFully(image: FileHandle, offset: number, out: Buffer): Promise<void> {
  let done = 0;
  const sync = out.length <= SYNC_READ_MAX;
  if (!sync) done = readCachedPrefix(image.fd, out, offset);
  while (done < out.length) {
    const bytesRead = sync
      ? readSync(image.fd, out, done, out.length - done, offset + done)
      : (await image.read(out, done, out.length - done, offset + done)).bytesRead;
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  out.fill(0, done);
}

/** How much of `out` the page cache could fill at once (0 without the native module). */
function readCachedPrefix(fd: number, out: Buffer, offset: number): number {
  const native = nativeModule();
  if (!native) return 0;
  let done = 0;
  while (done < out.length) {
    const got = native.readCached(fd, out, done, out.length - done, offset + done);
    if (got <= 0) break;
    done += got;
  }
  return done;
}

async function writeFully(image: FileHandle, offset: number, data: Buffer): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await image.write(data, done, data.length - done, offset + done);
    done += bytesWritten;
  }
}
