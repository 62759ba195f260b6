import { corrupt } from './errors';
import { CowOpType, isOrderedOp } from './format';
import type { BlockIndex, CowOpTable } from './op-table';
import type { ParsedCow } from './parsed';
import { v2OrderedBlocks } from './parser-v2';

/**
 * The order in which a merge applies ops to the base, derived as CowReader::PrepMergeOps does for
 * the user-space merge:
 *
 *  1. the ordered part: the sequence data (v3 sequence area, v2 sequence ops) if there is any;
 *     without it, every op in COW order for v3, and every Copy/Xor op in COW order for v2;
 *  2. then every data op the ordered part does not name, by ascending new_block.
 *
 * Every sequence entry must name the first block of some op (else the COW is corrupt, test
 * MissingSeqOp). The first `num_merge_ops` entries are already merged.
 */
export interface MergeOrder {
  /** Op indices (into the op table) in merge order. */
  readonly ops: Uint32Array;
  /** How many entries at the front come from the ordered part. */
  readonly orderedCount: number;
}

export function computeMergeOrder(parsed: ParsedCow, index: BlockIndex, file?: string): MergeOrder {
  const { ops } = parsed;
  if (parsed.header.majorVersion >= 3 && parsed.sequence.length === 0) {
    // Every op in COW order: each names its own block, which the block index already proved unique.
    const order = new Uint32Array(ops.count);
    for (let op = 0; op < order.length; op++) order[op] = op;
    return { ops: order, orderedCount: order.length };
  }
  const ordered = orderedBlocks(parsed);
  const used = new Uint8Array(ops.count);
  const order = new Uint32Array(ops.count);
  let n = 0;
  for (let k = 0; k < ordered.length; k++) {
    const block = ordered[k];
    const op = index.lookup(block);
    if (op < 0 || ops.newBlock[op] !== block) throw corrupt(`sequence entry ${k} names block ${block}, which no op starts at`, { file, offset: sequenceEntryOffset(parsed, k) });
    if (used[op]) throw corrupt(`sequence entry ${k} names block ${block} a second time`, { file, offset: sequenceEntryOffset(parsed, k) });
    used[op] = 1;
    order[n++] = op;
  }
  const orderedCount = n;
  for (let k = 0; k < index.order.length; k++) {
    const op = index.order[k];
    if (!used[op]) order[n++] = op;
  }
  return { ops: order, orderedCount };
}

function orderedBlocks(parsed: ParsedCow): Uint32Array {
  // v3 without sequence data never gets here (computeMergeOrder's identity case).
  return parsed.header.majorVersion < 3 ? v2OrderedBlocks(parsed.ops, parsed.sequence) : parsed.sequence;
}

function sequenceEntryOffset(parsed: ParsedCow, k: number): number | undefined {
  const h = parsed.header;
  return h.majorVersion >= 3 && parsed.sequence.length > 0 ? h.headerSize + h.bufferSize + 4 * k : undefined;
}

export interface MergeOrderProblem {
  /** Position in the merge order. */
  position: number;
  op: number;
  message: string;
}

/**
 * Checks that merging in this order in place is safe, as CowReader::VerifyMergeOps does: every
 * Copy/Xor op comes before every Replace/Zero op, and no Copy/Xor op reads a block (both blocks,
 * for a misaligned Xor) that an earlier op in the order has already overwritten.
 */
export function verifyMergeOrder(order: MergeOrder, ops: CowOpTable, blockSize: number): MergeOrderProblem | undefined {
  const overwritten = new Map<number, number>();
  let firstUnordered = -1;
  for (let position = 0; position < order.ops.length; position++) {
    const op = order.ops[position];
    const type = ops.type(op);
    if (!isOrderedOp(type)) {
      if (firstUnordered < 0) firstUnordered = position;
      continue;
    }
    if (firstUnordered >= 0) {
      return { position, op, message: `${ops.describe(op)} comes after ${ops.describe(order.ops[firstUnordered])}: ordered ops must all come first` };
    }
    const byteOffset = type === CowOpType.Copy ? ops.source[op] * blockSize : ops.source[op];
    const block = Math.floor(byteOffset / blockSize);
    const sources = byteOffset % blockSize === 0 ? [block] : [block, block + 1];
    for (const source of sources) {
      const writer = overwritten.get(source);
      if (writer !== undefined) {
        return { position, op, message: `${ops.describe(op)} reads block ${source}, which op ${writer} (${ops.describe(writer)}) already overwrote` };
      }
    }
    overwritten.set(ops.newBlock[op], op);
  }
  return undefined;
}
