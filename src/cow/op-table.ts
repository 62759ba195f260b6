import { corrupt, CowWhere } from './errors';
import { CowOpType, opTypeName } from './format';

/**
 * The canonical, in-memory form of a COW's data ops (Copy, Replace, Zero, Xor), whatever version
 * the file is: v2 streams are translated into it once, like libsnapshot's Translate. It is a
 * struct of typed arrays so that millions of ops cost 25 bytes each and no object per op:
 *
 *   kind        u8   bits 0..3 type, 4..6 compression bits, 7 = payload stored raw
 *   newBlock    u32  first block of the new image the op produces
 *   dataLength  u32  payload bytes in the file
 *   source      f64  Copy: source block; Xor: source byte offset; Replace: data offset; Zero: 0
 *   dataOffset  f64  absolute file offset of the payload (Replace, Xor), else 0
 *
 * Ops keep their COW order; `BlockIndex` sorts a separate u32 array of op indices by block.
 */
export class CowOpTable {
  count = 0;
  kind: Uint8Array;
  newBlock: Uint32Array;
  dataLength: Uint32Array;
  source: Float64Array;
  dataOffset: Float64Array;

  constructor(capacity: number) {
    this.kind = new Uint8Array(capacity);
    this.newBlock = new Uint32Array(capacity);
    this.dataLength = new Uint32Array(capacity);
    this.source = new Float64Array(capacity);
    this.dataOffset = new Float64Array(capacity);
  }

  push(type: number, compressionBits: number, raw: boolean, newBlock: number, dataLength: number, source: number, dataOffset: number): number {
    if (this.count === this.kind.length) this.grow();
    const i = this.count++;
    this.kind[i] = type | (compressionBits << KIND_BITS_SHIFT) | (raw ? KIND_RAW : 0);
    this.newBlock[i] = newBlock;
    this.dataLength[i] = dataLength;
    this.source[i] = source;
    this.dataOffset[i] = dataOffset;
    return i;
  }

  type(i: number): CowOpType {
    return this.kind[i] & KIND_TYPE_MASK;
  }

  compressionBits(i: number): number {
    return (this.kind[i] >>> KIND_BITS_SHIFT) & 7;
  }

  isRaw(i: number): boolean {
    return (this.kind[i] & KIND_RAW) !== 0;
  }

  /** Blocks of the new image the op produces: 1 << bits for Replace, 1 for every other op. */
  span(i: number): number {
    return (this.kind[i] & KIND_TYPE_MASK) === CowOpType.Replace ? 1 << ((this.kind[i] >>> KIND_BITS_SHIFT) & 7) : 1;
  }

  /** Drops spare capacity so memory is exactly count ops. */
  trim(): void {
    if (this.count === this.kind.length) return;
    this.kind = this.kind.slice(0, this.count);
    this.newBlock = this.newBlock.slice(0, this.count);
    this.dataLength = this.dataLength.slice(0, this.count);
    this.source = this.source.slice(0, this.count);
    this.dataOffset = this.dataOffset.slice(0, this.count);
  }

  byteLength(): number {
    return this.kind.byteLength + this.newBlock.byteLength + this.dataLength.byteLength + this.source.byteLength + this.dataOffset.byteLength;
  }

  describe(i: number): string {
    return `${opTypeName(this.type(i))} new_block ${this.newBlock[i]}`;
  }

  private grow(): void {
    const capacity = Math.max(16, this.kind.length * 2);
    const grow = <T extends Uint8Array | Uint32Array | Float64Array>(old: T, make: (n: number) => T): T => {
      const next = make(capacity);
      next.set(old as never);
      return next;
    };
    this.kind = grow(this.kind, (n) => new Uint8Array(n));
    this.newBlock = grow(this.newBlock, (n) => new Uint32Array(n));
    this.dataLength = grow(this.dataLength, (n) => new Uint32Array(n));
    this.source = grow(this.source, (n) => new Float64Array(n));
    this.dataOffset = grow(this.dataOffset, (n) => new Float64Array(n));
  }
}

const KIND_TYPE_MASK = 0x0f;
const KIND_BITS_SHIFT = 4;
const KIND_RAW = 0x80;

/**
 * Maps a block of the new image to the op that produces it: op indices sorted by new_block (4 bytes
 * per op), searched by bisection. Building it rejects duplicate or overlapping targets, which
 * Android tolerates (first or last op wins depending on the reader) but which vab treats as corrupt.
 */
export class BlockIndex {
  readonly order: Uint32Array;

  constructor(readonly ops: CowOpTable, locate: (op: number) => CowWhere) {
    this.order = sortByNewBlock(ops);
    for (let k = 1; k < this.order.length; k++) {
      const previous = this.order[k - 1];
      const current = this.order[k];
      if (ops.newBlock[previous] + ops.span(previous) > ops.newBlock[current]) {
        const [first, second] = previous < current ? [previous, current] : [current, previous];
        throw corrupt(`${ops.describe(second)} targets a block that op ${first} (${ops.describe(first)}) already produces`, locate(second));
      }
    }
  }

  /** Index into `order` of the first op whose blocks end after `block` (ops.count if none). */
  firstEndingAfter(block: number): number {
    const { order, ops } = this;
    let lo = 0;
    let hi = order.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const op = order[mid];
      if (ops.newBlock[op] + ops.span(op) <= block) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** The op producing `block`, or -1 when the block is not in the COW (it reads from the base). */
  lookup(block: number): number {
    const k = this.firstEndingAfter(block);
    if (k === this.order.length) return -1;
    const op = this.order[k];
    return this.ops.newBlock[op] <= block ? op : -1;
  }
}

/** LSD radix sort of op indices by new_block, two 16-bit passes: linear time for millions of ops. */
function sortByNewBlock(ops: CowOpTable): Uint32Array {
  const n = ops.count;
  const keys = ops.newBlock;
  let sorted = true;
  for (let i = 1; i < n && sorted; i++) sorted = keys[i - 1] <= keys[i];
  const identity = new Uint32Array(n);
  for (let i = 0; i < n; i++) identity[i] = i;
  if (sorted) return identity;
  const scratch = new Uint32Array(n);
  const counts = new Uint32Array(65536);
  let from = identity;
  let to = scratch;
  for (const shift of [0, 16]) {
    counts.fill(0);
    for (let i = 0; i < n; i++) counts[(keys[from[i]] >>> shift) & 0xffff]++;
    let sum = 0;
    for (let d = 0; d < 65536; d++) {
      const c = counts[d];
      counts[d] = sum;
      sum += c;
    }
    for (let i = 0; i < n; i++) {
      const op = from[i];
      to[counts[(keys[op] >>> shift) & 0xffff]++] = op;
    }
    [from, to] = [to, from];
  }
  return from;
}
