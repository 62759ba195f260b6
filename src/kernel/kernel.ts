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
import { KernelParams, checkParam, resolveParams } from './params';
import { IoRequest, Target, TargetInfo } from './target';

export interface KernelOptions {
  /** Holds `dm-user/<name>` endpoints. */
  runDir: string;
  params?: Partial<KernelParams>;
  logger?: Logger;
}

interface Entry {
  file: BlockFile;
  target: Target;
  endpoint: MiscEndpoint;
}

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
  private readonly reserved = new Set<string>();
  /** Removed targets whose channels may still answer what they hold (shut down with the kernel). */
  private retired: Target[] = [];
  private nextFileId = 2; // 1 is the FUSE root
  private readonly readBuffers = new BufferPool();
  private stopped = false;

  constructor(options: KernelOptions) {
    this.runDir = options.runDir;
    this.params = resolveParams(options.params);
    this.logger = options.logger ?? nullLogger;
  }

  async createTarget(name: string, sizeBytes: number): Promise<TargetInfo> {
    if (this.stopped) throw new VabError('ESTATE', 'the kernel is shutting down');
    // Target names become file names and socket names.
    const problem = targetNameProblem(name);
    if (problem) throw new VabError('EINVAL_INPUT', `invalid target name ${JSON.stringify(name)}: ${problem}`);
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0 || sizeBytes % SECTOR_SIZE !== 0) {
      throw new VabError('EINVAL_INPUT', `target size must be a positive multiple of ${SECTOR_SIZE} bytes, got ${sizeBytes}`);
    }
    if (this.byName.has(name) || this.reserved.has(name)) throw new VabError('EEXIST', `target "${name}" already exists`);
    this.reserved.add(name);
    try {
      const target = new Target(name, sizeBytes / SECTOR_SIZE, this.params, this.logger);
      const endpointPath = miscEndpointPath(this.runDir, name);
      await fs.mkdir(path.dirname(endpointPath), { recursive: true });
      const endpoint = await listenMiscEndpoint(endpointPath, (connection) => target.attach(connection));
      const entry: Entry = { file: { id: this.nextFileId++, name, size: sizeBytes, writable: true }, target, endpoint };
      this.byName.set(name, entry);
      this.byId.set(entry.file.id, entry);
      this.logger.info(`dm-user: created target ${name}`, { target: name, sectors: target.sectors, endpoint: endpointPath });
      return target.info();
    } finally {
      this.reserved.delete(name);
    }
  }

  /** Like `dmsetup remove`: queued IO fails, the endpoint goes, held IO may still be answered. */
  async removeTarget(name: string): Promise<void> {
    const entry = this.byName.get(name);
    if (!entry) throw new VabError('ENOTFOUND', `no target named "${name}"`);
    this.byName.delete(name);
    this.byId.delete(entry.file.id);
    entry.target.remove();
    this.retired = this.retired.filter((t) => t.channelCount > 0);
    if (entry.target.channelCount > 0) this.retired.push(entry.target);
    await entry.endpoint.close();
    this.logger.info(`dm-user: removed target ${name}`, { target: name });
  }

  targets(): TargetInfo[] {
    return [...this.byName.values()].map((e) => e.target.info());
  }

  target(name: string): Target | undefined {
    return this.byName.get(name)?.target;
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
    for (const entry of entries) entry.target.shutdown();
    for (const target of this.retired) target.shutdown();
    this.retired = [];
    await Promise.all(entries.map((e) => e.endpoint.close()));
  }

  // BlockFileProvider: each IO on a block file is one message on its target.

  list(): readonly BlockFile[] {
    return [...this.byName.values()].map((e) => e.file);
  }

  lookup(name: string): BlockFile | undefined {
    return this.byName.get(name)?.file;
  }

  async read(file: BlockFile, offset: number, length: number, _ctx?: FileRequestContext): Promise<Buffer> {
    const target = this.live(file);
    if (length === 0) return Buffer.alloc(0);
    checkRange(file, offset, length);
    // Reads are widened to whole sectors: harmless, and tools probing a few bytes keep working.
    const start = Math.floor(offset / SECTOR_SIZE) * SECTOR_SIZE;
    const end = Math.ceil((offset + length) / SECTOR_SIZE) * SECTOR_SIZE;
    // Every piece's answer lands in its own slice of one buffer: no reassembly copy. The buffer
    // comes back through recycle() once the FUSE reply has been written; a failed read's never does.
    const data = this.readBuffers.take(end - start);
    await this.submitPieces(target, DmUserRequest.Read, start, data.length, (at, len) => ({ answerInto: data.subarray(at, at + len) }));
    return start === offset && end - start === length ? data : data.subarray(offset - start, offset - start + length);
  }

  recycle(data: Buffer): void {
    this.readBuffers.give(data);
  }

  async write(file: BlockFile, offset: number, data: Buffer, _ctx?: FileRequestContext): Promise<void> {
    const target = this.live(file);
    if (data.length === 0) return;
    checkRange(file, offset, data.length);
    checkAligned(file, 'write', offset, data.length);
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
    await this.live(file).submit({ type: DmUserRequest.Write, flags: FLUSH_FLAGS, sector: 0, len: 0 });
  }

  async discard(file: BlockFile, offset: number, length: number, _ctx?: FileRequestContext): Promise<void> {
    const target = this.live(file);
    if (length === 0) return;
    checkRange(file, offset, length);
    checkAligned(file, 'discard', offset, length);
    await target.submit({ type: DmUserRequest.Discard, flags: 0, sector: offset / SECTOR_SIZE, len: length });
  }

  private live(file: BlockFile): Target {
    const entry = this.byId.get(file.id);
    if (!entry) throw new FuseErrnoError(Errno.EIO, `target "${file.name}" was removed`);
    return entry.target;
  }
}

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
