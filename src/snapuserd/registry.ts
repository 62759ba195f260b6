import { promises as fs } from 'node:fs';
import path from 'node:path';
import { openFile, RandomAccessFile } from '../cow/file';
import { CowReader } from '../cow/reader';
import { SnapshotReader } from '../cow/snapshot-reader';
import type { ChannelOpener, DmUserChannel } from '../dmuser/channel';
import { SECTOR_SIZE } from '../dmuser/constants';
import { SocketTransport, socketChannelOpener } from '../dmuser/socket-channel';
import { VabError, errnoCode, isVabError } from '../util/errors';
import type { Logger } from '../util/log';
import { targetNameProblem } from '../util/names';
import { ServedTarget, describeTransports, serveTarget } from './block-device';
import { SnapshotDevice } from './snapshot-device';
import type { MergeStatusString } from './control/protocol';
import { HandlerMerge, MergeFileOpener } from './merge/handler-merge';
import { MergeView } from './merge/view';
import { scratchPathFor, stagedWindowToReplay } from '../cow/merge';

export interface RegistryOptions {
  runDir: string;
  /** Channels each handler opens (Android's worker threads). */
  channels: number;
  logger: Logger;
  /** How channels are opened; the socket transport on `<run>/dm-user/<misc>` unless told. */
  opener?: ChannelOpener;
  /** Which socket transport the default opener asks for (default `auto`). */
  transport?: SocketTransport;
  /** How the merge opens the files it writes (a test injects faults here). */
  mergeFiles?: MergeFileOpener;
}

interface Handler {
  misc: string;
  cowPath: string;
  device: SnapshotDevice;
  served?: ServedTarget;
  merge: HandlerMerge;
}

/** Android's kMaxMergeThreads: merges running at once; the others wait their turn. */
export const MAX_CONCURRENT_MERGES = 2;

/**
 * The daemon's handlers by misc name, like Android's SnapshotHandlerManager: `init` parses a COW and
 * opens its files (AddHandler), `start` opens the channels and serves them (StartHandler), `delete`
 * stops serving and closes everything. A failure in one handler never touches the others.
 */
export class HandlerRegistry {
  private readonly handlers = new Map<string, Handler>();
  /** Names whose init or start is under way, so two racing commands cannot both take one. */
  private readonly busy = new Set<string>();
  private readonly opener: ChannelOpener;
  private idleWaiters: Array<() => void> = [];
  private readonly mergeQueue: Handler[] = [];
  private activeMerges = 0;
  /** Handlers that finished their merge and have since gone (their target was switched away). */
  private mergedAndGone = 0;

  constructor(private readonly opts: RegistryOptions) {
    if (!Number.isInteger(opts.channels) || opts.channels < 1 || opts.channels > 64) {
      throw new VabError('EINVAL_INPUT', `channels must be an integer from 1 to 64, got ${opts.channels}`);
    }
    this.opener = opts.opener ?? socketChannelOpener(opts.runDir, opts.transport);
  }

  /** Parses the COW over its files; returns the device's size in 512-byte sectors (the base's). */
  async init(misc: string, cowPath: string, backingPath: string, basePath: string): Promise<number> {
    const problem = targetNameProblem(misc);
    if (problem) throw new VabError('EINVAL_INPUT', `misc name: ${problem}`);
    if (this.handlers.has(misc) || this.busy.has(misc)) throw new VabError('EEXIST', `a handler for ${misc} already exists`);
    this.busy.add(misc);
    try {
      const baseBytes = await checkFile('base', basePath);
      await checkFile('COW', cowPath);
      await checkFile('backing', backingPath);
      if (baseBytes < SECTOR_SIZE) throw new VabError('EINVAL_INPUT', `base ${basePath} is ${baseBytes} bytes: too small for a device`);
      const sectors = Math.floor(baseBytes / SECTOR_SIZE);
      const snapshot = await openSnapshot(cowPath, backingPath, basePath, baseBytes);
      const device = new SnapshotDevice(snapshot, sectors);
      const handler: Handler = { misc, cowPath, device, merge: new HandlerMerge(misc, snapshot.cow, cowPath, basePath, this.opts.logger, this.opts.mergeFiles) };
      try {
        await this.restoreMergeView(handler);
      } catch (err) {
        await snapshot.close();
        throw err;
      }
      this.handlers.set(misc, handler);
      this.opts.logger.info(`snapuserd: ${misc}: handler ready, ${snapshot.cow.index.order.length} ops, ${sectors} sectors`, { misc, cow: cowPath, base: basePath, backing: backingPath, sectors });
      return sectors;
    } catch (err) {
      this.opts.logger.error(`snapuserd: ${misc}: init failed: ${(err as Error).message}`, { misc, cow: cowPath, code: isVabError(err) ? err.code : undefined });
      throw err;
    } finally {
      this.busy.delete(misc);
    }
  }

  /** Opens the handler's channels on its dm-user endpoint and serves them. */
  async start(misc: string): Promise<void> {
    const handler = this.handlers.get(misc);
    if (!handler) throw new VabError('ENOTFOUND', `no handler for ${misc} (init it first)`);
    if (handler.served || this.busy.has(misc)) throw new VabError('ESTATE', `handler ${misc} is already started`);
    this.busy.add(misc);
    const channels: DmUserChannel[] = [];
    try {
      for (let i = 0; i < this.opts.channels; i++) channels.push(await this.opener(misc));
    } catch (err) {
      await Promise.all(channels.map((c) => c.close()));
      this.opts.logger.error(`snapuserd: ${misc}: start failed: ${(err as Error).message}`, { misc });
      throw err;
    } finally {
      this.busy.delete(misc);
    }
    const served = serveTarget(channels, handler.device, { name: misc, logger: this.opts.logger, component: 'snapuserd' });
    handler.served = served;
    const transport = describeTransports(channels);
    this.opts.logger.info(`snapuserd: ${misc}: serving on ${channels.length} channels (transport ${transport})`, { misc, channels: channels.length, transport });
    void served.done.then(() => this.channelsEnded(handler));
  }

  /**
   * Every channel of a started handler ended: its target was removed or reloaded onto another
   * misc name. Like Android's handler thread on its way out, the handler removes itself.
   */
  private async channelsEnded(handler: Handler): Promise<void> {
    this.opts.logger.info(`snapuserd: ${handler.misc}: channels ended`, { misc: handler.misc });
    if (this.handlers.get(handler.misc) !== handler) return;
    this.handlers.delete(handler.misc);
    await handler.merge.stop();
    if (handler.merge.isComplete) this.mergedAndGone++;
    await handler.device.snapshot.close().catch((err: Error) => this.opts.logger.error(`snapuserd: ${handler.misc}: close: ${err.message}`, { misc: handler.misc }));
    this.opts.logger.info(`snapuserd: ${handler.misc}: handler gone with its target`, { misc: handler.misc });
    this.wakeIdle();
  }

  /** Resolves once no handler is left (after `detach`, the daemon exits then). */
  whenIdle(): Promise<void> {
    if (this.handlers.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private wakeIdle(): void {
    if (this.handlers.size > 0) return;
    for (const wake of this.idleWaiters.splice(0)) wake();
  }

  /** Stops serving (what the channels hold fails in the kernel) and closes the handler's files. */
  async delete(misc: string): Promise<void> {
    const handler = this.handlers.get(misc);
    if (!handler) throw new VabError('ENOTFOUND', `no handler for ${misc}`);
    this.handlers.delete(misc);
    try {
      await handler.merge.stop();
      if (handler.merge.isComplete && handler.served) this.mergedAndGone++;
      await handler.served?.stop();
      await handler.device.snapshot.close();
    } finally {
      this.wakeIdle();
    }
    this.opts.logger.info(`snapuserd: ${misc}: deleted`, { misc });
  }

  /**
   * A merge interrupted by a crash or a restart: reads must see what it did (merged ops from the
   * base, a staged window from scratch) before it is initiated again.
   */
  private async restoreMergeView(handler: Handler): Promise<void> {
    const cow = handler.device.snapshot.cow;
    let scratch: RandomAccessFile | undefined;
    if (cow.header.bufferSize === 0) scratch = await openFile(scratchPathFor(handler.cowPath), 'r').catch(() => undefined);
    try {
      let order: Uint32Array | undefined;
      const mergeOrder = (): Uint32Array => (order ??= cow.mergeOrder().ops);
      const staged = await stagedWindowToReplay(cow, mergeOrder, scratch);
      if (cow.header.numMergeOps === 0 && !staged) return;
      this.viewOf(handler, mergeOrder()).restore(cow.header.numMergeOps, staged);
      this.opts.logger.info(`snapuserd: ${handler.misc}: an interrupted merge left ${cow.header.numMergeOps} ops merged${staged ? ` and ${staged.count} staged` : ''}`, { misc: handler.misc });
    } finally {
      await scratch?.close();
    }
  }

  private viewOf(handler: Handler, order?: Uint32Array): MergeView {
    if (!handler.merge.view) {
      const cow = handler.device.snapshot.cow;
      const view = new MergeView(order ?? cow.mergeOrder().ops, cow.ops.count, cow.blockSize);
      handler.merge.view = view;
      handler.device.mergeView = view;
    }
    return handler.merge.view;
  }

  /** initiate_merge: queued for one of the merge slots; the handler must be serving. */
  async initiateMerge(misc: string): Promise<void> {
    const handler = this.handlers.get(misc);
    if (!handler) throw new VabError('ENOTFOUND', `no handler for ${misc}`);
    if (!handler.served) throw new VabError('ESTATE', `handler ${misc} is not attached to its dm-user target (start it first)`);
    if (handler.merge.isRunning || handler.merge.isQueued) return;
    this.viewOf(handler);
    handler.merge.queue();
    this.mergeQueue.push(handler);
    this.pumpMerges();
  }

  private pumpMerges(): void {
    while (this.activeMerges < MAX_CONCURRENT_MERGES && this.mergeQueue.length > 0) {
      const handler = this.mergeQueue.shift()!;
      if (this.handlers.get(handler.misc) !== handler || !handler.merge.isQueued) continue;
      this.activeMerges++;
      void handler.merge.start().finally(() => {
        this.activeMerges--;
        this.pumpMerges();
      });
    }
  }

  /** Android's GetMergePercentage: running handlers' percents, and 100 for each merged one that has gone. */
  mergePercent(): number {
    let sum = 0;
    let live = 0;
    for (const handler of this.handlers.values()) {
      if (!handler.served) continue;
      sum += handler.merge.percent;
      live++;
    }
    const total = live + this.mergedAndGone;
    return total === 0 ? 0 : (this.mergedAndGone * 100 + sum) / total;
  }

  mergeStatus(misc: string): MergeStatusString | undefined {
    return this.handlers.get(misc)?.merge.status();
  }

  /** `detach`: every merge stops at its next safe point (Android's TerminateMergeThreads); reads go on. */
  async stopMerges(): Promise<void> {
    await Promise.all([...this.handlers.values()].map((h) => h.merge.stop()));
  }

  pauseMerge(): void {
    for (const handler of this.handlers.values()) handler.merge.pause();
  }

  resumeMerge(): void {
    for (const handler of this.handlers.values()) handler.merge.resume();
  }

  has(misc: string): boolean {
    return this.handlers.has(misc);
  }

  isStarted(misc: string): boolean {
    return this.handlers.get(misc)?.served !== undefined;
  }

  names(): string[] {
    return [...this.handlers.keys()];
  }

  /** The handler's device, for callers that serve or inspect it directly. */
  device(misc: string): SnapshotDevice | undefined {
    return this.handlers.get(misc)?.device;
  }

  async stopAll(): Promise<void> {
    const results = await Promise.allSettled(this.names().map((misc) => this.delete(misc)));
    for (const r of results) if (r.status === 'rejected') this.opts.logger.error(`snapuserd: stop: ${(r.reason as Error).message}`);
  }
}

async function checkFile(role: string, file: string): Promise<number> {
  if (!path.isAbsolute(file)) throw new VabError('EINVAL_INPUT', `${role} path ${file} is not absolute`);
  try {
    const stat = await fs.stat(file);
    if (!stat.isFile() && !stat.isBlockDevice()) throw new VabError('EINVAL_INPUT', `${role} path ${file} is not a file or block device`);
    return stat.size;
  } catch (err) {
    if (isVabError(err)) throw err;
    const code = errnoCode(err);
    throw new VabError(code === 'ENOENT' ? 'ENOTFOUND' : 'EIO', `${role} ${file}: ${(err as Error).message}`, { file, cause: err });
  }
}

/** Parses the COW once and opens base and backing over it; closes what it opened on failure. */
async function openSnapshot(cowPath: string, backingPath: string, basePath: string, baseBytes: number): Promise<SnapshotReader> {
  const cow = await CowReader.open(cowPath);
  let base: RandomAccessFile | undefined;
  let source: RandomAccessFile | undefined;
  try {
    base = await openFile(basePath, 'r');
    source = backingPath === basePath ? base : await openFile(backingPath, 'r');
    return await SnapshotReader.over(cow, base, Math.ceil(baseBytes / cow.blockSize), true, source);
  } catch (err) {
    if (source !== base) await source?.close();
    await base?.close();
    await cow.close();
    throw err;
  }
}

