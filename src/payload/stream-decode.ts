import { VabError } from '../util/errors';
import { decodeFailure, LzmaNativeModule, OVERFLOW } from './bounded-decode';
import type { Extent } from './manifest';
import type { PartitionWriter, SourceReader } from './partition-io';
import { bspatchStream } from './bspatch-stream';
import { bzip2Pieces } from './bzip2';

/**
 * Large REPLACE_XZ, REPLACE_ZSTD and REPLACE_BZ ops are decoded while they are written, as update_engine's
 * extent writers do, so an op costs a fixed buffer instead of its whole output: a payload of a
 * few KB may legitimately fill a large partition with zeros. Smaller ops (AOSP's and vab's
 * generators cut 1-2 MiB chunks) keep the faster decode-then-write path on the decode threads.
 */
export const STREAM_MIN_BYTES = 4 * 1024 * 1024;

/** The codecs whose ops are streamed. */
export type StreamedCodec = 'xz' | 'zstd' | 'bz2';
const PIECE_OUTPUT = 1024 * 1024;

interface ZstdStreaming {
  DCtx: new () => { decompressStream(dst: Uint8Array, src: Uint8Array): [number, number, number] };
  getFrameContentSize(frame: Uint8Array): number | null;
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
const lzma = require('lzma-native') as LzmaNativeModule;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const zstd = require('zstd-napi/binding') as ZstdStreaming;

/** Decoded output in the order it comes; each array is what one step produced. */
type Steps = Generator<Buffer[], void, undefined>;

/** bzip2 through vab's streaming decoder (src/payload/bzip2.ts): one block's state at a time. */
function* bz2Steps(data: Uint8Array, limit: number): Steps {
  for (const piece of bzip2Pieces(data, limit)) yield [piece];
}

function* xzSteps(data: Uint8Array): Steps {
  const PIECE = 512;
  const stream = new lzma.Stream();
  stream.streamDecoder({ memlimit: 80 * 1024 * 1024 });
  let out: Buffer[] = [];
  let ended = false;
  let failure: Error | undefined;
  stream.bufferHandler = (buf, _processed, err) => {
    if (err) failure = err;
    else if (buf === null) ended = true;
    else if (buf) out.push(buf);
  };
  let at = 0;
  try {
    for (; !ended; at += PIECE) {
      // A piece past the end finishes the stream; liblzma then reports its end or that it is cut short.
      stream.code(at < data.length ? data.subarray(at, Math.min(data.length, at + PIECE)) : null, false);
      if (failure) throw new Error(failure.message);
      yield out;
      out = [];
      if (at >= data.length && !ended) throw new Error('stream ends early');
    }
  } finally {
    stream.resetUnderlying();
  }
  // What follows the stream may only be stream padding (zero bytes), as in a .xz file.
  for (let i = at; i < data.length; i++) if (data[i] !== 0) throw new Error(`data after the end of the stream at byte ${i}`);
}

function* zstdSteps(data: Uint8Array, limit: number): Steps {
  let declared: number | null;
  try {
    declared = zstd.getFrameContentSize(data);
  } catch (err) {
    throw new Error(`no zstd frame header: ${(err as Error).message}`);
  }
  if (declared !== null && declared > limit) throw new Error(`frame declares ${declared} bytes, more than the ${limit} expected`);
  const dctx = new zstd.DCtx();
  let at = 0;
  for (;;) {
    const out = Buffer.allocUnsafe(PIECE_OUTPUT);
    const [left, produced, consumed] = dctx.decompressStream(out, data.subarray(at));
    at += consumed;
    yield [out.subarray(0, produced)];
    // Done once all input is read and the last frame is complete with nothing left to flush.
    if (at >= data.length && left === 0) return;
    if (consumed === 0 && produced === 0) throw new Error('stream ends early');
  }
}

/**
 * Collects output into whole blocks and writes them along the extents, in order. A writer may
 * keep a buffer until its write completes, so each flush hands over its staging buffer and takes
 * a new one; memory is the staging buffer plus what the writer has in flight.
 */
export class ExtentSink {
  private staging: Buffer;
  private filled = 0;
  private extent = 0;
  private blockInExtent = 0;
  written = 0;

  constructor(
    private readonly writer: PartitionWriter,
    private readonly extents: readonly Extent[],
  ) {
    this.staging = this.fresh();
  }

  private fresh(): Buffer {
    return Buffer.allocUnsafe(Math.max(this.writer.blockSize, PIECE_OUTPUT - (PIECE_OUTPUT % this.writer.blockSize)));
  }

  async push(chunk: Buffer): Promise<void> {
    this.written += chunk.length;
    for (let at = 0; at < chunk.length; ) {
      const n = Math.min(chunk.length - at, this.staging.length - this.filled);
      chunk.copy(this.staging, this.filled, at, at + n);
      this.filled += n;
      at += n;
      if (this.filled === this.staging.length) await this.flush();
    }
  }

  /** Writes the staged bytes; the last call may leave a partial block, padded with zeros. */
  async flush(): Promise<void> {
    const bs = this.writer.blockSize;
    const blocks = Math.ceil(this.filled / bs);
    this.staging.fill(0, this.filled, blocks * bs);
    for (let done = 0; done < blocks; ) {
      const extent = this.extents[this.extent];
      const n = Math.min(blocks - done, extent.num_blocks - this.blockInExtent);
      await this.writer.write(extent.start_block + this.blockInExtent, this.staging.subarray(done * bs, (done + n) * bs));
      done += n;
      this.blockInExtent += n;
      if (this.blockInExtent === extent.num_blocks) {
        this.extent++;
        this.blockInExtent = 0;
      }
    }
    this.filled = 0;
    this.staging = this.fresh();
  }
}

/**
 * Decodes `data` and writes it along `extents`, which hold exactly `limit` bytes. Fails with
 * ECORRUPT as soon as the output passes `limit` (nothing past the extents is ever written) or
 * when it ends short of it.
 */
export async function streamDecodeToExtents(kind: StreamedCodec, data: Buffer, limit: number, writer: PartitionWriter, extents: readonly Extent[]): Promise<void> {
  const sink = new ExtentSink(writer, extents);
  try {
    for (const step of kind === 'xz' ? xzSteps(data) : kind === 'zstd' ? zstdSteps(data, limit) : bz2Steps(data, limit)) {
      const size = step.reduce((n, b) => n + b.length, 0);
      if (sink.written + size > limit) throw new Error(`${OVERFLOW} ${limit} bytes`);
      for (const chunk of step) await sink.push(chunk);
    }
  } catch (err) {
    if (err instanceof VabError) throw err;
    throw new VabError('ECORRUPT', decodeFailure(kind, err as Error), { cause: err });
  }
  if (sink.written !== limit) throw new VabError('ECORRUPT', `${kind} data decompresses to ${sink.written} bytes, expected ${limit}`);
  await sink.flush();
}

/**
 * The old file of an op (its source extents, back to back) read by byte range, a range at a time:
 * what a streamed bspatch reads instead of the whole old file.
 */
export function extentByteReader(source: SourceReader, extents: readonly Extent[], blockSize: number): (offset: number, length: number) => Promise<Buffer> {
  return async (offset, length) => {
    const out = Buffer.alloc(length);
    let base = 0;
    for (const extent of extents) {
      const bytes = extent.num_blocks * blockSize;
      const lo = Math.max(offset, base);
      const hi = Math.min(offset + length, base + bytes);
      if (hi > lo) {
        const first = Math.floor((lo - base) / blockSize);
        const last = Math.ceil((hi - base) / blockSize);
        const data = await source.read(extent.start_block + first, last - first);
        data.copy(out, lo - offset, lo - base - first * blockSize, hi - base - first * blockSize);
      }
      base += bytes;
      if (base >= offset + length) break;
    }
    return out;
  };
}

/** A bsdiff op large enough to stream: patched a step at a time, straight along its extents. */
export async function bspatchToExtents(patch: Buffer, newSize: number, oldSize: number, readOld: (offset: number, length: number) => Promise<Buffer>, writer: PartitionWriter, extents: readonly Extent[]): Promise<void> {
  const sink = new ExtentSink(writer, extents);
  await bspatchStream(patch, newSize, oldSize, readOld, (chunk) => sink.push(chunk));
  await sink.flush();
}
