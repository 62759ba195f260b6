import { CowMergeType, OpType, PartitionUpdate } from '../../payload/manifest';
import { findMergeHazard } from '../../payload/merge-sequence';
import { VabError } from '../../util/errors';

/**
 * What the manifest's merge_operations tell a COW writer (update_engine's VABC writer): blocks
 * written as Copy ops up front, blocks written as Xor ops when their diff op is applied, and the
 * merge order of both (the COW's sequence data).
 */
export interface CowMergePlan {
  /** new block → old block, for COW_COPY blocks (written as Copy ops before any other op). */
  copies: Map<number, number>;
  /** new block → byte offset in the old image its Xor reads from, for COW_XOR blocks. */
  xors: Map<number, number>;
  /** Copy and Xor blocks in merge order. */
  sequence: number[];
  /** Why the merge operations were not used (their blocks are then written as data). */
  dropped?: string;
}

/**
 * Expands merge_operations block by block, each run in the direction that reads a block before the
 * run overwrites it, and checks them against the ops: a COW_COPY block must be the destination of
 * a SOURCE_COPY from the same old block, a COW_XOR block the destination of a diff op. Anything
 * else is a corrupt payload. A sequence that would read blocks an earlier merge op overwrote
 * (a hazard) is not used at all: every block is then written as data, which merges safely.
 */
export function cowMergePlan(partition: PartitionUpdate, blockSize: number, file: string): CowMergePlan {
  const name = partition.partition_name;
  const copySource = new Map<number, number>();
  const diffBlocks = new Set<number>();
  for (const op of partition.operations) {
    if (op.type === OpType.SOURCE_COPY) {
      const src = op.src_extents.flatMap((e) => range(e.start_block, e.num_blocks));
      const dst = op.dst_extents.flatMap((e) => range(e.start_block, e.num_blocks));
      dst.forEach((block, i) => copySource.set(block, src[i]));
    } else if (op.type === OpType.SOURCE_BSDIFF || op.type === OpType.BROTLI_BSDIFF) {
      for (const e of op.dst_extents) for (const block of range(e.start_block, e.num_blocks)) diffBlocks.add(block);
    }
  }
  const plan: CowMergePlan = { copies: new Map(), xors: new Map(), sequence: [] };
  const merge = partition.merge_operations ?? [];
  merge.forEach((m, index) => {
    const where = `partition ${name} merge operation ${index}`;
    if (!m.src_extent || !m.dst_extent) throw new VabError('ECORRUPT', `${where} lacks its extents`, { file });
    const { start_block: src, num_blocks: n } = m.src_extent;
    const dst = m.dst_extent.start_block;
    if (m.dst_extent.num_blocks !== n && m.type !== CowMergeType.COW_XOR) throw new VabError('ECORRUPT', `${where}: ${n} source blocks for ${m.dst_extent.num_blocks} destination blocks`, { file });
    const count = m.dst_extent.num_blocks;
    // Moving up over itself: the highest block first, so each is read before it is overwritten.
    const blocks = dst > src ? range(0, count).reverse() : range(0, count);
    for (const i of blocks) {
      const block = dst + i;
      if (plan.copies.has(block) || plan.xors.has(block)) throw new VabError('ECORRUPT', `${where} names block ${block} a second time`, { file });
      if (m.type === CowMergeType.COW_XOR) {
        if (!diffBlocks.has(block)) throw new VabError('ECORRUPT', `${where}: block ${block} is not written by a diff operation`, { file });
        plan.xors.set(block, (src + i) * blockSize + (m.src_offset ?? 0));
      } else if (m.type === CowMergeType.COW_COPY || m.type === undefined) {
        if (copySource.get(block) !== src + i) throw new VabError('ECORRUPT', `${where}: block ${block} is not a SOURCE_COPY from block ${src + i}`, { file });
        if (src + i === block) continue; // copied onto itself: nothing changes
        plan.copies.set(block, src + i);
      } else {
        continue; // COW_REPLACE: data, as any other
      }
      plan.sequence.push(block);
    }
  });
  const hazard = findMergeHazard(merge.filter((m) => m.type !== CowMergeType.COW_REPLACE));
  if (hazard) return { copies: new Map(), xors: new Map(), sequence: [], dropped: hazard };
  return plan;
}

function range(start: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => start + i);
}
