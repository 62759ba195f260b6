/**
 * Decoders that write into a buffer of the size the output may have and stop as soon as the data
 * would produce more, so memory is bounded by what the manifest says the op produces, never by
 * what the compressed data claims (as update_engine's extent writers do: they fail when output
 * passes the destination).
 *
 * These functions also run on the decode threads, which receive their source text
 * (codec-pool.ts): each must be self-contained, using only its arguments and globals (Buffer),
 * and throw plain Errors; the caller turns them into VabErrors.
 */

/** The few calls made on lzma-native's native stream (its JS Transform buffers unboundedly). */
export interface LzmaNativeStream {
  streamDecoder(options: { memlimit?: number }): void;
  code(chunk: Uint8Array | null, async: boolean): void;
  resetUnderlying(): void;
  bufferHandler: (buf: Buffer | null | undefined, processedChunks: unknown, err: Error | null | undefined) => void;
}
/** How every decoder here starts the message of output passing the limit. */
export const OVERFLOW = 'decompresses to more than';

/** "xz data decompresses to more than 4096 bytes", or what the decoder said was wrong. */
export function decodeFailure(kind: string, err: Error): string {
  return err.message.startsWith('decompresses to more than') ? `${kind} data ${err.message}` : `${kind} data does not decompress: ${err.message}`;
}

export interface LzmaNativeModule {
  Stream: new () => LzmaNativeStream;
}
export interface ZstdBinding {
  DCtx: new () => { decompress(dst: Uint8Array, src: Uint8Array): number };
  getFrameContentSize(frame: Uint8Array): number | null;
}
export interface Bzip2Module {
  decompress(data: Uint8Array, room: number): Uint8Array;
}

/**
 * xz: the input goes to liblzma in small pieces, because lzma-native hands back everything one
 * piece produces at once. LZMA2 turns a byte into at most a few tens of KiB, so a 512-byte piece
 * adds at most a few MiB past the limit before the decoder is stopped. The dictionary is capped at
 * 64 MiB (plus liblzma's own state), the largest update_engine's xz decoder accepts
 * (kXzMaxDictSize); its pages are touched only as output is written.
 */
export function xzInto(lzma: LzmaNativeModule, data: Uint8Array, dst: Uint8Array): number {
  const PIECE = 512;
  const MEMLIMIT = 80 * 1024 * 1024;
  const stream = new lzma.Stream();
  stream.streamDecoder({ memlimit: MEMLIMIT });
  let written = 0;
  let over = false;
  let ended = false;
  let failure: Error | undefined;
  stream.bufferHandler = (buf, _processed, err) => {
    if (err) failure = err;
    else if (buf === null) ended = true;
    else if (buf) {
      if (over || written + buf.length > dst.length) over = true;
      else {
        dst.set(buf, written);
        written += buf.length;
      }
    }
  };
  let at = 0;
  try {
    for (; at < data.length && !over && !ended && !failure; at += PIECE) stream.code(data.subarray(at, Math.min(data.length, at + PIECE)), false);
    if (!over && !ended && !failure) stream.code(null, false);
  } finally {
    stream.resetUnderlying();
  }
  if (over) throw new Error(`decompresses to more than ${dst.length} bytes`);
  if (failure) throw new Error(failure.message);
  if (!ended) throw new Error('stream ends early');
  // What follows the stream may only be stream padding (zero bytes), as in a .xz file.
  for (let i = Math.min(at, data.length); i < data.length; i++) if (data[i] !== 0) throw new Error(`data after the end of the stream at byte ${i}`);
  return written;
}

/**
 * zstd: a frame that declares its size is refused before decoding when that size is too large;
 * any other frame is decoded in one pass straight into `dst`, which fails as soon as the output
 * does not fit (no window buffer is allocated in this mode).
 */
export function zstdInto(zstd: ZstdBinding, data: Uint8Array, dst: Uint8Array): number {
  let declared: number | null;
  try {
    declared = zstd.getFrameContentSize(data);
  } catch (err) {
    throw new Error(`no zstd frame header: ${(err as Error).message}`);
  }
  if (declared !== null && declared > dst.length) throw new Error(`frame declares ${declared} bytes, more than the ${dst.length} expected`);
  try {
    return new zstd.DCtx().decompress(dst, data);
  } catch (err) {
    const message = (err as Error).message;
    throw new Error(/too small/i.test(message) ? `decompresses to more than ${dst.length} bytes` : message);
  }
}

/** bzip2: one spare byte of room, so a stream longer than the limit fails as "output full". */
export function bz2Bounded(bzip2: Bzip2Module, data: Uint8Array, limit: number): Uint8Array {
  let out: Uint8Array;
  try {
    out = bzip2.decompress(data, limit + 1);
  } catch (err) {
    const message = (err as Error).message;
    throw new Error(/OUTBUFF_FULL/.test(message) ? `decompresses to more than ${limit} bytes` : message);
  }
  if (out.length > limit) throw new Error(`decompresses to more than ${limit} bytes`);
  return out;
}
