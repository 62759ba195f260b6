import { CowReader } from '../../src/cow/reader';
import { CowWriter } from '../../src/cow/writer';
import { SnapshotReader } from '../../src/cow/snapshot-reader';
import { isVabError } from '../../src/util/errors';
import { Disk, MemoryFile, PowerCut, textLike } from './helpers';

const BS = 4096;
const BLOCKS = 80;
const CHUNKS = 6;
/** A copy, one two-block replace op (8 KiB units), a zero and an xor. */
const OPS_PER_CHUNK = 4;
const base = textLike(BLOCKS * BS, 21);
const options = { compression: 'lz4', compressionFactor: 8192, maxBlocks: BLOCKS, scratchSpace: false, batchBlocks: 1 };

/** Chunk i (1-based) of an update: a copy, a two-block replace, a zero and an xor; label i follows it. */
async function writeChunk(writer: CowWriter, i: number): Promise<void> {
  const at = i * 10;
  await writer.addCopy(at, at + 5);
  await writer.addRawBlocks(at + 1, textLike(2 * BS, i));
  await writer.addZeroBlocks(at + 3, 1);
  await writer.addXorBlocks(at + 4, textLike(BS, 100 + i), at + 4, 0);
  await writer.addLabel(BigInt(i));
}

const sequence = Array.from({ length: CHUNKS }, (_, k) => [(k + 1) * 10, (k + 1) * 10 + 4]).flat();

async function writeFrom(writer: CowWriter, first: number): Promise<void> {
  for (let i = first; i <= CHUNKS; i++) await writeChunk(writer, i);
  await writer.finalize();
}

/** The image a complete COW yields, computed from the same chunk definitions. */
function expectedImage(): Buffer {
  const out = Buffer.from(base);
  for (let i = 1; i <= CHUNKS; i++) {
    const at = i * 10;
    base.copy(out, at * BS, (at + 5) * BS, (at + 6) * BS);
    textLike(2 * BS, i).copy(out, (at + 1) * BS);
    out.fill(0, (at + 3) * BS, (at + 4) * BS);
    const x = textLike(BS, 100 + i);
    for (let j = 0; j < BS; j++) out[(at + 4) * BS + j] = x[j] ^ base[(at + 4) * BS + j];
  }
  return out;
}

describe('resuming a COW writer after a crash at every write', () => {
  const expected = expectedImage();
  let totalWrites = 0;

  beforeAll(async () => {
    const disk = new Disk();
    const file = new MemoryFile('count.cow', Buffer.alloc(0), disk);
    const writer = await CowWriter.createOn(file, options);
    await writer.addSequenceData(sequence);
    await writeFrom(writer, 1);
    totalWrites = disk.writes;
  });

  it.each([
    ['losing unsynced writes', false],
    ['keeping unsynced writes', true],
  ])('gives the full image when %s', async (_name, keepUnsynced) => {
    expect(totalWrites).toBeGreaterThan(20);
    for (let cut = 1; cut <= totalWrites; cut++) {
      const disk = new Disk();
      disk.cutAt = cut;
      const file = new MemoryFile('c.cow', Buffer.alloc(0), disk);
      await expect(
        (async () => {
          const writer = await CowWriter.createOn(file, options);
          await writer.addSequenceData(sequence);
          await writeFrom(writer, 1);
        })(),
      ).rejects.toBeInstanceOf(PowerCut);

      // Reboot: resume from the newest durable label, or start again if there is none.
      const recovered = new MemoryFile('c.cow', file.afterCrash(keepUnsynced));
      let writer: CowWriter;
      let next = 1;
      try {
        writer = await CowWriter.resumeOn(recovered);
        const header = writer.headerSnapshot;
        expect(header.resumePointCount).toBeLessThanOrEqual(4);
        next = Number(await newestLabel(recovered)) + 1;
        expect(writer.opCount).toBe((next - 1) * OPS_PER_CHUNK);
      } catch (err) {
        if (!isVabError(err)) throw err;
        writer = await CowWriter.createOn(recovered, options);
        await writer.addSequenceData(sequence);
      }
      await writeFrom(writer, next);

      const cow = await CowReader.fromFile(recovered);
      expect([cut, cow.ops.count]).toEqual([cut, CHUNKS * OPS_PER_CHUNK]);
      expect(cow.verifyMergeOrder()).toBeUndefined();
      const image = Buffer.alloc(BLOCKS * BS);
      await (await SnapshotReader.over(cow, new MemoryFile('base', base), BLOCKS)).readBlocks(0, BLOCKS, image);
      expect([cut, image.equals(expected)]).toEqual([cut, true]);
    }
  });

  it('keeps at most four resume points, the newest last', async () => {
    const file = new MemoryFile('labels.cow');
    const writer = await CowWriter.createOn(file, options);
    await writer.addSequenceData(sequence);
    await writeFrom(writer, 1);
    const cow = await CowReader.fromFile(file);
    expect(cow.parsed.resumePoints).toEqual([3n, 4n, 5n, 6n].map((label) => ({ label, opIndex: Number(label) * OPS_PER_CHUNK })));
    expect(cow.header.resumePointCount).toBe(4);
  });

  it('discards what was written after the label it resumes from', async () => {
    const file = new MemoryFile('undo.cow');
    const writer = await CowWriter.createOn(file, options);
    await writer.addSequenceData(sequence);
    await writeChunk(writer, 1);
    await writeChunk(writer, 2);
    await writer.addZeroBlocks(70, 3); // after label 2: to be discarded
    await writer.finalize();
    const resumed = await CowWriter.resumeOn(file, { label: 1n });
    expect(resumed.opCount).toBe(OPS_PER_CHUNK);
    await writeFrom(resumed, 2);
    const cow = await CowReader.fromFile(file);
    expect(cow.index.lookup(70)).toBe(-1);
    expect(cow.ops.count).toBe(CHUNKS * OPS_PER_CHUNK);
  });
});

async function newestLabel(file: MemoryFile): Promise<bigint> {
  const header = Buffer.alloc(78);
  await file.read(header, 0, 78, 0);
  const count = Math.min(header.readUInt32LE(46), header.readUInt32LE(50));
  const resumeAt = 78 + header.readUInt32LE(34) + 4 * Number(header.readBigUInt64LE(38));
  const last = Buffer.alloc(16);
  await file.read(last, 0, 16, resumeAt + (count - 1) * 16);
  return last.readBigUInt64LE(0);
}
