/**
 * Decoder for the raw LZ4 block format (what LZ4_compress_default writes and LZ4_decompress_safe
 * reads: no frame, no size prefix). It decodes into the caller's buffer and checks every length
 * and offset against both buffers, so malformed input is reported instead of read or written out
 * of bounds.
 *
 * A block is a series of sequences. Each starts with a token byte: the high nibble is the literal
 * count, the low nibble the match length minus 4; a nibble of 15 continues in following bytes
 * (each added, 255 meaning "more follows"). Then come the literals, then a u16 LE match offset
 * (distance back into the output, never 0) and the match length extension. The last sequence has
 * literals only.
 */
import { VabError } from '../util/errors';

const MIN_MATCH = 4;

export class Lz4FormatError extends VabError {
  constructor(
    message: string,
    readonly inputOffset: number,
  ) {
    super('ECORRUPT', `LZ4 block: ${message} at input byte ${inputOffset}`);
    this.name = 'Lz4FormatError';
  }
}

/**
 * Decodes `src[srcStart, srcEnd)` into `dst[dstStart, dstEnd)` and returns the number of bytes
 * written. Throws Lz4FormatError on malformed input or when the output does not fit.
 */
export function decodeLz4Block(src: Uint8Array, srcStart: number, srcEnd: number, dst: Uint8Array, dstStart: number, dstEnd: number): number {
  let ip = srcStart;
  let op = dstStart;
  if (srcEnd > src.length || dstEnd > dst.length) throw new RangeError('LZ4 block: bounds outside the buffers');
  if (ip >= srcEnd) throw new Lz4FormatError('empty input', ip);
  for (;;) {
    const token = src[ip++];
    let literals = token >>> 4;
    if (literals === 15) {
      let more: number;
      do {
        if (ip >= srcEnd) throw new Lz4FormatError('literal length runs past the input', ip);
        more = src[ip++];
        literals += more;
      } while (more === 255);
    }
    if (ip + literals > srcEnd) throw new Lz4FormatError(`${literals} literals run past the input`, ip);
    if (op + literals > dstEnd) throw new Lz4FormatError(`${literals} literals overflow the output`, ip);
    if (literals > 32) {
      dst.set(src.subarray(ip, ip + literals), op);
      ip += literals;
      op += literals;
    } else {
      for (let end = ip + literals; ip < end; ) dst[op++] = src[ip++];
    }
    if (ip === srcEnd) return op - dstStart;

    if (ip + 2 > srcEnd) throw new Lz4FormatError('match offset runs past the input', ip);
    const distance = src[ip] | (src[ip + 1] << 8);
    ip += 2;
    if (distance === 0 || distance > op - dstStart) throw new Lz4FormatError(`match offset ${distance} points before the output`, ip - 2);
    let length = token & 15;
    if (length === 15) {
      let more: number;
      do {
        if (ip >= srcEnd) throw new Lz4FormatError('match length runs past the input', ip);
        more = src[ip++];
        length += more;
      } while (more === 255);
    }
    length += MIN_MATCH;
    if (op + length > dstEnd) throw new Lz4FormatError(`match of ${length} bytes overflows the output`, ip);
    let from = op - distance;
    if (distance >= length && length > 32) {
      dst.copyWithin(op, from, from + length);
      op += length;
    } else {
      // Overlapping matches repeat the last `distance` bytes, so they must be copied forward byte by byte.
      for (const end = op + length; op < end; ) dst[op++] = dst[from++];
    }
  }
}

/** LZ4_compressBound: the most a block of `n` bytes can grow to. */
export function lz4CompressBound(n: number): number {
  return n + Math.floor(n / 255) + 16;
}
