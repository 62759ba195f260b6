import fc from 'fast-check';
import { CowReader } from '../../src/cow/reader';
import { CowWriter } from '../../src/cow/writer';
import { SnapshotReader } from '../../src/cow/snapshot-reader';
import { dataOffset, opOffset, sequenceOffset } from '../../src/cow/format';
import { isVabError } from '../../src/util/errors';
import { Bytes, MemoryFile, textLike } from './helpers';

const BS = 4096;

/** A small COW (no scratch) that ends with a compressed payload: every cut shortens something. */
async function smallCow(compression = 'zstd'): Promise<Buffer> {
  const file = new MemoryFile('small.cow');
  const writer = await CowWriter.createOn(file, { compression, compressionFactor: 8192, maxBlocks: 32, opCountMax: 6, scratchSpace: false });
  await writer.addSequenceData([4, 6]);
  await writer.addCopy(4, 9);
  await writer.addXorBlocks(6, textLike(BS, 1), 2, 0);
  await writer.addZeroBlocks(10, 2);
  await writer.addLabel(5n);
  await writer.addRawBlocks(12, textLike(3 * BS, 2));
  await writer.finalize();
  return file.contents();
}

/** Opens and reads everything; returns the VabError code, or 'ok'. Any other error fails the test. */
async function outcome(bytes: Buffer): Promise<string> {
  try {
    const cow = await CowReader.fromFile(new MemoryFile('bad.cow', bytes));
    const snapshot = await SnapshotReader.over(cow, new MemoryFile('base', textLike(32 * BS, 3)), 32);
    await snapshot.readBlocks(0, 32, Buffer.alloc(32 * BS));
    return 'ok';
  } catch (err) {
    if (!isVabError(err)) throw err;
    expect(err.message).toMatch(/^bad\.cow/);
    return err.code;
  }
}

describe('malformed COWs are typed errors naming file, offset and op', () => {
  let good: Buffer;
  beforeAll(async () => {
    good = await smallCow();
  });

  it('reads the intact file', async () => {
    expect(await outcome(good)).toBe('ok');
  });

  it('refuses a truncation at every offset', async () => {
    for (let cut = 0; cut < good.length; cut++) {
      const code = await outcome(good.subarray(0, cut));
      expect([cut, code]).toEqual([cut, expect.stringMatching(/^(ETRUNCATED|ECORRUPT)$/)]);
    }
  });

  const h = { headerSize: 78, bufferSize: 0, sequenceDataCount: 2, resumePointMax: 4, opCountMax: 6 } as never;
  const op = (i: number): number => opOffset(i, h);

  it.each([
    ['bad magic', (b: Buffer) => b.writeUInt32LE(0, 0), 'ECORRUPT', 0, undefined],
    ['unknown version', (b: Buffer) => b.writeUInt16LE(4, 8), 'EUNSUPPORTED', 8, undefined],
    ['op_count above op_count_max', (b: Buffer) => b.writeUInt32LE(7, 54), 'ECORRUPT', 54, undefined],
    ['a sequence area past the end', (b: Buffer) => b.writeUInt32LE(1 << 30, 38), 'ETRUNCATED', undefined, undefined],
    ['an unknown compression', (b: Buffer) => b.writeUInt32LE(9, 70), 'EUNSUPPORTED', 70, undefined],
    ['an unknown op type', (b: Buffer) => b.writeUInt8(0x50, op(2) + 15), 'ECORRUPT', op(2), 2],
    ['reserved source bits', (b: Buffer) => b.writeUInt8(0x01, op(0) + 14), 'ECORRUPT', op(0), 0],
    ['a replace op whose data is elsewhere', (b: Buffer) => b.writeUInt32LE(b.readUInt32LE(op(4) + 8) + 1, op(4) + 8), 'ECORRUPT', op(4), 4],
    ['a copy op with data', (b: Buffer) => b.writeUInt32LE(5, op(0)), 'ECORRUPT', op(0), 0],
    ['two ops for one block', (b: Buffer) => b.writeUInt32LE(4, op(2) + 4), 'ECORRUPT', op(2), 2],
    ['a sequence entry no op starts at', (b: Buffer) => b.writeUInt32LE(5, sequenceOffset(h)), 'ECORRUPT', sequenceOffset(h), undefined],
    ['a resume point past op_count_max', (b: Buffer) => b.writeUInt32LE(99, sequenceOffset(h) + 8 + 8), 'ECORRUPT', sequenceOffset(h) + 8, undefined],
  ])('%s', async (_name, damage, code, offset, opIndex) => {
    const bad = Buffer.from(good);
    damage(bad);
    const error = await CowReader.fromFile(new MemoryFile('bad.cow', bad)).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(error).toMatchObject({ code, file: 'bad.cow' });
    if (offset !== undefined) expect(error).toMatchObject({ offset });
    if (opIndex !== undefined) expect(error).toMatchObject({ op: opIndex });
  });

  it('reports a payload that decompresses to the wrong size when it is read', async () => {
    const bad = Buffer.from(good);
    const replaceData = dataOffset(h) + bad.readUInt32LE(op(1)); // after the xor payload
    bad.fill(0x41, replaceData + 4, replaceData + 12);
    expect(await outcome(bad)).toBe('ECORRUPT');
    const cow = await CowReader.fromFile(new MemoryFile('bad.cow', bad));
    const snapshot = await SnapshotReader.over(cow, new MemoryFile('base', Buffer.alloc(32 * BS)), 32);
    await expect(snapshot.readBlocks(12, 1, Buffer.alloc(BS))).rejects.toMatchObject({ code: 'ECORRUPT', op: 4, offset: replaceData });
    await expect(snapshot.readBlocks(11, 1, Buffer.alloc(BS))).resolves.toBeUndefined();
  });

  it('rejects ops outside the devices it is used with', async () => {
    const cow = await CowReader.fromFile(new MemoryFile('small.cow', good));
    expect(() => cow.checkRanges({ deviceBlocks: 14 })).toThrow(/past the end of the 14-block device/);
    expect(() => cow.checkRanges({ sourceBytes: 9 * BS })).toThrow(expect.objectContaining({ op: 0 }));
  });

  it('survives random corruption: every outcome is success or a typed error', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(fc.nat(good.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }), async (edits) => {
        const bad = Buffer.from(good);
        for (const [at, value] of edits) bad[at] = value;
        await outcome(bad);
      }),
      { numRuns: 300 },
    );
  });

  it('names the op for an out-of-range v2 value', async () => {
    const b = new Bytes().raw([0x21, 0x21, 0x57, 0x4f, 0x63, 0x77, 0x6f, 0x43]).u16(2).u16(0).u16(38).u16(84).u16(20).u32(BS).u32(0).u64(0).u32(0);
    b.u8(1).u8(0).u16(0).u64(1n << 33n).u64(1);
    await expect(CowReader.fromFile(new MemoryFile('bad.cow', b.build()))).rejects.toMatchObject({ code: 'ECORRUPT', offset: 38, op: 0 });
  });
});
