import type { RandomAccessFile } from './file';
import { readExactly } from './file';
import { CowOpType } from './format';
import { readZeroPadded, settleAll } from './materialize';
import type { CowReader } from './reader';

/**
 * How the merge writes the base: in few, large writes. Both writers may span short gaps between
 * the blocks they merge, reading those blocks back from the base and writing them unchanged.
 */

/** Replace/Zero ops whose blocks follow each other are written to the base together, up to this much. */
export const MAX_RUN_BYTES = 1 << 20;

/**
 * Blocks between two Replace/Zero ops that a run may span: they are read from the base and written
 * back unchanged, which turns many small writes into a few large ones. Rewriting a block with the
 * bytes it holds is harmless at any moment: only the merge writes the base, and the merge order
 * keeps every block it has not reached yet as it was.
 */
const MAX_GAP_BLOCKS = 8;

/**
 * Writes a batch of Replace/Zero ops to the base in runs of up to 1 MiB: ops close to each other
 * share one write, the blocks between them read back from the base first; payloads are read from
 * the COW a window at a time (they usually lie back to back in its data area).
 */
export async function writeReplaceRuns(cow: CowReader, base: RandomAccessFile, ops: Uint32Array, runBuffer: Buffer, window: { buffer: Buffer; start: number; end: number }): Promise<void> {
  const bs = cow.blockSize;
  const { ops: table } = cow;
  let run = runBuffer;
  let runStart = -1;
  let runBytes = 0;
  /** How much of the run buffer holds the base's current bytes (read once, at the run's first gap). */
  let baseLoaded = 0;
  // Runs are written while the next ones are built; each gets a buffer of its own.
  const writes: Promise<void>[] = [];
  const flush = async (): Promise<void> => {
    if (runBytes > 0) {
      writes.push(base.write(run, 0, runBytes, runStart * bs));
      run = Buffer.allocUnsafe(run.length);
    }
    runBytes = 0;
    baseLoaded = 0;
  };
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i];
    const size = cow.unitSize(op);
    const at = table.newBlock[op] * bs;
    const gap = at - (runStart * bs + runBytes);
    if (runBytes > 0 && (gap < 0 || gap > MAX_GAP_BLOCKS * bs || runBytes + gap + size > run.length)) await flush();
    if (runBytes === 0) runStart = table.newBlock[op];
    else if (gap > 0) {
      if (baseLoaded < runBytes + gap) {
        // Op data overwrites what it covers; only the gaps need these bytes.
        await readZeroPadded(base, run, runBytes, run.length - runBytes, runStart * bs + runBytes);
        baseLoaded = run.length;
      }
      runBytes += gap;
    }
    const dst = run.subarray(runBytes, runBytes + size);
    if (table.type(op) === CowOpType.Zero) dst.fill(0);
    else cow.expandPayload(op, await payloadBytes(cow, op, ops, i, window), dst);
    runBytes += size;
  }
  await flush();
  await settleAll(writes);
}

/** Op's payload, from a window of the data area read once for it and the ops after it. */
async function payloadBytes(cow: CowReader, op: number, ops: Uint32Array, i: number, window: { buffer: Buffer; start: number; end: number }): Promise<Buffer> {
  const { ops: table } = cow;
  const start = table.dataOffset[op];
  const length = table.dataLength[op];
  if (start < window.start || start + length > window.end) {
    let end = start + length;
    for (let j = i + 1; j < ops.length && table.dataOffset[ops[j]] === end && end + table.dataLength[ops[j]] - start <= window.buffer.length; j++) end += table.dataLength[ops[j]];
    if (end - start > window.buffer.length) window.buffer = Buffer.allocUnsafe(end - start);
    await readExactly(cow.file, window.buffer, 0, end - start, start, 'op data', op);
    window.start = start;
    window.end = end;
  }
  return window.buffer.subarray(start - window.start, start - window.start + length);
}

/**
 * Writes a window's blocks to the base, sorted by target block, in runs of up to 1 MiB that may
 * span short gaps (read back from the base first and rewritten unchanged, see MAX_GAP_BLOCKS).
 */
export async function writeBlocks(base: RandomAccessFile, cow: CowReader, ops: Uint32Array, blocks: Buffer): Promise<void> {
  const bs = cow.blockSize;
  const byBlock = Array.from(ops.keys()).sort((a, b) => cow.ops.newBlock[ops[a]] - cow.ops.newBlock[ops[b]]);
  const writes: Promise<void>[] = [];
  const maxRunBlocks = Math.max(1, Math.floor(MAX_RUN_BYTES / bs));
  for (let i = 0; i < byBlock.length; ) {
    const first = cow.ops.newBlock[ops[byBlock[i]]];
    let j = i + 1;
    let last = first;
    while (j < byBlock.length) {
      const next = cow.ops.newBlock[ops[byBlock[j]]];
      if (next - last - 1 > MAX_GAP_BLOCKS || next - first + 1 > maxRunBlocks) break;
      last = next;
      j++;
    }
    if (j === i + 1) {
      writes.push(base.write(blocks, byBlock[i] * bs, bs, first * bs));
    } else {
      const span = Buffer.allocUnsafe((last - first + 1) * bs);
      if (last - first + 1 > j - i) await readZeroPadded(base, span, 0, span.length, first * bs);
      for (let k = i; k < j; k++) blocks.copy(span, (cow.ops.newBlock[ops[byBlock[k]]] - first) * bs, byBlock[k] * bs, (byBlock[k] + 1) * bs);
      writes.push(base.write(span, 0, span.length, first * bs));
    }
    i = j;
    // Bounded: at most a few writes in flight.
    if (writes.length >= 16) await settleAll(writes.splice(0));
  }
  await settleAll(writes);
}

