import { promises as fs } from 'node:fs';
import path from 'node:path';
import { DmUserFlag, DmUserRequest, SECTOR_SIZE } from '../dmuser/constants';
import { MiscEndpoint, listenMiscEndpoint, miscEndpointPath } from '../dmuser/socket-endpoint';
import { Errno } from '../fuse/protocol';
import type { BlockFile, BlockFileProvider, FileRequestContext } from '../fuse/types';
import { FuseErrnoError } from '../fuse/types';
import { VabError } from '../util/errors';
import { Logger, nullLogger } from '../util/log';
import { targetNameProblem } from '../util/names';
import { BufferPool } from './buffer-pool';
import { moveLease, returnRegion } from './region-lease';
import { Clock, monotonicClock } from './deadline';
import { KernelParams, checkParam, resolveParams } from './params';
import { LinearMapping } from './linear';
import { KernelMessage } from './message';
import { IoRequest, Target, TargetInfo } from './target';

export interface KernelOptions {
  /** Holds `dm-user/<name>` endpoints. */
  runDir: string;
  params?: Partial<KernelParams>;
  logger?: Logger;
  /** The deadlines' clock (a test's ManualClock); the monotonic clock by default. */
  clock?: Clock;
}

/** What a block file maps to: a dm-user target and its misc endpoint, or a file (dm-linear). */
type Mapping = { kind: 'dm-user'; misc: string; target: Target; endpoint: MiscEndpoint } | { kind: 'linear'; linear: LinearMapping };

interface Entry {
  file: BlockFile;
  mapping: Mapping;
}

/** `vab dmctl list`: a target with what its block file maps to. */
export type MappedTargetInfo = TargetInfo & { kind: 'dm-user' | 'linear'; misc?: string; file?: string };

/** DM's flush: an empty WRITE carrying PREFLUSH|SYNC. */
const FLUSH_FLAGS = DmUserFlag.Preflush | DmUserFlag.Sync;

/**
 * The emulated dm-user driver: its targets and their misc endpoints. It is also the block-file
 * provider behind the FUSE mount: each target is one file, and each IO on it becomes one message.
 */
export class Kernel implements BlockFileProvider {
  readonly params: KernelParams;
  readonly runDir: string;
  private readonly logger: Logger;
  private readonly byName = new Map<string, Entry>();
  private readonly byId = new Map<number, Entry>();
  /** Names and misc names being created or reloaded right now. */
  private readonly reserved = new Set<string>();
  /** Removed targets whose channels may still answer what they hold (shut down with the kernel). */
  private retired: Target[] = [];
  private nextFileId = 2; // 1 is the FUSE root
  private readonly readBuffers = new BufferPool();
  private stopped = false;
  private readonly clock: Clock;

  constructor(options: KernelOptions) {
    this.runDir = options.runDir;
    this.params = resolveParams(options.params);
    this.logger = options.logger ?? nullLogger;
    this.clock = options.clock ?? monotonicClock;
  }

  /**
   * Creates block file `name`: a dm-user target whose misc endpoint is `dm-user/<name>`, or with
   * `linear`, a straight mapping of that file (size: the file's, unless given).
   */
  async createTarget(name: string, sizeBytes: number | undefined, linear?: string): Promise<MappedTargetInfo> {
    if (this.stopped) throw new VabError('ESTATE', 'the kernel is shutting down');
    // Target names become file names and socket names.
    checkName('target', name);
    const size = sizeBytes ?? (linear !== undefined ? await LinearMapping.sizeOf(linear) : undefined);
    if (size === undefined || !Number.isSafeInteger(size) || size <= 0 || size % SECTOR_SIZE !== 0) {
      throw new VabError('EINVAL_INPUT', `target size must be a positive multiple of ${SECTOR_SIZE} bytes, got ${size}`);
    }
    if (this.byName.has(name) || this.reserved.has(name)) throw new VabError('EEXIST', `target "${name}" already exists`);
    if (linear === undefined) this.checkMiscFree(name);
    this.reserved.add(name);
    try {
      const mapping = linear === undefined ? await this.openDmUser(name, size) : { kind: 'linear' as const, linear: await LinearMapping.open(linear, size) };
      const entry: Entry = { file: { id: this.nextFileId++, name, size, writable: true }, mapping };
      this.byName.set(name, entry);
      this.byId.set(entry.file.id, entry);
      this.logger.info(`dm-user: created target ${name}`, { target: name, sectors: size / SECTOR_SIZE, ...(linear === undefined ? { endpoint: miscEndpointPath(this.runDir, name) } : { linear }) });
      return this.describe(entry);
    } finally {
      this.reserved.delete(name);
    }
  }

  /**
   * Like a dm table reload with a new target under the same block device (Android's handoff of
   * snapuserd, spec §3.4): block file `name` stays, with its open files; new IO goes to the new
   * mapping at once. Reloading onto a dm-user target creates its misc endpoint `dm-user/<misc>`,
   * whose first daemon gets daemon_timeout_ms to attach. What the old target had queued, no channel
   * having taken it, moves to the new one; what its channels hold is still answered by the old
   * daemon (or fails if it dies); then the old endpoint goes and the old channels see the end of
   * their messages (Android's ENOTBLK). The reload returns once what the old daemon held is
   * settled.
   */
  async reloadTarget(name: string, to: { misc?: string; linear?: string }): Promise<MappedTargetInfo> {
    if (this.stopped) throw new VabError('ESTATE', 'the kernel is shutting down');
    if ((to.misc === undefined) === (to.linear === undefined)) throw new VabError('EINVAL_INPUT', 'reload needs exactly one of a new misc name or a linear file');
    const entry = this.byName.get(name);
    if (!entry || this.reserved.has(name)) throw new VabError('ENOTFOUND', `no target named "${name}"`);
    if (to.misc !== undefined) {
      checkName('misc', to.misc);
      this.checkMiscFree(to.misc);
    }
    this.reserved.add(name);
    if (to.misc !== undefined) this.reserved.add(to.misc);
    try {
      const next: Mapping = to.misc !== undefined ? await this.openDmUser(to.misc, entry.file.size) : { kind: 'linear', linear: await LinearMapping.open(to.linear!, entry.file.size) };
      const previous = entry.mapping;
      entry.mapping = next;
      if (previous.kind === 'dm-user') {
        const moved = previous.target.takeQueued();
        if (next.kind === 'dm-user') for (const message of moved) next.target.adopt(message);
        else for (const message of moved) this.adoptLinear(next.linear, message);
        this.retire(previous.target);
        await previous.endpoint.close();
        // Like DM's suspend: the reload returns once the old daemon has answered what it held (each
        // bounded by io_timeout_ms), so stopping that daemon next loses nothing.
        await previous.target.heldSettled();
      } else {
        await previous.linear.close();
      }
      this.logger.info(`dm-user: reloaded target ${name}`, { target: name, ...(next.kind === 'dm-user' ? { misc: next.misc } : { linear: next.linear.file }) });
      return this.describe(entry);
    } finally {
      this.reserved.delete(name);
      if (to.misc !== undefined) this.reserved.delete(to.misc);
    }
  }

  private async openDmUser(misc: string, size: number): Promise<Mapping> {
    const target = new Target(misc, size / SECTOR_SIZE, this.params, this.logger, this.clock);
    const endpointPath = miscEndpointPath(this.runDir, misc);
    await fs.mkdir(path.dirname(endpointPath), { recursive: true });
    const endpoint = await listenMiscEndpoint(endpointPath, (connection) => target.attach(connection));
    return { kind: 'dm-user', misc, target, endpoint };
  }

  /** A misc name is one endpoint: no two live targets may share it, nor a target name another's misc. */
  private checkMiscFree(misc: string): void {
    if (this.reserved.has(misc)) throw new VabError('EEXIST', `misc name "${misc}" is being set up`);
    for (const entry of this.byName.values()) {
      if (entry.mapping.kind === 'dm-user' && entry.mapping.misc === misc) throw new VabError('EEXIST', `misc name "${misc}" is in use by target "${entry.file.name}"`);
    }
  }

  /** A message queued on a dm-user target that became linear is served from the file. */
  private adoptLinear(linear: LinearMapping, message: KernelMessage): void {
    const h = message.header;
    const offset = h.sector * SECTOR_SIZE;
    const io = message.isRead ? this.linearRead(linear, offset, h.len, message.answerInto) : h.len === 0 ? linear.flush().then(() => EMPTY) : linear.write(offset, message.data).then(() => EMPTY);
    io.then((data) => message.succeed(data), (err: Error) => message.fail(err));
  }

  private async linearRead(linear: LinearMapping, offset: number, length: number, into?: Buffer): Promise<Buffer> {
    const buffer = into ?? Buffer.alloc(length);
    await linear.read(offset, buffer);
    return buffer;
  }

  /** A target whose channels may still answer what they hold stays until they close. */
  private retire(target: Target): void {
    target.remove();
    this.retired = this.retired.filter((t) => t.channelCount > 0);
    if (target.channelCount > 0) this.retired.push(target);
  }

  /** Like `dmsetup remove`: queued IO fails, the endpoint goes, held IO may still be answered. */
  async removeTarget(name: string): Promise<void> {
    const entry = this.byName.get(name);
    if (!entry) throw new VabError('ENOTFOUND', `no target named "${name}"`);
    this.byName.delete(name);
    this.byId.delete(entry.file.id);
    if (entry.mapping.kind === 'dm-user') {
      this.retire(entry.mapping.target);
      await entry.mapping.endpoint.close();
    } else {
      await entry.mapping.linear.close();
    }
    this.logger.info(`dm-user: removed target ${name}`, { target: name });
  }

  targets(): MappedTargetInfo[] {
    return [...this.byName.values()].map((e) => this.describe(e));
  }

  /** The dm-user target behind block file `name` (none for a linear one). */
  target(name: string): Target | undefined {
    const mapping = this.byName.get(name)?.mapping;
    return mapping?.kind === 'dm-user' ? mapping.target : undefined;
  }

  private describe(entry: Entry): MappedTargetInfo {
    const m = entry.mapping;
    if (m.kind === 'dm-user') return { ...m.target.info(), name: entry.file.name, kind: 'dm-user', misc: m.misc };
    return { name: entry.file.name, sectors: entry.file.size / SECTOR_SIZE, channels: 0, queued: 0, held: 0, had_daemon: false, removed: false, kind: 'linear', file: m.linear.file };
  }

  setParam(name: string, value: number): void {
    const key = checkParam(name, value);
    this.params[key] = value;
    this.logger.info(`dm-user: ${key} = ${value}`, { param: key, value });
  }

  /** Fails everything queued or held and closes every endpoint. */
  async shutdown(): Promise<void> {
    this.stopped = true;
    const entries = [...this.byName.values()];
    this.byName.clear();
    this.byId.clear();
    for (const entry of entries) if (entry.mapping.kind === 'dm-user') entry.mapping.target.shutdown();
    for (const target of this.retired) target.shutdown();
    this.retired = [];
    await Promise.all(entries.map((e) => (e.mapping.kind === 'dm-user' ? e.mapping.endpoint.close() : e.mapping.linear.close())));
  }

  // BlockFileProvider: each IO on a block file is one message on its target.

  list(): readonly BlockFile[] {
    return [...this.byName.values()].map((e) => e.file);
  }

  lookup(name: string): BlockFile | undefined {
    return this.byName.get(name)?.file;
  }

  async read(file: BlockFile, offset: number, length: number, _ctx?: FileRequestContext): Promise<Buffer> {
    const mapping = this.live(file);
    if (length === 0) return Buffer.alloc(0);
    checkRange(file, offset, length);
    if (mapping.kind === 'linear') {
      const data = this.readBuffers.take(length);
      await mapping.linear.read(offset, data);
      return data;
    }
    const target = mapping.target;
    // Reads are widened to whole sectors: harmless, and tools probing a few bytes keep working.
    const start = Math.floor(offset / SECTOR_SIZE) * SECTOR_SIZE;
    const end = Math.ceil((offset + length) / SECTOR_SIZE) * SECTOR_SIZE;
    // Every piece's answer lands in its own slice of one buffer: no reassembly copy. The buffer
    // comes back through recycle() once the FUSE reply has been written; a failed read's never does.
    const data = this.readBuffers.take(end - start);
    const answer = await this.readInto(target, start, data);
    // Answered in a shared channel's memory: that region goes up to the FUSE reply as it is, and
    // the IO's own buffer goes straight back to the pool.
    if (answer !== data) this.readBuffers.give(data);
    if (start === offset && end - start === length) return answer;
    const narrower = answer.subarray(offset - start, offset - start + length);
    moveLease(answer, narrower);
    return narrower;
  }

  /**
   * A READ of `data.length` bytes at `start`: `data` filled, or, for a READ of one message, a lent
   * region of a shared channel's memory holding the answer (see region-lease.ts).
   */
  private async readInto(target: Target, start: number, data: Buffer): Promise<Buffer> {
    if (data.length <= this.params.max_io_bytes) {
      return target.submit({ type: DmUserRequest.Read, flags: 0, sector: start / SECTOR_SIZE, len: data.length, answerInto: data, mayAnswerWithRegion: true });
    }
    await this.submitPieces(target, DmUserRequest.Read, start, data.length, (at, len) => ({ answerInto: data.subarray(at, at + len) }));
    return data;
  }

  recycle(data: Buffer): void {
    if (!returnRegion(data)) this.readBuffers.give(data);
  }

  async write(file: BlockFile, offset: number, data: Buffer, _ctx?: FileRequestContext): Promise<void> {
    const mapping = this.live(file);
    if (data.length === 0) return;
    checkRange(file, offset, data.length);
    checkAligned(file, 'write', offset, data.length);
    if (mapping.kind === 'linear') {
      await mapping.linear.write(offset, data);
      return;
    }
    const target = mapping.target;
    // A copy: the caller may reuse its buffer once we settle, and a timed-out message can still
    // be sitting in the socket's output queue.
    const copy = Buffer.from(data);
    await this.submitPieces(target, DmUserRequest.Write, offset, copy.length, (at, len) => ({ data: copy.subarray(at, at + len) }));
  }

  /**
   * One READ or WRITE as messages of at most max_io_bytes (the block layer splitting a bio at the
   * queue's limit). Each piece is a message of its own, with its own seq, channel, timers and
   * supervised requeue; the IO succeeds when every piece has, and fails with the first failure,
   * once (Promise.all keeps listening to the other pieces, so their failures are not unhandled).
   */
  private async submitPieces(target: Target, type: DmUserRequest, start: number, total: number, piece: (at: number, len: number) => Partial<IoRequest>): Promise<void> {
    const max = this.params.max_io_bytes;
    if (total <= max) {
      await target.submit({ type, flags: 0, sector: start / SECTOR_SIZE, len: total, ...piece(0, total) });
      return;
    }
    const pieces: Promise<Buffer>[] = [];
    for (let at = 0; at < total; at += max) {
      const len = Math.min(max, total - at);
      pieces.push(target.submit({ type, flags: 0, sector: (start + at) / SECTOR_SIZE, len, ...piece(at, len) }));
    }
    await Promise.all(pieces);
  }

  async flush(file: BlockFile, _ctx?: FileRequestContext): Promise<void> {
    const mapping = this.live(file);
    if (mapping.kind === 'linear') await mapping.linear.flush();
    else await mapping.target.submit({ type: DmUserRequest.Write, flags: FLUSH_FLAGS, sector: 0, len: 0 });
  }

  async discard(file: BlockFile, offset: number, length: number, _ctx?: FileRequestContext): Promise<void> {
    const mapping = this.live(file);
    if (length === 0) return;
    checkRange(file, offset, length);
    checkAligned(file, 'discard', offset, length);
    if (mapping.kind === 'linear') await mapping.linear.discard(offset, length);
    else await mapping.target.submit({ type: DmUserRequest.Discard, flags: 0, sector: offset / SECTOR_SIZE, len: length });
  }

  private live(file: BlockFile): Mapping {
    const entry = this.byId.get(file.id);
    if (!entry) throw new FuseErrnoError(Errno.EIO, `target "${file.name}" was removed`);
    return entry.mapping;
  }
}

function checkName(what: string, name: string): void {
  const problem = targetNameProblem(name);
  if (problem) throw new VabError('EINVAL_INPUT', `invalid ${what} name ${JSON.stringify(name)}: ${problem}`);
}

const EMPTY = Buffer.alloc(0);

function checkRange(file: BlockFile, offset: number, length: number): void {
  if (offset < 0 || length < 0 || offset + length > file.size) {
    throw new FuseErrnoError(Errno.EINVAL, `${file.name}: ${offset}+${length} is outside the ${file.size}-byte target`);
  }
}

/** Writes and discards must cover whole sectors, as on a block device opened O_DIRECT. */
function checkAligned(file: BlockFile, what: string, offset: number, length: number): void {
  if (offset % SECTOR_SIZE !== 0 || length % SECTOR_SIZE !== 0) {
    throw new FuseErrnoError(Errno.EINVAL, `${file.name}: unaligned ${what} ${offset}+${length} (512-byte sectors)`);
  }
}
