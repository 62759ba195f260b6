import fc from 'fast-check';
import { CowMergeOperation } from '../../src/payload/manifest';
import { findMergeHazard, mergeSequence, splitSelfOverlapping } from '../../src/payload/merge-sequence';
import type { CopyRun } from '../../src/payload/partition-io';

/**
 * Merges `sequence` in place over a base whose block i holds the value i, and reports every
 * destination block that did not receive the source block its copy asked for. Independent of
 * findMergeHazard: it simulates the merge instead of reasoning about overlaps.
 */
function simulate(sequence: readonly CowMergeOperation[], size: number): string[] {
  const base = Array.from({ length: size }, (_, i) => i);
  const wrong: string[] = [];
  for (const op of sequence) {
    const { start_block: src, num_blocks: n } = op.src_extent!;
    const dst = op.dst_extent!.start_block;
    const read = base.slice(src, src + n); // a merge op reads its whole source before writing
    read.forEach((value, i) => {
      if (value !== src + i) wrong.push(`block ${dst + i} got ${value}, wanted ${src + i}`);
      base[dst + i] = value;
    });
  }
  return wrong;
}

const run = (src: number, dst: number, blocks: number): CopyRun => ({ src, dst, blocks });
const pairs = (seq: CowMergeOperation[]) => seq.map((op) => [op.src_extent!.start_block, op.dst_extent!.start_block, op.dst_extent!.num_blocks]);

describe('merge sequence', () => {
  it('merges a copy before another copy overwrites its source', () => {
    // A moves 0..9 to 10..19; B moves 10..19 to 20..29: B must read 10..19 before A writes there.
    const seq = mergeSequence([run(0, 10, 10), run(10, 20, 10)]);
    expect(pairs(seq)).toEqual([
      [10, 20, 10],
      [0, 10, 10],
    ]);
    expect(simulate(seq, 30)).toEqual([]);
  });

  it('splits a run that overlaps itself and orders the pieces by direction', () => {
    expect(splitSelfOverlapping(run(13, 10, 10))).toEqual([run(13, 10, 3), run(16, 13, 3), run(19, 16, 3), run(22, 19, 1)]);
    const down = mergeSequence([run(13, 10, 10)]);
    expect(pairs(down).map((p) => p[1])).toEqual([10, 13, 16, 19]);
    expect(simulate(down, 30)).toEqual([]);
    const up = mergeSequence([run(10, 13, 10)]);
    expect(pairs(up).map((p) => p[1])).toEqual([22, 19, 16, 13]);
    expect(simulate(up, 30)).toEqual([]);
  });

  it('leaves copies onto themselves out, and drops one copy of a cycle', () => {
    expect(mergeSequence([run(5, 5, 4)])).toEqual([]);
    const swap = mergeSequence([run(0, 10, 5), run(10, 0, 5)]);
    expect(swap).toHaveLength(1);
    expect(simulate(swap, 20)).toEqual([]);
  });

  it('gives sequences that merge correctly for random copies (property)', () => {
    const size = 64;
    const copies = fc
      .array(fc.record({ src: fc.nat(size - 8), dst: fc.nat(size - 8), blocks: fc.integer({ min: 1, max: 8 }) }), { maxLength: 12 })
      // Destinations are disjoint within a partition: each new block is written once.
      .map((runs) => runs.filter((r, i) => runs.slice(0, i).every((o) => r.dst + r.blocks <= o.dst || o.dst + o.blocks <= r.dst)));
    fc.assert(
      fc.property(copies, (runs) => {
        const seq = mergeSequence(runs);
        expect(simulate(seq, size)).toEqual([]);
        expect(findMergeHazard(seq)).toBeUndefined();
        // Every block in the sequence belongs to one of the copies, at its right source.
        for (const op of seq) {
          const dst = op.dst_extent!.start_block;
          const owner = runs.find((r) => dst >= r.dst && dst < r.dst + r.blocks)!;
          expect(op.src_extent!.start_block - owner.src).toBe(dst - owner.dst);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('keeps every copy when the copies form no cycle', () => {
    const runs = [run(0, 40, 8), run(8, 48, 8), run(40, 100, 4), run(60, 30, 6)];
    const seq = mergeSequence(runs);
    expect(seq.reduce((n, op) => n + op.dst_extent!.num_blocks, 0)).toBe(26);
    expect(simulate(seq, 120)).toEqual([]);
  });

  it('findMergeHazard names the op that reads overwritten blocks', () => {
    const bad: CowMergeOperation[] = [
      { src_extent: { start_block: 0, num_blocks: 4 }, dst_extent: { start_block: 10, num_blocks: 4 } },
      { src_extent: { start_block: 12, num_blocks: 4 }, dst_extent: { start_block: 20, num_blocks: 4 } },
    ];
    expect(findMergeHazard(bad)).toBe('merge op 1 reads blocks [12, +4) already overwritten by merge op 0');
    expect(simulate(bad, 30)).not.toEqual([]);
  });
});
