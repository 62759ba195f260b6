import { VabError } from '../util/errors';
import { Compression, compress, decompress } from './codecs';

/**
 * bsdiff patch containers, as update_engine reads them.
 *
 *   offset  size  BSDIFF40                       BSDF2
 *        0     8  "BSDIFF40"                     "BSDF2" + one compressor byte per stream
 *                                                (control, diff, extra): 0 none, 1 bz2, 2 brotli
 *        8     8  compressed control length      same
 *       16     8  compressed diff length         same
 *       24     8  new file size                  same
 *       32     .  control | diff | extra streams (extra runs to the end)
 *
 * BSDIFF40 compresses all three streams with bzip2. Every 8-byte integer, in the header and in
 * the control stream, is sign-magnitude little-endian: 63 bits of magnitude, sign in the top bit.
 * The control stream is a list of triples (diff length, extra length, old-position seek).
 */
export const BSDIFF40_MAGIC = Buffer.from('BSDIFF40', 'ascii');
export const BSDF2_MAGIC = Buffer.from('BSDF2', 'ascii');
export const BSDIFF_HEADER_SIZE = 32;

const COMPRESSOR_BY_ID: ReadonlyMap<number, Compression | 'none'> = new Map([
  [0, 'none'],
  [1, 'bz2'],
  [2, 'brotli'],
] as const);
const ID_BY_COMPRESSOR = { none: 0, bz2: 1, brotli: 2 } as const;

export type StreamCompression = 'none' | 'bz2' | 'brotli';

export interface ControlEntry {
  diff: number;
  extra: number;
  seek: number;
}

export interface DecodedPatch {
  format: 'BSDIFF40' | 'BSDF2';
  newSize: number;
  control: ControlEntry[];
  diff: Buffer;
  extra: Buffer;
}

export function readOfft(bytes: Buffer, offset: number): number {
  const magnitude = bytes.readBigUInt64LE(offset) & 0x7fff_ffff_ffff_ffffn;
  if (magnitude > BigInt(Number.MAX_SAFE_INTEGER)) throw new VabError('ECORRUPT', `bsdiff integer at ${offset} is beyond 2^53`);
  const value = Number(magnitude);
  return bytes[offset + 7] & 0x80 ? -value : value;
}

export function writeOfft(target: Buffer, offset: number, value: number): void {
  const magnitude = BigInt(Math.abs(value));
  target.writeBigUInt64LE(value < 0 ? magnitude | (1n << 63n) : magnitude, offset);
}

async function unpack(kind: StreamCompression, data: Buffer, limit: number, mode: 'exact' | 'atMost'): Promise<Buffer> {
  if (kind === 'none') {
    if (data.length > limit || (mode === 'exact' && data.length !== limit)) {
      throw new VabError('ECORRUPT', `uncompressed bsdiff stream has ${data.length} bytes, expected ${mode === 'exact' ? '' : 'at most '}${limit}`);
    }
    return data;
  }
  return decompress(kind, data, limit, mode);
}

/**
 * The most control bytes a patch producing `newSize` bytes may carry. Entries that produce
 * nothing are legal, so there is no exact bound; bsdiff starts a new entry only for a match that
 * beats the current alignment by 8 bytes, so real entries average well over the 6 output bytes
 * this allows (4 control bytes per output byte), and small outputs get 64 KiB regardless.
 */
export function controlLimit(newSize: number): number {
  return Math.max(64 * 1024, 4 * newSize);
}

/**
 * Parses a BSDIFF40 or BSDF2 patch and decompresses its three streams. With `expectedNewSize`
 * (what the op's destination holds) a header that says otherwise is refused before anything is
 * decoded; every stream is decoded with a bound derived from the new size, and every control
 * entry is checked against the bytes still to produce before the diff and extra streams are
 * decoded (to exactly the sizes the entries add up to).
 */
export async function decodePatch(patch: Buffer, expectedNewSize?: number): Promise<DecodedPatch> {
  const layout = await readPatchLayout(patch, expectedNewSize);
  const { kinds, control, diffTotal, extraTotal } = layout;
  const diff = await unpack(kinds[1], layout.diffStream, diffTotal, 'exact');
  const extra = await unpack(kinds[2], layout.extraStream, extraTotal, 'exact');
  return { format: layout.format, newSize: layout.newSize, control, diff, extra };
}

/** A patch's header and control entries, checked, with its diff and extra streams still compressed. */
export interface PatchLayout {
  format: DecodedPatch['format'];
  newSize: number;
  kinds: StreamCompression[];
  control: ControlEntry[];
  diffTotal: number;
  extraTotal: number;
  diffStream: Buffer;
  extraStream: Buffer;
}

/** Everything decodePatch checks before it decodes the diff and extra streams (see there). */
export async function readPatchLayout(patch: Buffer, expectedNewSize?: number): Promise<PatchLayout> {
  if (patch.length < BSDIFF_HEADER_SIZE) throw new VabError('ETRUNCATED', `bsdiff patch has ${patch.length} bytes, its header needs 32`);
  let format: DecodedPatch['format'];
  let kinds: StreamCompression[];
  if (patch.subarray(0, 8).equals(BSDIFF40_MAGIC)) {
    format = 'BSDIFF40';
    kinds = ['bz2', 'bz2', 'bz2'];
  } else if (patch.subarray(0, 5).equals(BSDF2_MAGIC)) {
    format = 'BSDF2';
    kinds = [5, 6, 7].map((i) => {
      const kind = COMPRESSOR_BY_ID.get(patch[i]);
      if (kind === undefined || kind === 'zstd' || kind === 'xz') throw new VabError('ECORRUPT', `BSDF2 compressor id ${patch[i]} at byte ${i} is unknown`);
      return kind;
    });
  } else {
    throw new VabError('ECORRUPT', `not a bsdiff patch: magic ${patch.subarray(0, 8).toString('hex')}`);
  }
  const ctrlLen = readOfft(patch, 8);
  const diffLen = readOfft(patch, 16);
  const newSize = readOfft(patch, 24);
  if (ctrlLen < 0 || diffLen < 0 || newSize < 0 || BSDIFF_HEADER_SIZE + ctrlLen + diffLen > patch.length) {
    throw new VabError('ECORRUPT', `bsdiff header is inconsistent: control ${ctrlLen}, diff ${diffLen}, new size ${newSize}, patch ${patch.length} bytes`);
  }
  if (expectedNewSize !== undefined && newSize !== expectedNewSize) {
    throw new VabError('ECORRUPT', `bsdiff header says the new file has ${newSize} bytes, the destination holds ${expectedNewSize}`);
  }
  const ctrlStart = BSDIFF_HEADER_SIZE;
  const diffStart = ctrlStart + ctrlLen;
  const extraStart = diffStart + diffLen;
  const ctrlBytes = await unpack(kinds[0], patch.subarray(ctrlStart, diffStart), controlLimit(newSize), 'atMost');
  if (ctrlBytes.length % 24 !== 0) throw new VabError('ECORRUPT', `bsdiff control stream has ${ctrlBytes.length} bytes, not a multiple of 24`);
  const control: ControlEntry[] = [];
  let diffTotal = 0;
  let extraTotal = 0;
  for (let at = 0; at < ctrlBytes.length; at += 24) {
    const entry = { diff: readOfft(ctrlBytes, at), extra: readOfft(ctrlBytes, at + 8), seek: readOfft(ctrlBytes, at + 16) };
    const left = newSize - diffTotal - extraTotal;
    if (entry.diff < 0 || entry.extra < 0) throw new VabError('ECORRUPT', `bsdiff control entry ${at / 24} has a negative length`);
    if (entry.diff > left || entry.extra > left - entry.diff) {
      throw new VabError('ECORRUPT', `bsdiff control entry ${at / 24} writes ${entry.diff} + ${entry.extra} bytes, only ${left} of the new file are left`);
    }
    diffTotal += entry.diff;
    extraTotal += entry.extra;
    control.push(entry);
  }
  if (diffTotal + extraTotal !== newSize) {
    throw new VabError('ECORRUPT', `bsdiff control stream writes ${diffTotal + extraTotal} bytes, the header says ${newSize}`);
  }
  return { format, newSize, kinds, control, diffTotal, extraTotal, diffStream: patch.subarray(diffStart, extraStart), extraStream: patch.subarray(extraStart) };
}

/** Applies a patch to `old`, producing the new file (of `expectedNewSize` bytes when given). */
export async function bspatch(old: Buffer, patch: Buffer, expectedNewSize?: number): Promise<Buffer> {
  const decoded = await decodePatch(patch, expectedNewSize);
  const out = Buffer.allocUnsafe(decoded.newSize);
  const { diff, extra } = decoded;
  let oldPos = 0;
  let newPos = 0;
  let diffPos = 0;
  let extraPos = 0;
  for (const entry of decoded.control) {
    // Bytes whose old position falls outside the old file take the diff byte unchanged.
    const end = newPos + entry.diff;
    for (let i = 0; newPos < end; i++, newPos++) {
      const o = oldPos + i;
      const d = diff[diffPos + i];
      out[newPos] = o >= 0 && o < old.length ? (d + old[o]) & 0xff : d;
    }
    diffPos += entry.diff;
    extra.copy(out, newPos, extraPos, extraPos + entry.extra);
    newPos += entry.extra;
    extraPos += entry.extra;
    oldPos += entry.diff + entry.seek;
  }
  return out;
}

/** Writes a BSDF2 patch with every stream compressed by `kind`. */
export async function encodeBsdf2(control: readonly ControlEntry[], diff: Buffer, extra: Buffer, newSize: number, kind: StreamCompression = 'brotli'): Promise<Buffer> {
  const ctrlBytes = Buffer.alloc(control.length * 24);
  control.forEach((entry, i) => {
    writeOfft(ctrlBytes, i * 24, entry.diff);
    writeOfft(ctrlBytes, i * 24 + 8, entry.extra);
    writeOfft(ctrlBytes, i * 24 + 16, entry.seek);
  });
  const pack = (data: Buffer) => (kind === 'none' ? Promise.resolve(data) : compress(kind, data));
  const [c, d, e] = await Promise.all([pack(ctrlBytes), pack(diff), pack(extra)]);
  const header = Buffer.alloc(BSDIFF_HEADER_SIZE);
  BSDF2_MAGIC.copy(header, 0);
  header.fill(ID_BY_COMPRESSOR[kind], 5, 8);
  writeOfft(header, 8, c.length);
  writeOfft(header, 16, d.length);
  writeOfft(header, 24, newSize);
  return Buffer.concat([header, c, d, e]);
}
