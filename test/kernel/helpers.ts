import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { DmUserChannel } from '../../src/dmuser/channel';
import { DmUserRequest, DmUserResponse, SECTOR_SIZE } from '../../src/dmuser/constants';
import { SocketTransport, openChannel } from '../../src/dmuser/socket-channel';
import type { BlockFile, FileRequestContext } from '../../src/fuse/types';
import { Kernel } from '../../src/kernel/kernel';
import type { KernelParams } from '../../src/kernel/params';

export const ctx: FileRequestContext = { pid: 1, uid: 0, gid: 0 };

export async function tempDir(prefix: string): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), `vab-${prefix}-`));
}

/** A kernel with its own run directory; `stop` shuts it down and removes the directory. */
export async function startKernel(params: Partial<KernelParams> = {}): Promise<{ kernel: Kernel; runDir: string; stop(): Promise<void> }> {
  const runDir = await tempDir('kernel');
  const kernel = new Kernel({ runDir, params });
  return {
    kernel,
    runDir,
    async stop() {
      await kernel.shutdown();
      await fs.rm(runDir, { recursive: true, force: true });
    },
  };
}

export function fileOf(kernel: Kernel, name: string): BlockFile {
  const file = kernel.lookup(name);
  if (!file) throw new Error(`no block file ${name}`);
  return file;
}

/** What a promise ended with, without throwing: the errno of a rejection, or the value. */
export async function outcome<T>(promise: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; errno: number | undefined; message: string }> {
  try {
    return { ok: true, value: await promise };
  } catch (err) {
    const errno = (err as { errno?: unknown }).errno;
    return { ok: false, errno: typeof errno === 'number' ? errno : undefined, message: (err as Error).message };
  }
}

/** Settles within `ms`, or reports "pending" (to prove a promise is still waiting). */
export async function settledWithin<T>(promise: Promise<T>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const pending = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  const result = await Promise.race([promise.then(() => true as const, () => true as const), pending]);
  clearTimeout(timer);
  return result;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls until `check` holds (for state that changes on socket events). */
export async function waitFor(check: () => boolean, what: string, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/**
 * A daemon serving a target from memory on one channel, one message at a time, like a snapuserd
 * worker thread. Returns when the channel ends.
 */
export async function serveFromMemory(channel: DmUserChannel, store: Buffer): Promise<void> {
  for await (const { header, payload } of channel) {
    const at = header.sector * SECTOR_SIZE;
    try {
      if (header.type === DmUserRequest.Read) {
        await channel.respond({ ...header, type: DmUserResponse.Success }, Buffer.from(store.subarray(at, at + header.len)));
      } else if (header.type === DmUserRequest.Write) {
        payload.copy(store, at);
        await channel.respond({ ...header, type: DmUserResponse.Success });
      } else if (header.type === DmUserRequest.Discard) {
        store.fill(0, at, at + header.len);
        await channel.respond({ ...header, type: DmUserResponse.Success });
      } else {
        await channel.respond({ ...header, type: DmUserResponse.Unsupported });
      }
    } catch {
      return; // the channel went away under us
    }
  }
}

export async function openChannels(runDir: string, name: string, count: number, transport: SocketTransport = 'auto'): Promise<DmUserChannel[]> {
  const channels: DmUserChannel[] = [];
  for (let i = 0; i < count; i++) channels.push(await openChannel(runDir, name, transport));
  return channels;
}

export function patterned(size: number, seed = 1): Buffer {
  const out = Buffer.alloc(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}
