/**
 * A streaming bzip2 decoder: output comes out in pieces of at most PIECE bytes as it is decoded,
 * so memory is one block's state (at most 900 kB of BWT input, 3.6 MB of links) whatever the data
 * claims to expand to. Format facts (stream header "BZh1".."BZh9", block magic 0x314159265359,
 * end-of-stream magic 0x177245385090, 2..6 Huffman tables switched every 50 symbols, RUNA/RUNB
 * zero runs, move-to-front, inverse BWT from origPtr, then runs of 4 equal bytes followed by a
 * repeat count, CRC-32 with polynomial 0x04c11db7 MSB-first per block and combined per stream)
 * are those of bzip2's decompress.c and the Linux kernel's decompress_bunzip2.c.
 */

const PIECE = 1 << 20;
const BLOCK_MAGIC_HI = 0x314159;
const BLOCK_MAGIC_LO = 0x265359;
const END_MAGIC_HI = 0x177245;
const END_MAGIC_LO = 0x385090;
const GROUP_SIZE = 50;
const MAX_GROUPS = 6;
const MAX_ALPHA = 258;
const MAX_CODE_LEN = 20;
const MAX_SELECTORS = 18002;

const CRC_TABLE = (() => {
  const table = new Int32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i << 24;
    for (let k = 0; k < 8; k++) c = c & 0x80000000 ? (c << 1) ^ 0x04c11db7 : c << 1;
    table[i] = c;
  }
  return table;
})();

export class Bzip2Error extends Error {}

class BitReader {
  private pos = 0;
  private bitBuf = 0;
  private bitCount = 0;

  constructor(private readonly data: Uint8Array) {}

  bits(n: number): number {
    while (this.bitCount < n) {
      if (this.pos >= this.data.length) throw new Bzip2Error(`data ends early (at byte ${this.data.length})`);
      this.bitBuf = ((this.bitBuf << 8) | this.data[this.pos++]) >>> 0;
      this.bitCount += 8;
    }
    this.bitCount -= n;
    return (this.bitBuf >>> this.bitCount) & ((1 << n) - 1);
  }

  bit(): number {
    return this.bits(1);
  }

  /** 32 bits as a signed int32 (bits() masks with 1 << n, which is 1 for n = 32). */
  int32(): number {
    return ((this.bits(16) << 16) | this.bits(16)) | 0;
  }

  /** Skips to the next byte boundary; whether any input is left after it. */
  alignAndMore(): boolean {
    this.bitCount -= this.bitCount % 8;
    return this.pos < this.data.length || this.bitCount > 0;
  }

  get offset(): number {
    return this.pos;
  }
}

/** One Huffman table, decoded canonically: `limit[len]` is the largest code of that length. */
interface Table {
  minLen: number;
  maxLen: number;
  limit: Int32Array;
  base: Int32Array;
  perm: Uint16Array;
}

function buildTable(lengths: Uint8Array, alphaSize: number): Table {
  let minLen = 32;
  let maxLen = 0;
  for (let i = 0; i < alphaSize; i++) {
    minLen = Math.min(minLen, lengths[i]);
    maxLen = Math.max(maxLen, lengths[i]);
  }
  const perm = new Uint16Array(alphaSize);
  const limit = new Int32Array(MAX_CODE_LEN + 2).fill(-1);
  const base = new Int32Array(MAX_CODE_LEN + 2);
  let p = 0;
  for (let len = minLen; len <= maxLen; len++) for (let s = 0; s < alphaSize; s++) if (lengths[s] === len) perm[p++] = s;
  let code = 0;
  let index = 0;
  for (let len = minLen; len <= maxLen; len++) {
    let count = 0;
    for (let s = 0; s < alphaSize; s++) if (lengths[s] === len) count++;
    base[len] = index - code;
    code += count;
    index += count;
    limit[len] = code - 1;
    code <<= 1;
  }
  return { minLen, maxLen, limit, base, perm };
}

/**
 * Decodes a bzip2 stream (or several back to back), yielding output pieces in order. `limit`:
 * stop with an error as soon as the output would pass it (a bomb never gets further).
 */
export function* bzip2Pieces(data: Uint8Array, limit = Number.POSITIVE_INFINITY): Generator<Buffer> {
  const r = new BitReader(data);
  let total = 0;
  let streams = 0;
  for (;;) {
    if (r.bits(8) !== 0x42 || r.bits(8) !== 0x5a || r.bits(8) !== 0x68) throw new Bzip2Error(streams === 0 ? 'no bzip2 stream header ("BZh")' : `trailing garbage after stream ${streams}`);
    const level = r.bits(8) - 0x30;
    if (level < 1 || level > 9) throw new Bzip2Error(`block size digit ${level} is not 1..9`);
    const maxBlock = level * 100_000;
    const tt = new Uint32Array(maxBlock);
    let combined = 0;
    for (;;) {
      const hi = r.bits(24);
      const lo = r.bits(24);
      if (hi === END_MAGIC_HI && lo === END_MAGIC_LO) {
        const stored = r.int32();
        if (stored !== combined) throw new Bzip2Error(`stream CRC ${hex(stored)} does not match the blocks' ${hex(combined)}`);
        break;
      }
      if (hi !== BLOCK_MAGIC_HI || lo !== BLOCK_MAGIC_LO) throw new Bzip2Error(`bad block magic at byte ${r.offset}`);
      const blockCrc = r.int32();
      let crc = -1;
      for (const piece of decodeBlock(r, tt, maxBlock)) {
        total += piece.length;
        if (total > limit) throw new Bzip2Error(`decompresses to more than ${limit} bytes`);
        for (let i = 0; i < piece.length; i++) crc = (crc << 8) ^ CRC_TABLE[((crc >>> 24) ^ piece[i]) & 0xff];
        yield piece;
      }
      crc = ~crc;
      if (crc !== blockCrc) throw new Bzip2Error(`block CRC ${hex(crc)} does not match the stored ${hex(blockCrc)}`);
      combined = ((combined << 1) | (combined >>> 31)) ^ crc;
    }
    streams++;
    if (!r.alignAndMore()) return;
  }
}

function hex(n: number): string {
  return (n >>> 0).toString(16).padStart(8, '0');
}

function* decodeBlock(r: BitReader, tt: Uint32Array, maxBlock: number): Generator<Buffer> {
  if (r.bit()) throw new Bzip2Error('randomized blocks (bzip2 before 0.9.5) are not supported');
  const origPtr = r.bits(24);
  // The symbols in use: 16 groups of 16.
  const seqToUnseq = new Uint8Array(256);
  let inUse = 0;
  const groupsUsed = r.bits(16);
  for (let i = 0; i < 16; i++) {
    if (!(groupsUsed & (0x8000 >> i))) continue;
    const bits = r.bits(16);
    for (let j = 0; j < 16; j++) if (bits & (0x8000 >> j)) seqToUnseq[inUse++] = i * 16 + j;
  }
  if (inUse === 0) throw new Bzip2Error('a block uses no symbols');
  const alphaSize = inUse + 2;
  const nGroups = r.bits(3);
  if (nGroups < 2 || nGroups > MAX_GROUPS) throw new Bzip2Error(`${nGroups} Huffman tables (2..6 allowed)`);
  const nSelectors = r.bits(15);
  if (nSelectors < 1) throw new Bzip2Error('no selectors');
  const mtfGroups = [0, 1, 2, 3, 4, 5].slice(0, nGroups);
  const selectors = new Uint8Array(Math.min(nSelectors, MAX_SELECTORS));
  for (let i = 0; i < nSelectors; i++) {
    let j = 0;
    while (r.bit()) if (++j >= nGroups) throw new Bzip2Error('selector out of range');
    const v = mtfGroups[j];
    for (; j > 0; j--) mtfGroups[j] = mtfGroups[j - 1];
    mtfGroups[0] = v;
    // bzip2 1.0.8 reads and ignores selectors past 18002.
    if (i < MAX_SELECTORS) selectors[i] = v;
  }
  const tables: Table[] = [];
  const lengths = new Uint8Array(MAX_ALPHA);
  for (let t = 0; t < nGroups; t++) {
    let len = r.bits(5);
    for (let s = 0; s < alphaSize; s++) {
      for (;;) {
        if (len < 1 || len > MAX_CODE_LEN) throw new Bzip2Error(`Huffman code length ${len} out of range`);
        if (!r.bit()) break;
        len += r.bit() ? -1 : 1;
      }
      lengths[s] = len;
    }
    tables.push(buildTable(lengths, alphaSize));
  }

  // Huffman + RUNA/RUNB + move-to-front into tt (low byte), counting each byte.
  const counts = new Int32Array(256);
  const mtf = new Uint8Array(256);
  for (let i = 0; i < 256; i++) mtf[i] = i;
  const eob = inUse + 1;
  let n = 0;
  let selector = 0;
  let left = 0;
  let table = tables[0];
  let run = 0;
  let runWeight = 1;
  for (;;) {
    if (left === 0) {
      if (selector >= selectors.length) throw new Bzip2Error('more symbols than selectors');
      table = tables[selectors[selector++]];
      left = GROUP_SIZE;
    }
    left--;
    let len = table.minLen;
    let code = r.bits(len);
    while (code > table.limit[len]) {
      if (++len > table.maxLen) throw new Bzip2Error('invalid Huffman code');
      code = (code << 1) | r.bit();
    }
    const sym = table.perm[table.base[len] + code];
    if (sym <= 1) {
      // RUNA adds 1 × weight, RUNB 2 × weight; the weight doubles with each.
      run += (sym + 1) * runWeight;
      runWeight <<= 1;
      if (run > maxBlock) throw new Bzip2Error('a run passes the block size');
      continue;
    }
    if (run > 0) {
      if (n + run > maxBlock) throw new Bzip2Error('a block passes its declared size');
      const b = seqToUnseq[mtf[0]];
      counts[b] += run;
      tt.fill(b, n, n + run);
      n += run;
      run = 0;
      runWeight = 1;
    }
    if (sym === eob) break;
    if (n >= maxBlock) throw new Bzip2Error('a block passes its declared size');
    const index = sym - 1;
    const v = mtf[index];
    mtf.copyWithin(1, 0, index);
    mtf[0] = v;
    const b = seqToUnseq[v];
    counts[b]++;
    tt[n++] = b;
  }
  if (origPtr >= n) throw new Bzip2Error(`origPtr ${origPtr} is outside the ${n}-byte block`);

  // Inverse BWT: each entry links to the next (high 24 bits) and keeps its byte (low 8).
  const start = new Int32Array(256);
  for (let i = 0, sum = 0; i < 256; i++) {
    start[i] = sum;
    sum += counts[i];
  }
  for (let i = 0; i < n; i++) {
    const b = tt[i] & 0xff;
    tt[start[b]++] |= i << 8;
  }
  let pos = tt[origPtr] >>> 8;

  // Runs of 4 equal bytes are followed by a count of more copies.
  let out = Buffer.allocUnsafe(PIECE);
  let o = 0;
  let last = -1;
  let same = 0;
  for (let i = 0; i < n; i++) {
    const entry = tt[pos];
    const b = entry & 0xff;
    pos = entry >>> 8;
    if (same === 4) {
      for (let k = 0; k < b; k++) {
        if (o === PIECE) {
          yield out;
          out = Buffer.allocUnsafe(PIECE);
          o = 0;
        }
        out[o++] = last;
      }
      same = 0;
      last = -1;
      continue;
    }
    if (b === last) same++;
    else {
      last = b;
      same = 1;
    }
    if (o === PIECE) {
      yield out;
      out = Buffer.allocUnsafe(PIECE);
      o = 0;
    }
    out[o++] = b;
  }
  if (o > 0) yield out.subarray(0, o);
}
