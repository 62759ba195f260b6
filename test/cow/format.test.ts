import { Bytes } from './helpers';
import { decodeHeader, emptyHeader, encodeHeaderV3 } from '../../src/cow/header';
import { decodeOpV2, decodeOpV3, decodeResumePoint, encodeOpV2, encodeOpV3, encodeResumePoint } from '../../src/cow/op';
import { CowHeader, CowOpType, dataOffset, opOffset, resumeOffset, sequenceOffset, scratchWindowBlocks } from '../../src/cow/format';
import { isVabError } from '../../src/util/errors';

/** A v3 header with a distinctive value in every field. */
const header: CowHeader = {
  ...emptyHeader(),
  majorVersion: 3,
  minorVersion: 0,
  headerSize: 78,
  footerSize: 0,
  opSize: 16,
  blockSize: 4096,
  clusterOps: 0,
  numMergeOps: 0x0102_0304_0506,
  bufferSize: 2 * 1024 * 1024,
  sequenceDataCount: 0xc001,
  resumePointCount: 3,
  resumePointMax: 4,
  opCount: 0xdead_beef,
  opCountMax: 0x1_0000_0001,
  compressionAlgorithm: 4,
  maxCompressionSize: 65536,
};

const goldenHeader = new Bytes()
  .raw([0x21, 0x21, 0x57, 0x4f, 0x63, 0x77, 0x6f, 0x43]) // magic "!!WOcwoC"
  .u16(3).u16(0).u16(78) // major, minor, header_size
  .u16(0).u16(16).u32(4096) // footer_size, op_size, block_size
  .u32(0).u64(0x0102_0304_0506) // cluster_ops, num_merge_ops
  .u32(0x200000) // buffer_size
  .u64(0xc001).u32(3).u32(4) // sequence_data_count, resume_point_count, resume_point_max
  .u64(0xdead_beef).u64(0x1_0000_0001) // op_count, op_count_max
  .u32(4).u32(65536) // compression_algorithm, max_compression_size
  .build();

describe('COW v3 header', () => {
  it('is 78 bytes laid out as CowHeaderV3', () => {
    expect(goldenHeader.length).toBe(78);
    expect(encodeHeaderV3(header).equals(goldenHeader)).toBe(true);
    expect(decodeHeader(goldenHeader)).toEqual(header);
  });

  it('reads a shorter (v2) header over zeros, as ReadCowHeader does', () => {
    const v2 = Buffer.from(goldenHeader.subarray(0, 38));
    v2.writeUInt16LE(2, 8);
    v2.writeUInt16LE(38, 12);
    const h = decodeHeader(v2);
    expect(h.majorVersion).toBe(2);
    expect(h.bufferSize).toBe(0x200000);
    expect(h.opCount).toBe(0);
    expect(h.maxCompressionSize).toBe(0);
  });

  it.each([
    ['bad magic', (b: Buffer) => b.writeUInt8(0x22, 0), 'ECORRUPT', 0],
    ['header_size beyond 78', (b: Buffer) => b.writeUInt16LE(79, 12), 'EUNSUPPORTED', 12],
    ['header_size below the prefix', (b: Buffer) => b.writeUInt16LE(10, 12), 'ECORRUPT', 12],
  ])('refuses %s with the offset', (_name, damage, code, offset) => {
    const bad = Buffer.from(goldenHeader);
    damage(bad);
    expect(() => decodeHeader(bad, { file: 'x.cow' })).toThrow(expect.objectContaining({ code, offset, file: 'x.cow' }));
  });

  it('refuses every truncation of the header', () => {
    for (let cut = 0; cut < 78; cut++) {
      let error: unknown;
      try {
        decodeHeader(goldenHeader.subarray(0, cut), { file: 'x.cow' });
      } catch (err) {
        error = err;
      }
      expect(isVabError(error, 'ETRUNCATED')).toBe(true);
    }
  });

  it('places the areas where GetSequenceOffset .. GetDataOffset do', () => {
    const h = { ...header, sequenceDataCount: 3, opCountMax: 10 };
    expect(sequenceOffset(h)).toBe(78 + 2097152);
    expect(resumeOffset(h)).toBe(78 + 2097152 + 12);
    expect(opOffset(2, h)).toBe(78 + 2097152 + 12 + 64 + 32);
    expect(dataOffset(h)).toBe(78 + 2097152 + 12 + 64 + 160);
    // Default settings, no sequence data: ops start at 2,097,294 (spec 1.8).
    expect(opOffset(0, { ...h, sequenceDataCount: 0 })).toBe(2097294);
    expect(scratchWindowBlocks(h)).toBe(510);
  });
});

/** source_info built with BigInt arithmetic straight from the bit table: type<<60 | bits<<57 | source. */
function sourceInfo(type: number, bits: number, source: bigint): bigint {
  return (BigInt(type) << 60n) | (BigInt(bits) << 57n) | source;
}

describe('COW v3 op record', () => {
  const cases = [
    { name: 'copy', op: { type: CowOpType.Copy, compressionBits: 0, newBlock: 7, source: 0xc001d00d, dataLength: 0 } },
    { name: 'replace over 64 KiB', op: { type: CowOpType.Replace, compressionBits: 4, newBlock: 0xfffffff0, source: 0xdeadbeef01, dataLength: 12345 } },
    { name: 'zero', op: { type: CowOpType.Zero, compressionBits: 0, newBlock: 0, source: 0, dataLength: 0 } },
    { name: 'xor at a 48-bit byte offset', op: { type: CowOpType.Xor, compressionBits: 0, newBlock: 50, source: 2 ** 48 - 1, dataLength: 4096 } },
  ];

  it.each(cases)('$name matches the golden bytes', ({ op }) => {
    const golden = new Bytes().u32(op.dataLength).u32(op.newBlock).u64(sourceInfo(op.type, op.compressionBits, BigInt(op.source))).build();
    expect(golden.length).toBe(16);
    expect(encodeOpV3(op).equals(golden)).toBe(true);
    expect(decodeOpV3(golden)).toEqual({ ...op, unused: 0 });
  });

  it('exposes the unused bits 48..56 so the parser can refuse them', () => {
    const golden = new Bytes().u32(0).u32(1).u64(sourceInfo(1, 0, 5n) | (1n << 50n)).build();
    expect(decodeOpV3(golden).unused).toBe(4);
  });

  it('refuses a source beyond 48 bits', () => {
    expect(() => encodeOpV3({ type: 1, compressionBits: 0, newBlock: 0, source: 2 ** 48, dataLength: 0 })).toThrow(RangeError);
  });
});

describe('COW v2 op record and resume point', () => {
  it('decodes a 20-byte CowOperationV2', () => {
    const golden = new Bytes().u8(6).u8(4).u16(4096).u64(50n).u64(24n * 4096n + 10n).build();
    const op = { type: 6, compression: 4, dataLength: 4096, newBlock: 50n, source: 98314n };
    expect(decodeOpV2(golden)).toEqual(op);
    expect(encodeOpV2(op).equals(golden)).toBe(true);
  });

  it('keeps all 64 bits of a label', () => {
    const golden = new Bytes().u8(4).u8(0).u16(0).u64(0).u64(0xffff_ffff_ffff_fffen).build();
    expect(decodeOpV2(golden).source).toBe(0xffff_ffff_ffff_fffen);
  });

  it('lays a ResumePoint out as {u64 label, u64 op_index}', () => {
    const golden = new Bytes().u64(1n << 48n).u64(0xbaadf00d).build();
    expect(encodeResumePoint({ label: 1n << 48n, opIndex: 0xbaadf00d }).equals(golden)).toBe(true);
    expect(decodeResumePoint(golden)).toEqual({ label: 1n << 48n, opIndex: 0xbaadf00dn });
  });
});
