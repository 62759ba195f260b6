import { ControlEntry, StreamCompression, encodeBsdf2 } from './bsdiff-format';

/**
 * A bsdiff in the spirit of Colin Percival's: a suffix array of the old file finds, for each
 * position of the new file, the longest exact match in the old one; matches are then extended
 * approximately (a byte-wise diff of similar regions compresses well), and what no match covers
 * goes to the extra stream. The suffix array is built by prefix doubling with radix sorts,
 * O(n log n), which is ample for the chunk sizes the generator diffs (a few MiB at most).
 */

/** Suffix array of `s` (without the empty suffix). */
export function suffixArray(s: Uint8Array): Int32Array {
  const n = s.length;
  let sa = new Int32Array(n);
  if (n === 0) return sa;
  let rank = new Int32Array(n);
  let next = new Int32Array(n);
  // Pass 0: order by the first byte.
  const byteCount = new Int32Array(257);
  for (let i = 0; i < n; i++) byteCount[s[i] + 1]++;
  for (let b = 0; b < 256; b++) byteCount[b + 1] += byteCount[b];
  for (let i = 0; i < n; i++) sa[byteCount[s[i]]++] = i;
  for (let i = 0; i < n; i++) rank[i] = s[i];
  let classes = 256;
  let tmp = new Int32Array(n);
  for (let k = 1; ; k <<= 1) {
    // Order by the second key (rank at i + k; suffixes shorter than k first), then stably by
    // the first key: the classic two-pass radix sort of prefix doubling.
    let p = 0;
    for (let i = n - k; i < n; i++) if (i >= 0) tmp[p++] = i;
    for (let j = 0; j < n; j++) if (sa[j] >= k) tmp[p++] = sa[j] - k;
    const count = new Int32Array(classes + 1);
    for (let i = 0; i < n; i++) count[rank[i] + 1]++;
    for (let c = 0; c < classes; c++) count[c + 1] += count[c];
    for (let j = 0; j < n; j++) {
      const i = tmp[j];
      sa[count[rank[i]]++] = i;
    }
    next[sa[0]] = 0;
    let c = 0;
    for (let j = 1; j < n; j++) {
      const a = sa[j - 1];
      const b = sa[j];
      const a2 = a + k < n ? rank[a + k] : -1;
      const b2 = b + k < n ? rank[b + k] : -1;
      if (rank[a] !== rank[b] || a2 !== b2) c++;
      next[b] = c;
    }
    [rank, next] = [next, rank];
    classes = c + 1;
    if (classes === n) break;
  }
  return sa;
}

function matchLength(old: Uint8Array, oldStart: number, neu: Uint8Array, newStart: number): number {
  const limit = Math.min(old.length - oldStart, neu.length - newStart);
  let i = 0;
  while (i < limit && old[oldStart + i] === neu[newStart + i]) i++;
  return i;
}

/** Longest match of `neu[newStart..]` in `old`, by binary search over the suffix array. */
export function longestMatch(sa: Int32Array, old: Buffer, neu: Buffer, newStart: number): { pos: number; len: number } {
  let lo = 0;
  let hi = sa.length - 1;
  while (hi - lo >= 2) {
    const mid = lo + ((hi - lo) >> 1);
    const oldPos = sa[mid];
    const oldLeft = old.length - oldPos;
    const newLeft = neu.length - newStart;
    const n = Math.min(oldLeft, newLeft);
    const order = old.compare(neu, newStart, newStart + n, oldPos, oldPos + n);
    // A suffix that is a proper prefix of the searched text sorts before it. Treating it as
    // "not less" (as a bare memcmp does) sends the search to short matches on repetitive data
    // such as zero runs, and the scan then degrades to quadratic time.
    if (order < 0 || (order === 0 && oldLeft < newLeft)) lo = mid;
    else hi = mid;
  }
  const x = matchLength(old, sa[lo], neu, newStart);
  const y = matchLength(old, sa[hi], neu, newStart);
  return x >= y ? { pos: sa[lo], len: x } : { pos: sa[hi], len: y };
}

export interface DiffResult {
  control: ControlEntry[];
  diff: Buffer;
  extra: Buffer;
}

/** Computes the control, diff and extra streams that turn `old` into `neu`. */
export function bsdiffStreams(old: Buffer, neu: Buffer): DiffResult {
  const control: ControlEntry[] = [];
  const diff = Buffer.alloc(neu.length);
  const extra = Buffer.alloc(neu.length);
  let diffLen = 0;
  let extraLen = 0;
  if (old.length === 0) {
    neu.copy(extra);
    return { control: neu.length > 0 ? [{ diff: 0, extra: neu.length, seek: 0 }] : [], diff: diff.subarray(0, 0), extra: extra.subarray(0, neu.length) };
  }
  const sa = suffixArray(old);
  let scan = 0;
  let len = 0;
  let pos = 0;
  let lastScan = 0;
  let lastPos = 0;
  let lastOffset = 0;
  while (scan < neu.length) {
    let oldScore = 0;
    let scsc = (scan += len);
    for (; scan < neu.length; scan++) {
      ({ pos, len } = longestMatch(sa, old, neu, scan));
      for (; scsc < scan + len; scsc++) if (scsc + lastOffset < old.length && old[scsc + lastOffset] === neu[scsc]) oldScore++;
      // Stop at a match that is clearly better than continuing the previous alignment.
      if ((len === oldScore && len !== 0) || len > oldScore + 8) break;
      if (scan + lastOffset < old.length && old[scan + lastOffset] === neu[scan]) oldScore--;
    }
    if (len === oldScore && scan !== neu.length) continue;
    let { forward, backward } = extend(old, neu, lastScan, lastPos, scan, pos);
    if (lastScan + forward > scan - backward) {
      const shift = resolveOverlap(old, neu, lastScan, lastPos, scan, pos, forward, backward);
      forward = shift.forward;
      backward = shift.backward;
    }
    for (let i = 0; i < forward; i++) diff[diffLen + i] = (neu[lastScan + i] - old[lastPos + i]) & 0xff;
    diffLen += forward;
    const extraCount = scan - backward - (lastScan + forward);
    neu.copy(extra, extraLen, lastScan + forward, scan - backward);
    extraLen += extraCount;
    control.push({ diff: forward, extra: extraCount, seek: pos - backward - (lastPos + forward) });
    lastScan = scan - backward;
    lastPos = pos - backward;
    lastOffset = pos - scan;
  }
  return { control, diff: diff.subarray(0, diffLen), extra: extra.subarray(0, extraLen) };
}

/** How far the previous match extends forwards and the new one backwards, approximately. */
function extend(old: Buffer, neu: Buffer, lastScan: number, lastPos: number, scan: number, pos: number): { forward: number; backward: number } {
  let forward = 0;
  for (let i = 0, s = 0, best = 0; lastScan + i < scan && lastPos + i < old.length; ) {
    if (old[lastPos + i] === neu[lastScan + i]) s++;
    i++;
    if (s * 2 - i > best * 2 - forward) {
      best = s;
      forward = i;
    }
  }
  let backward = 0;
  if (scan < neu.length) {
    for (let i = 1, s = 0, best = 0; scan >= lastScan + i && pos >= i; i++) {
      if (old[pos - i] === neu[scan - i]) s++;
      if (s * 2 - i > best * 2 - backward) {
        best = s;
        backward = i;
      }
    }
  }
  return { forward, backward };
}

/** Where both extensions claim the same bytes, split them where the match count is best. */
function resolveOverlap(old: Buffer, neu: Buffer, lastScan: number, lastPos: number, scan: number, pos: number, forward: number, backward: number): { forward: number; backward: number } {
  const overlap = lastScan + forward - (scan - backward);
  let s = 0;
  let best = 0;
  let split = 0;
  for (let i = 0; i < overlap; i++) {
    if (neu[lastScan + forward - overlap + i] === old[lastPos + forward - overlap + i]) s++;
    if (neu[scan - backward + i] === old[pos - backward + i]) s--;
    if (s > best) {
      best = s;
      split = i + 1;
    }
  }
  return { forward: forward + split - overlap, backward: backward - split };
}

/** A complete BSDF2 patch (brotli streams by default) turning `old` into `neu`. */
export async function bsdiff(old: Buffer, neu: Buffer, compression: StreamCompression = 'brotli'): Promise<Buffer> {
  const { control, diff, extra } = bsdiffStreams(old, neu);
  return encodeBsdf2(control, diff, extra, neu.length, compression);
}
