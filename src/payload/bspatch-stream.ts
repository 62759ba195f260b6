import zlib from 'node:zlib';
import { VabError } from '../util/errors';
import { PatchLayout, StreamCompression, readPatchLayout } from './bsdiff-format';
import { bzip2Pieces } from './bzip2';

/** Output is produced, and old bytes read, this much at a time. */
const STEP = 1 << 20;

/**
 * One of a patch's sub-streams, decoded as it is read: `read(n)` gives exactly the next n bytes.
 * It never decodes past `total` (the bytes the control entries say it holds): more is corrupt.
 */
class SubStream {
  private piece: Buffer = Buffer.alloc(0);
  private at = 0;
  private produced = 0;
  private readonly next: () => Promise<Buffer | undefined>;

  constructor(
    private readonly what: string,
    kind: StreamCompression,
    data: Buffer,
    private readonly total: number,
  ) {
    if (kind === 'none') {
      let given = false;
      this.next = async () => (given ? undefined : ((given = true), data));
    } else if (kind === 'bz2') {
      const pieces = bzip2Pieces(data, total);
      this.next = async () => {
        const r = pieces.next();
        return r.done ? undefined : r.value;
      };
    } else {
      // Node's streaming brotli decoder: it stops decoding while its output is not read.
      const decoder = zlib.createBrotliDecompress();
      decoder.end(data);
      const chunks = decoder[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
      this.next = async () => {
        const r = await chunks.next();
        return r.done ? undefined : r.value;
      };
    }
  }

  async read(n: number): Promise<Buffer> {
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      if (this.at === this.piece.length) {
        const piece = await this.pull();
        if (!piece) throw new VabError('ECORRUPT', `bsdiff ${this.what} stream ends after ${this.produced} bytes, the control entries need ${this.total}`);
        this.piece = piece;
        this.at = 0;
      }
      const take = Math.min(n - filled, this.piece.length - this.at);
      this.piece.copy(out, filled, this.at, this.at + take);
      filled += take;
      this.at += take;
    }
    return out;
  }

  /** Everything read: the stream must hold nothing more. */
  async finish(): Promise<void> {
    if (this.at < this.piece.length || (await this.pull())) {
      throw new VabError('ECORRUPT', `bsdiff ${this.what} stream decompresses to more than the ${this.total} bytes the control entries need`);
    }
  }

  private async pull(): Promise<Buffer | undefined> {
    let piece: Buffer | undefined;
    try {
      piece = await this.next();
    } catch (err) {
      throw new VabError('ECORRUPT', `bsdiff ${this.what} stream: ${(err as Error).message}`, { cause: err });
    }
    if (!piece) return undefined;
    this.produced += piece.length;
    if (this.produced > this.total) throw new VabError('ECORRUPT', `bsdiff ${this.what} stream decompresses to more than the ${this.total} bytes the control entries need`);
    return piece;
  }
}

/**
 * bspatch that never holds the old file, the new file or a decoded stream whole: the diff and
 * extra streams are decoded as the output is produced, the old bytes read a step at a time
 * (`readOld` gives `length` bytes at `offset` of the old file, which is `oldSize` bytes), and the
 * output handed to `push` a step at a time, in order. Every check of decodePatch comes first.
 */
export async function bspatchStream(patch: Buffer, newSize: number, oldSize: number, readOld: (offset: number, length: number) => Promise<Buffer>, push: (chunk: Buffer) => Promise<void>): Promise<void> {
  const layout: PatchLayout = await readPatchLayout(patch, newSize);
  const diff = new SubStream('diff', layout.kinds[1], layout.diffStream, layout.diffTotal);
  const extra = new SubStream('extra', layout.kinds[2], layout.extraStream, layout.extraTotal);
  let oldPos = 0;
  for (const entry of layout.control) {
    for (let done = 0; done < entry.diff; ) {
      const n = Math.min(STEP, entry.diff - done);
      const out = await diff.read(n);
      // Old bytes outside the old file add nothing (bspatch's rule).
      const from = oldPos + done;
      const lo = Math.max(0, from);
      const hi = Math.min(oldSize, from + n);
      if (hi > lo) {
        const old = await readOld(lo, hi - lo);
        for (let i = 0; i < hi - lo; i++) out[lo - from + i] = (out[lo - from + i] + old[i]) & 0xff;
      }
      await push(out);
      done += n;
    }
    for (let done = 0; done < entry.extra; ) {
      const n = Math.min(STEP, entry.extra - done);
      await push(await extra.read(n));
      done += n;
    }
    oldPos += entry.diff + entry.seek;
  }
  await diff.finish();
  await extra.finish();
}
