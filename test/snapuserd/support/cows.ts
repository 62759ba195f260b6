import { promises as fs } from 'node:fs';
import path from 'node:path';
import { CowWriter } from '../../../src/cow/writer';
import { Bytes, MemoryFile, pseudoRandom, textLike } from '../../cow/helpers';

export const BS = 4096;

export interface CowCase {
  base: Buffer;
  /** The new image, built here independently of any reader. */
  expected: Buffer;
  cowBytes: Buffer;
}

/**
 * A v3 COW with every op kind over a text-like base: Copy runs, an Xor against an unaligned source,
 * Replace runs whose lengths split into units of every size up to `factor`, Zero blocks.
 */
export async function v3Case(compression: string, factor: number): Promise<CowCase> {
  const blocks = 200;
  const base = textLike(blocks * BS, 21);
  const expected = Buffer.from(base);
  const cowFile = new MemoryFile('case.cow');
  const writer = await CowWriter.createOn(cowFile, { compression, compressionFactor: factor, maxBlocks: blocks, scratchSpace: false });
  await writer.addSequenceData([0, 1, 150]);
  await writer.addCopy(0, 100, 2);
  base.copy(expected, 0, 100 * BS, 102 * BS);
  const changed = Buffer.from(base.subarray(150 * BS, 151 * BS));
  changed.write('a changed line', 300);
  const xored = Buffer.alloc(BS);
  for (let i = 0; i < BS; i++) xored[i] = changed[i] ^ base[120 * BS + 10 + i];
  await writer.addXorBlocks(150, xored, 120, 10);
  changed.copy(expected, 150 * BS);
  for (const [start, length] of [[2, 1], [5, 20], [30, 64], [100, 37]] as const) {
    const data = Buffer.concat([textLike((length - 1) * BS, start + 7), pseudoRandom(BS, start)]);
    await writer.addRawBlocks(start, data);
    data.copy(expected, start * BS);
  }
  await writer.addZeroBlocks(160, 3);
  expected.fill(0, 160 * BS, 163 * BS);
  await writer.addLabel(1n);
  await writer.finalize();
  return { base, expected, cowBytes: cowFile.contents() };
}

/**
 * An unclustered v2 stream (no compression): Copy 20 ← 3, Replace 30 and 31, Xor 40 against old
 * block 24 + 10 bytes, Zero 41, then the footer. Laid out by hand from the v2 record format.
 */
export function v2Case(blocks = 64): CowCase {
  const base = textLike(blocks * BS, 5);
  const expected = Buffer.from(base);
  const b = new Bytes()
    .raw([0x21, 0x21, 0x57, 0x4f, 0x63, 0x77, 0x6f, 0x43])
    .u16(2) // major
    .u16(0) // minor
    .u16(38) // header_size
    .u16(84) // footer_size
    .u16(20) // op_size
    .u32(BS)
    .u32(0) // cluster_ops: unclustered
    .u64(0) // num_merge_ops
    .u32(0); // buffer_size
  const op = (type: number, dataLength: number, newBlock: number, source: number): Bytes => b.u8(type).u8(0).u16(dataLength).u64(newBlock).u64(source);
  op(1, 0, 20, 3);
  base.copy(expected, 20 * BS, 3 * BS, 4 * BS);
  for (const block of [30, 31]) {
    const data = pseudoRandom(BS, block);
    op(2, BS, block, b.length + 20).raw(data);
    data.copy(expected, block * BS);
  }
  const changed = Buffer.from(base.subarray(40 * BS, 41 * BS));
  changed.write('xor in v2', 17);
  const xored = Buffer.alloc(BS);
  for (let i = 0; i < BS; i++) xored[i] = changed[i] ^ base[24 * BS + 10 + i];
  op(6, BS, 40, 24 * BS + 10);
  b.raw(xored);
  changed.copy(expected, 40 * BS);
  op(3, 0, 41, 0);
  expected.fill(0, 41 * BS, 42 * BS);
  b.u8(0xff).u8(0).u16(64).u64(5 * 20).u64(5).zeros(64);
  return { base, expected, cowBytes: b.build() };
}

/** Writes a case's base and COW under dir; returns their absolute paths. */
export async function writeCase(dir: string, name: string, c: CowCase): Promise<{ base: string; cow: string }> {
  const base = path.join(dir, `${name}.img`);
  const cow = path.join(dir, `${name}.cow`);
  await fs.writeFile(base, c.base);
  await fs.writeFile(cow, c.cowBytes);
  return { base, cow };
}
