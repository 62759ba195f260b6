import { promises as fs } from 'node:fs';
import path from 'node:path';
import { createCow } from '../../../src/cow/create';
import type { RandomAccessFile } from '../../../src/cow/file';
import { DmUserRequest } from '../../../src/dmuser/constants';
import { memoryChannelOpener } from '../../../src/dmuser/testing/memory-channel';
import { resolveParams } from '../../../src/kernel/params';
import { Target } from '../../../src/kernel/target';
import { openMergeFile, MergeFileOpener } from '../../../src/snapuserd/merge/handler-merge';
import { HandlerRegistry } from '../../../src/snapuserd/registry';
import { nullLogger } from '../../../src/util/log';
import { textLike } from '../../cow/helpers';

export const BS = 4096;

/**
 * OLD → NEW with what makes a merge hard: a chain of shifted blocks (each copy reads the block the
 * next one overwrites), a swap (a cycle), xor edits, zeros, fresh data, and enough blocks for
 * several read-ahead windows when `blocks` is large.
 */
export async function mergeCase(dir: string, blocks: number, options: { scratchSpace?: boolean } = {}): Promise<{ base: string; cow: string; oldImage: Buffer; newImage: Buffer }> {
  const oldImage = Buffer.concat(Array.from({ length: blocks }, (_, i) => textLike(BS, i + 1)));
  const newImage = Buffer.from(oldImage);
  const block = (img: Buffer, i: number) => img.subarray(i * BS, (i + 1) * BS);
  const chain = Math.floor(blocks * 0.6);
  for (let i = 0; i < chain; i++) block(oldImage, i + 1).copy(block(newImage, i));
  block(oldImage, chain + 2).copy(block(newImage, chain + 3));
  block(oldImage, chain + 3).copy(block(newImage, chain + 2));
  for (let i = chain + 5; i < chain + 8; i++) block(newImage, i).write('an edit', 300);
  newImage.fill(0, (chain + 9) * BS, (chain + 12) * BS);
  textLike(4 * BS, 99).copy(newImage, (chain + 13) * BS);
  const base = path.join(dir, 'base.img');
  const target = path.join(dir, 'new.img');
  const cow = path.join(dir, 'system.cow');
  await fs.writeFile(base, oldImage);
  await fs.writeFile(target, newImage);
  await createCow(base, target, cow, { compression: 'lz4', compressionFactor: 8192, xor: true, scratchSpace: options.scratchSpace });
  return { base, cow, oldImage, newImage };
}

/** Counts every write and fsync the merge makes; throws at number `failAt` (the process dies there). */
export class FaultPlan {
  count = 0;
  failAt = Infinity;
  /** Delay per write, to keep a merge running while reads happen. */
  delayMs = 0;
  error: () => Error = () => new Error('injected failure');

  opener(): MergeFileOpener {
    return async (file, role) => new FaultyFile(await openMergeFile(file, role), this);
  }

  async step(): Promise<void> {
    if (++this.count >= this.failAt) throw this.error();
    if (this.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.delayMs));
  }
}

class FaultyFile implements RandomAccessFile {
  constructor(
    private readonly inner: RandomAccessFile,
    private readonly plan: FaultPlan,
  ) {}
  get path(): string {
    return this.inner.path;
  }
  read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    return this.inner.read(buffer, offset, length, position);
  }
  async write(buffer: Uint8Array, offset: number, length: number, position: number): Promise<void> {
    await this.plan.step();
    await this.inner.write(buffer, offset, length, position);
  }
  async writev(buffers: readonly Uint8Array[], position: number): Promise<void> {
    await this.plan.step();
    await this.inner.writev(buffers, position);
  }
  async sync(): Promise<void> {
    await this.plan.step();
    await this.inner.sync();
  }
  truncate(length: number): Promise<void> {
    return this.inner.truncate(length);
  }
  size(): Promise<number> {
    return this.inner.size();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

/** A daemon's registry serving `misc` over in-memory channels to a real kernel Target. */
export async function serveForMerge(dir: string, files: { base: string; cow: string }, plan?: FaultPlan) {
  const targets = new Map<string, Target>();
  const registry = new HandlerRegistry({ runDir: dir, channels: 3, logger: nullLogger, opener: memoryChannelOpener((n) => targets.get(n)), mergeFiles: plan?.opener() });
  const sectors = await registry.init('system', files.cow, files.base, files.base);
  const target = new Target('system', sectors, resolveParams({ max_io_bytes: 4 << 20 }), nullLogger);
  targets.set('system', target);
  await registry.start('system');
  const read = (sector: number, len: number): Promise<Buffer> => target.submit({ type: DmUserRequest.Read, flags: 0, sector, len });
  return { registry, target, read, sectors };
}

/** Waits until the handler's status is `wanted` (or one of them). */
export async function waitForStatus(registry: HandlerRegistry, misc: string, wanted: string | string[], timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  const ok = (s: string | undefined): boolean => (Array.isArray(wanted) ? wanted.includes(s ?? '') : s === wanted);
  while (!ok(registry.mergeStatus(misc))) {
    if (Date.now() > until) throw new Error(`${misc} stayed ${registry.mergeStatus(misc)}, never ${String(wanted)}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
