import { createHash } from 'node:crypto';
import zlib from 'node:zlib';
import { CowReader } from '../../src/cow/reader';
import { SnapshotReader } from '../../src/cow/snapshot-reader';
import { CowOpType } from '../../src/cow/format';
import { Bytes, MemoryFile, pseudoRandom, textLike } from './helpers';

const BS = 4096;
const MiB2 = 2 * 1024 * 1024;

function v2Header(b: Bytes, clusterOps: number, numMergeOps: number, bufferSize: number): Bytes {
  return b.raw([0x21, 0x21, 0x57, 0x4f, 0x63, 0x77, 0x6f, 0x43]).u16(2).u16(0).u16(38).u16(84).u16(20).u32(BS).u32(clusterOps).u64(numMergeOps).u32(bufferSize);
}

/** One CowOperationV2: type, compression, data_length, new_block, source. */
function op(b: Bytes, type: number, compression: number, dataLength: number, newBlock: number, source: number | bigint): Bytes {
  return b.u8(type).u8(compression).u16(dataLength).u64(newBlock).u64(source);
}

function footerOp(b: Bytes, numOps: number): Bytes {
  return b.u8(0xff).u8(0).u16(64).u64(numOps * 20).u64(numOps).zeros(64);
}

/**
 * libsnapshot's only binary COW fixture, tools/testdata/cow_v2 (made by write_cow --write_legacy),
 * rebuilt byte for byte from its documented layout: cluster_ops 5, num_merge_ops 1, Copy(0, 5),
 * Replace(2), Label(1), Xor(50, old block 24 + 10 bytes), Zero(5..14), Label(2), footer.
 */
function aospCowV2(): { bytes: Buffer; data: Buffer } {
  const data = Buffer.alloc(BS);
  data.write('This is some data, believe it');
  const b = v2Header(new Bytes(), 5, 1, MiB2).zeros(MiB2);
  op(b, 1, 0, 0, 0, 5);
  op(b, 2, 0, BS, 2, 0x20008a);
  op(b, 4, 0, 0, 0, 1);
  op(b, 6, 0, BS, 50, 24 * BS + 10);
  op(b, 5, 0, 0, 0, 2 * BS); // cluster: data of this cluster follows
  b.raw(data).raw(data);
  for (const first of [5, 9]) {
    for (let i = 0; i < 4; i++) op(b, 3, 0, 0, first + i, 0);
    op(b, 5, 0, 0, 0, 0);
  }
  op(b, 3, 0, 0, 13, 0);
  op(b, 3, 0, 0, 14, 0);
  op(b, 4, 0, 0, 0, 2);
  footerOp(b, 18);
  return { bytes: b.build(), data };
}

describe('v2 reader on the AOSP test file', () => {
  const { bytes, data } = aospCowV2();

  it('rebuilds the exact bytes of AOSP tools/testdata/cow_v2', () => {
    expect(bytes.length).toBe(2105826);
    expect(createHash('sha256').update(bytes).digest('hex')).toBe('afd7288855d0d9afd55e87910cc1886d7e73b97876cc4d15b85303d8027c8e2f');
  });

  it('parses its ops, labels, footer and merge order', async () => {
    const cow = await CowReader.fromFile(new MemoryFile('cow_v2', bytes));
    expect(cow.header).toMatchObject({ majorVersion: 2, clusterOps: 5, numMergeOps: 1, bufferSize: MiB2, compressionAlgorithm: 0 });
    expect(cow.parsed.footer).toEqual({ opsSize: 360, numOps: 18 });
    expect(cow.parsed.lastLabel).toBe(2n);
    const ops = Array.from({ length: cow.ops.count }, (_, i) => [cow.ops.type(i), cow.ops.newBlock[i], cow.ops.source[i], cow.ops.dataOffset[i]]);
    expect(ops.slice(0, 3)).toEqual([
      [CowOpType.Copy, 0, 5, 0],
      [CowOpType.Replace, 2, 0x20008a, 0x20008a],
      [CowOpType.Xor, 50, 98314, 0x20108a],
    ]);
    expect(ops.slice(3).map((o) => o[1])).toEqual([5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
    const order = cow.mergeOrder();
    expect(order.orderedCount).toBe(2);
    expect(Array.from(order.ops, (o) => cow.ops.newBlock[o])).toEqual([0, 50, 2, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
    expect(cow.verifyMergeOrder()).toBeUndefined();
  });

  it('serves the new image over a base', async () => {
    const base = textLike(64 * BS, 3);
    const cow = await CowReader.fromFile(new MemoryFile('cow_v2', bytes));
    const snapshot = await SnapshotReader.over(cow, new MemoryFile('base', base));
    const out = Buffer.alloc(64 * BS);
    await snapshot.readBlocks(0, 64, out);
    const expected = Buffer.from(base);
    base.copy(expected, 0, 5 * BS, 6 * BS);
    data.copy(expected, 2 * BS);
    for (let i = 0; i < BS; i++) expected[50 * BS + i] = data[i] ^ base[98314 + i];
    expected.fill(0, 5 * BS, 15 * BS);
    expect(out.equals(expected)).toBe(true);
  });

  it('parses up to a label for a writer resuming there', async () => {
    const cow = await CowReader.fromFile(new MemoryFile('cow_v2', bytes), { label: 1n });
    expect(cow.ops.count).toBe(2);
    await expect(CowReader.fromFile(new MemoryFile('cow_v2', bytes), { label: 7n })).rejects.toThrow(/label 7 not found/);
  });

  it('requires a footer', async () => {
    await expect(CowReader.fromFile(new MemoryFile('cut', bytes.subarray(0, bytes.length - 84)))).rejects.toMatchObject({ code: 'ETRUNCATED' });
  });
});

describe('v2 reader on an unclustered, compressed stream', () => {
  /** A 4 KiB block that zlib level 9 compresses to exactly 4096 bytes (like AOSP's incompressible_block). */
  function exactlyOneBlockOfGz(): Buffer {
    for (let zeros = 0; zeros < 400; zeros++) {
      const block = pseudoRandom(BS, 7);
      block.fill(0, 0, zeros);
      if (zlib.deflateSync(block, { level: 9 }).length === BS) return block;
    }
    throw new Error('no such block in range');
  }

  function stream(compressionOf: (i: number) => number, blocks: Buffer[]) {
    // op | data | op | data ... (no sequence ops: unclustered streams cannot hold their data).
    const b = v2Header(new Bytes(), 0, 0, 0);
    op(b, 1, 0, 0, 20, 3);
    op(b, 1, 0, 0, 21, 20);
    blocks.forEach((block, i) => {
      const packed = compressionOf(i) === 1 ? zlib.deflateSync(block, { level: 9 }) : block;
      op(b, 2, compressionOf(i), packed.length, 30 + i, b.length + 20).raw(packed);
    });
    return footerOp(b, 2 + blocks.length).build();
  }

  it('always inflates gz data, even when it is exactly one block long (b/310191184)', async () => {
    const tricky = exactlyOneBlockOfGz();
    const blocks = [tricky, textLike(BS, 2)];
    const cow = await CowReader.fromFile(new MemoryFile('gz', stream(() => 1, blocks)));
    expect(cow.header.compressionAlgorithm).toBe(1);
    expect(cow.ops.dataLength[2]).toBe(BS);
    expect(cow.ops.isRaw(2)).toBe(false);
    const base = textLike(40 * BS, 9);
    const out = Buffer.alloc(40 * BS);
    await (await SnapshotReader.over(cow, new MemoryFile('base', base))).readBlocks(0, 40, out);
    expect(out.subarray(30 * BS, 31 * BS).equals(tricky)).toBe(true);
    expect(out.subarray(31 * BS, 32 * BS).equals(blocks[1])).toBe(true);
    expect(out.subarray(20 * BS, 21 * BS).equals(base.subarray(3 * BS, 4 * BS))).toBe(true);
    // Without sequence data copies merge in COW order: 20 first, then 21, which reads the overwritten 20.
    expect(cow.verifyMergeOrder()?.message).toMatch(/reads block 20/);
  });

  it('refuses a stream that mixes compression algorithms', async () => {
    const bytes = stream((i) => (i === 0 ? 1 : 4), [textLike(BS, 1), textLike(BS, 2)]);
    await expect(CowReader.fromFile(new MemoryFile('mixed', bytes))).rejects.toThrow(/mixes compression/);
  });
});

describe('v2 sequence ops', () => {
  it('take the merge order from sequence data in a cluster', async () => {
    const b = v2Header(new Bytes(), 4, 0, 0);
    const dataAt = 38 + 4 * 20;
    op(b, 7, 0, 8, 0, dataAt);
    op(b, 1, 0, 0, 21, 20);
    op(b, 1, 0, 0, 20, 3);
    op(b, 5, 0, 0, 0, 8);
    b.u32(21).u32(20);
    footerOp(b, 4);
    const cow = await CowReader.fromFile(new MemoryFile('seq', b.build()));
    expect(Array.from(cow.parsed.sequence)).toEqual([21, 20]);
    expect(Array.from(cow.mergeOrder().ops, (o) => cow.ops.newBlock[o])).toEqual([21, 20]);
    expect(cow.verifyMergeOrder()).toBeUndefined();
  });
});
