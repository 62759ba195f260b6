import { VabError } from '../util/errors';
import { DM_USER_HEADER_SIZE } from './constants';

/**
 * One dm-user message header. All fields are u64 on the wire; they are kept as JS numbers because
 * every value vab produces (sequence numbers, sectors, lengths) stays far below 2^53, and a value
 * that does not is refused at decode time rather than silently rounded.
 */
export interface DmUserHeader {
  seq: number;
  /** Request type (kernel → daemon) or response code (daemon → kernel). */
  type: number;
  flags: number;
  sector: number;
  len: number;
}

export interface DmUserMessage {
  header: DmUserHeader;
  payload: Buffer;
}

const TWO_POW_32 = 0x1_0000_0000;
/** Largest high word that keeps a u64 within Number.MAX_SAFE_INTEGER. */
const MAX_SAFE_HIGH_WORD = 0x1f_ffff;

export function encodeHeader(header: DmUserHeader, target: Buffer = Buffer.allocUnsafe(DM_USER_HEADER_SIZE), offset = 0): Buffer {
  writeU64(target, offset, header.seq, 'seq');
  writeU64(target, offset + 8, header.type, 'type');
  writeU64(target, offset + 16, header.flags, 'flags');
  writeU64(target, offset + 24, header.sector, 'sector');
  writeU64(target, offset + 32, header.len, 'len');
  return target;
}

export function decodeHeader(source: Buffer, offset = 0): DmUserHeader {
  if (source.length - offset < DM_USER_HEADER_SIZE) {
    throw new VabError('ETRUNCATED', `dm-user header needs ${DM_USER_HEADER_SIZE} bytes, got ${source.length - offset}`);
  }
  return {
    seq: readU64(source, offset, 'seq'),
    type: readU64(source, offset + 8, 'type'),
    flags: readU64(source, offset + 16, 'flags'),
    sector: readU64(source, offset + 24, 'sector'),
    len: readU64(source, offset + 32, 'len'),
  };
}

/** Header followed by its payload, as one buffer ready for a single write. */
export function encodeMessage(header: DmUserHeader, payload?: Uint8Array): Buffer {
  const size = DM_USER_HEADER_SIZE + (payload?.length ?? 0);
  const out = Buffer.allocUnsafe(size);
  encodeHeader(header, out, 0);
  if (payload) out.set(payload, DM_USER_HEADER_SIZE);
  return out;
}

function writeU64(target: Buffer, offset: number, value: number, field: string): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new VabError('EINVAL_INPUT', `dm-user ${field} must be a non-negative safe integer, got ${value}`);
  }
  target.writeUInt32LE(value % TWO_POW_32, offset);
  target.writeUInt32LE(Math.floor(value / TWO_POW_32), offset + 4);
}

function readU64(source: Buffer, offset: number, field: string): number {
  const low = source.readUInt32LE(offset);
  const high = source.readUInt32LE(offset + 4);
  if (high > MAX_SAFE_HIGH_WORD) {
    throw new VabError('EPROTO', `dm-user ${field} 0x${source.readBigUInt64LE(offset).toString(16)} is beyond 2^53`);
  }
  return high * TWO_POW_32 + low;
}

/**
 * Says how many payload bytes follow a header. The two directions differ: a request carries data
 * only for WRITE (its `len`), a response carries data only for a successful READ, and its length
 * comes from the request it answers, which only the receiver knows. Throwing rejects the header.
 */
export type PayloadLength = (header: DmUserHeader) => number;

/**
 * Reassembles dm-user messages from a byte stream cut at arbitrary points (socket reads).
 * Payloads are gathered into one buffer per message; a message's bytes are never shared with the
 * next one, so callers may keep payloads after later pushes.
 */
export class DmUserDecoder {
  private readonly headerBytes = Buffer.alloc(DM_USER_HEADER_SIZE);
  private headerFill = 0;
  private header: DmUserHeader | undefined;
  private payload: Buffer | undefined;
  private payloadFill = 0;

  constructor(private readonly payloadLength: PayloadLength) {}

  /** Feeds bytes; returns the messages they completed, in order. */
  push(chunk: Buffer): DmUserMessage[] {
    const done: DmUserMessage[] = [];
    let at = 0;
    while (at < chunk.length) {
      if (this.header === undefined) {
        const take = Math.min(DM_USER_HEADER_SIZE - this.headerFill, chunk.length - at);
        chunk.copy(this.headerBytes, this.headerFill, at, at + take);
        this.headerFill += take;
        at += take;
        if (this.headerFill < DM_USER_HEADER_SIZE) break;
        this.headerFill = 0;
        const header = decodeHeader(this.headerBytes);
        const length = this.payloadLength(header);
        if (length === 0) {
          done.push({ header, payload: EMPTY });
          continue;
        }
        this.header = header;
        this.payload = Buffer.allocUnsafe(length);
        this.payloadFill = 0;
        continue;
      }
      const payload = this.payload as Buffer;
      const take = Math.min(payload.length - this.payloadFill, chunk.length - at);
      chunk.copy(payload, this.payloadFill, at, at + take);
      this.payloadFill += take;
      at += take;
      if (this.payloadFill === payload.length) {
        done.push({ header: this.header, payload });
        this.header = undefined;
        this.payload = undefined;
      }
    }
    return done;
  }

  /** True when no partial message is buffered (a clean place for the stream to end). */
  get idle(): boolean {
    return this.header === undefined && this.headerFill === 0;
  }
}

const EMPTY = Buffer.alloc(0);
