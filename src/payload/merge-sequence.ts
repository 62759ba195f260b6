import { CowMergeOperation, CowMergeType } from './manifest';
import type { CopyRun } from './partition-io';

/**
 * Orders the copies of an incremental update for a Virtual A/B merge. The merge rewrites the
 * base image in place, so a copy must run before any other copy overwrites the blocks it reads:
 * "A before B" whenever B's destination overlaps A's source. The runs are split so that no run
 * overlaps itself, sorted topologically (ready runs in destination order), and where the
 * constraints form a cycle a run is dropped from the sequence: its blocks are then written as
 * data instead of copied, as update_engine does.
 */

interface Node {
  run: CopyRun;
  /** Runs that must come after this one. */
  after: number[];
  before: number;
  done: boolean;
}

/** A run reading and writing overlapping ranges is split so each piece moves past itself. */
export function splitSelfOverlapping(run: CopyRun): CopyRun[] {
  const distance = Math.abs(run.src - run.dst);
  if (distance === 0 || distance >= run.blocks) return [run];
  const pieces: CopyRun[] = [];
  for (let at = 0; at < run.blocks; at += distance) {
    pieces.push({ src: run.src + at, dst: run.dst + at, blocks: Math.min(distance, run.blocks - at) });
  }
  return pieces;
}

function overlaps(aStart: number, aLen: number, bStart: number, bLen: number): boolean {
  return aStart < bStart + bLen && bStart < aStart + aLen;
}

/** The merge sequence (COW_COPY merge operations, in merge order) for a partition's copies. */
export function mergeSequence(copies: readonly CopyRun[]): CowMergeOperation[] {
  // A copy onto itself changes nothing during a merge: it needs no place in the sequence.
  const runs = copies.filter((c) => c.src !== c.dst).flatMap(splitSelfOverlapping);
  const nodes: Node[] = runs.map((run) => ({ run, after: [], before: 0, done: false }));
  const byDst = nodes.map((_, i) => i).sort((a, b) => runs[a].dst - runs[b].dst);
  const dstStarts = byDst.map((i) => runs[i].dst);
  nodes.forEach((node, a) => {
    // Runs whose destination overlaps this source: start at the first destination that could.
    const { src, blocks } = node.run;
    for (let k = lowerBound(dstStarts, src - maxBlocks(runs)); k < byDst.length && dstStarts[k] < src + blocks; k++) {
      const b = byDst[k];
      if (b !== a && overlaps(src, blocks, runs[b].dst, runs[b].blocks)) {
        node.after.push(b);
        nodes[b].before++;
      }
    }
  });
  const order: number[] = [];
  let remaining = nodes.length;
  while (remaining > 0) {
    const ready = byDst.filter((i) => !nodes[i].done && nodes[i].before === 0);
    const batch = ready.length > 0 ? ready : [pickCycleBreaker(nodes)];
    for (const i of batch) {
      if (nodes[i].before > 0 || nodes[i].done) continue; // a run the batch already freed waits its turn
      take(nodes, i);
      order.push(i);
      remaining--;
    }
    if (ready.length === 0) {
      const dropped = batch[0];
      if (!nodes[dropped].done) {
        take(nodes, dropped);
        remaining--;
      }
    }
  }
  return order.map((i) => ({
    type: CowMergeType.COW_COPY,
    src_extent: { start_block: runs[i].src, num_blocks: runs[i].blocks },
    dst_extent: { start_block: runs[i].dst, num_blocks: runs[i].blocks },
  }));
}

function take(nodes: Node[], i: number): void {
  nodes[i].done = true;
  for (const j of nodes[i].after) nodes[j].before--;
}

/** In a cycle, drop the run that holds back the most blocks of other runs. */
function pickCycleBreaker(nodes: Node[]): number {
  let best = -1;
  let bestWeight = -1;
  nodes.forEach((node, i) => {
    if (node.done) return;
    const weight = node.after.reduce((sum, j) => sum + (nodes[j].done ? 0 : nodes[j].run.blocks), 0);
    if (weight > bestWeight) {
      best = i;
      bestWeight = weight;
    }
  });
  return best;
}

function maxBlocks(runs: readonly CopyRun[]): number {
  return runs.reduce((m, r) => Math.max(m, r.blocks), 0);
}

function lowerBound(sorted: readonly number[], value: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid] < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Checks that merging `sequence` in order, in place, gives every copy the source content it
 * expects: no operation's source is overwritten by an earlier operation. Returns the first
 * violation, or undefined.
 */
export function findMergeHazard(sequence: readonly CowMergeOperation[]): string | undefined {
  const written: Array<{ start: number; blocks: number; index: number }> = [];
  for (let i = 0; i < sequence.length; i++) {
    const src = sequence[i].src_extent!;
    for (const w of written) {
      if (overlaps(src.start_block, src.num_blocks, w.start, w.blocks)) {
        return `merge op ${i} reads blocks [${src.start_block}, +${src.num_blocks}) already overwritten by merge op ${w.index}`;
      }
    }
    const dst = sequence[i].dst_extent!;
    written.push({ start: dst.start_block, blocks: dst.num_blocks, index: i });
  }
  return undefined;
}
