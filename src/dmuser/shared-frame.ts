import { VabError } from '../util/errors';
import { DmUserHeader, DmUserMessage, decodeHeader } from './codec';
import { DM_USER_HEADER_SIZE, DmUserRequest } from './constants';

/**
 * Framing of the shared-memory transport (see docs/kernel.md, "Transports"). The dm-user messages
 * are the same as on the plain socket; what differs is where a READ answer's bytes travel: the
 * kernel names a region of the channel's shared memory in each request, and the daemon builds the
 * answer there instead of pushing it through the socket. The kernel then replies to FUSE straight
 * out of that memory: the bytes are copied twice (image to memory, memory to the caller), as on the
 * no-hop path, instead of four times.
 *
 * The handshake: the kernel's hello names the memory; the daemon maps it and sends a ready message;
 * the kernel attaches the channel to its target and echoes the ready message back, so a daemon
 * knows its channel is attached when its open returns. Then kernel → daemon: per request its
 * 40-byte header, a 16-byte placement and, for a WRITE, its payload inline; daemon → kernel:
 * answers exactly as on the plain socket, except that an answer whose request had a placement
 * carries no payload.
 */

/** "vabSHRD" and a version byte, little-endian u64 on the wire: first bytes of a shared channel. */
export const SHARED_HELLO_MAGIC = 0x02_44_52_48_53_62_61_76n;
/** Magic (8), the memory file's descriptor number in the kernel (u32), reserved (u32, zero). */
export const SHARED_HELLO_SIZE = 16;
/** offset u64, length u64. */
export const PLACEMENT_SIZE = 16;
/** "vabREDY" and a version byte: the daemon's first bytes once it has mapped the memory, and the kernel's echo once it has attached the channel. */
export const SHARED_READY_MAGIC = 0x02_59_44_45_52_62_61_76n;
/** Magic (8), reserved (8, zero). */
export const SHARED_READY_SIZE = 16;

export interface SharedHello {
  /**
   * The kernel's descriptor of the channel's sealed memory file. The daemon opens it through
   * /proc/<peer pid>/fd/<n>, the peer being whoever is at the other end of its socket (SO_PEERCRED),
   * so the hello cannot point it at another process's files.
   */
  memoryFd: number;
}

/** Where a request's answer payload goes: `length` 0 means inline on the socket. */
export interface Placement {
  offset: number;
  length: number;
}

export const INLINE: Readonly<Placement> = Object.freeze({ offset: 0, length: 0 });

export interface SharedMessage extends DmUserMessage {
  placement: Placement;
}

export function encodeHello(hello: SharedHello): Buffer {
  if (!Number.isInteger(hello.memoryFd) || hello.memoryFd < 0 || hello.memoryFd > 0x7fffffff) {
    throw new VabError('EINVAL_INPUT', `shared dm-user hello: descriptor ${hello.memoryFd} is not a descriptor number`);
  }
  const out = Buffer.alloc(SHARED_HELLO_SIZE);
  out.writeBigUInt64LE(SHARED_HELLO_MAGIC, 0);
  out.writeUInt32LE(hello.memoryFd, 8);
  return out;
}

export function decodeHello(source: Buffer): SharedHello {
  const magic = source.readBigUInt64LE(0);
  if (magic !== SHARED_HELLO_MAGIC) throw new VabError('EPROTO', `shared dm-user hello: bad magic 0x${magic.toString(16)} at offset 0`);
  const memoryFd = source.readUInt32LE(8);
  if (memoryFd > 0x7fffffff) throw new VabError('EPROTO', `shared dm-user hello: descriptor ${memoryFd} at offset 8 is not a descriptor number`);
  if (source.readUInt32LE(12) !== 0) throw new VabError('EPROTO', 'shared dm-user hello: reserved bytes 12..15 are not zero');
  return { memoryFd };
}

export function encodeReady(): Buffer {
  const out = Buffer.alloc(SHARED_READY_SIZE);
  out.writeBigUInt64LE(SHARED_READY_MAGIC, 0);
  return out;
}

export function decodeReady(source: Buffer): void {
  const magic = source.readBigUInt64LE(0);
  if (magic !== SHARED_READY_MAGIC) throw new VabError('EPROTO', `shared dm-user ready: bad magic 0x${magic.toString(16)} at offset 0`);
  if (source.readBigUInt64LE(8) !== 0n) throw new VabError('EPROTO', 'shared dm-user ready: reserved bytes 8..15 are not zero');
}

export function encodePlacement(placement: Placement, target: Buffer = Buffer.alloc(PLACEMENT_SIZE), offset = 0): Buffer {
  for (const [field, value] of [['offset', placement.offset], ['length', placement.length]] as const) {
    if (!Number.isSafeInteger(value) || value < 0) throw new VabError('EINVAL_INPUT', `placement ${field} must be a non-negative safe integer, got ${value}`);
  }
  target.writeBigUInt64LE(BigInt(placement.offset), offset);
  target.writeBigUInt64LE(BigInt(placement.length), offset + 8);
  return target;
}

export function decodePlacement(source: Buffer, offset = 0): Placement {
  const at = source.readBigUInt64LE(offset);
  const length = source.readBigUInt64LE(offset + 8);
  if (at > BigInt(Number.MAX_SAFE_INTEGER) || length > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new VabError('EPROTO', `placement at offset ${offset}: ${at}+${length} is beyond 2^53`);
  }
  return { offset: Number(at), length: Number(length) };
}

/**
 * Only a READ may be placed, and only over its whole answer: a daemon never writes a region size the
 * kernel did not give it.
 */
function checkPlacement(header: DmUserHeader, placement: Placement): void {
  if (placement.length === 0) return;
  if (header.type !== DmUserRequest.Read || placement.length !== header.len) {
    throw new VabError('EPROTO', `shared dm-user request seq ${header.seq}: placement of ${placement.length} bytes for a ${DmUserRequest[header.type] ?? header.type} of ${header.len}`);
  }
}

const RECORD_SIZE = DM_USER_HEADER_SIZE + PLACEMENT_SIZE;

/**
 * Reassembles the kernel → daemon stream of a shared channel from reads cut anywhere. Throws on
 * anything that cannot be this framing; nothing sane can follow that.
 */
export class SharedRequestDecoder {
  private readonly fixed = Buffer.alloc(Math.max(SHARED_HELLO_SIZE, RECORD_SIZE));
  private fill = 0;
  private want = SHARED_HELLO_SIZE;
  private stage: 'hello' | 'attached' | 'record' | 'payload' = 'hello';
  private pending: { header: DmUserHeader; placement: Placement; payload: Buffer } | undefined;

  constructor(
    private readonly onHello: (hello: SharedHello) => void,
    /** The kernel echoed the daemon's ready: the channel is attached to its target. */
    private readonly onAttached: () => void = () => undefined,
  ) {}

  push(chunk: Buffer): SharedMessage[] {
    const done: SharedMessage[] = [];
    let at = 0;
    while (at < chunk.length) {
      const into = this.stage === 'payload' ? this.pending!.payload : this.fixed;
      const take = Math.min(this.want - this.fill, chunk.length - at);
      chunk.copy(into, this.fill, at, at + take);
      this.fill += take;
      at += take;
      if (this.fill < this.want) break;
      this.fill = 0;
      this.step(done);
    }
    return done;
  }

  private step(done: SharedMessage[]): void {
    switch (this.stage) {
      case 'hello':
        this.onHello(decodeHello(this.fixed));
        this.stage = 'attached';
        this.want = SHARED_READY_SIZE;
        return;
      case 'attached':
        decodeReady(this.fixed);
        this.onAttached();
        this.expectRecord();
        return;
      case 'record': {
        const header = decodeHeader(this.fixed, 0);
        const placement = decodePlacement(this.fixed, DM_USER_HEADER_SIZE);
        checkPlacement(header, placement);
        if (header.type === DmUserRequest.Write && header.len > 0) {
          this.pending = { header, placement, payload: Buffer.allocUnsafe(header.len) };
          this.stage = 'payload';
          this.want = header.len;
          return;
        }
        done.push({ header, placement, payload: EMPTY });
        this.expectRecord();
        return;
      }
      case 'payload':
        done.push(this.pending!);
        this.pending = undefined;
        this.expectRecord();
    }
  }

  private expectRecord(): void {
    this.stage = 'record';
    this.want = RECORD_SIZE;
  }
}

const EMPTY = Buffer.alloc(0);
