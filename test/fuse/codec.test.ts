import fc from 'fast-check';
import * as c from '../../src/fuse/codec/composite';
import { FuseDecodeError, StructCodec, Layout } from '../../src/fuse/codec/layout';
import * as s from '../../src/fuse/codec/structs';
import { isVabError } from '../../src/util/errors';
import { Bytes } from './support/bytes';

/** Every fixed struct: a value with a distinct number in each field, and its bytes built by hand. */
interface Case {
  codec: StructCodec<Layout>;
  value: Record<string, number | bigint>;
  golden: Buffer;
}

const attrValue = {
  ino: 0x1122334455, size: 0x10_0000_0000, blocks: 0x80_0000, atime: 1_700_000_001, mtime: 1_700_000_002, ctime: 1_700_000_003,
  atimensec: 11, mtimensec: 12, ctimensec: 13, mode: 0o100644, nlink: 1, uid: 1000, gid: 1001, rdev: 7, blksize: 4096, flags: 2,
};
const attrBytes = (b: Bytes) =>
  b.u64(0x1122334455).u64(0x10_0000_0000).u64(0x80_0000).u64(1_700_000_001).u64(1_700_000_002).u64(1_700_000_003)
    .u32(11).u32(12).u32(13).u32(0o100644).u32(1).u32(1000).u32(1001).u32(7).u32(4096).u32(2);

const cases: Record<string, Case> = {
  fuse_in_header: {
    codec: s.inHeader,
    value: { len: 80, opcode: 15, unique: 0x8000_0000_0000_0002n, nodeid: 12, uid: 1000, gid: 100, pid: 4242, totalExtlen: 3 },
    golden: new Bytes().u32(80).u32(15).u64(0x8000_0000_0000_0002n).u64(12).u32(1000).u32(100).u32(4242).u16(3).u16(0).build(),
  },
  fuse_out_header: {
    codec: s.outHeader,
    value: { len: 16, error: -5, unique: 0xfffffffffffffffen },
    golden: new Bytes().u32(16).i32(-5).u64(0xfffffffffffffffen).build(),
  },
  fuse_attr: { codec: s.attr, value: attrValue, golden: attrBytes(new Bytes()).build() },
  fuse_getattr_in: {
    codec: s.getattrIn,
    value: { getattrFlags: 1, fh: 99 },
    golden: new Bytes().u32(1).u32(0).u64(99).build(),
  },
  fuse_setattr_in: {
    codec: s.setattrIn,
    value: {
      valid: 0x248, fh: 3, size: 0x1_0000_0000n, lockOwner: 0xdeadbeefcafen, atime: 0xffffffffffffff00n, mtime: 5n, ctime: 6n,
      atimensec: 7, mtimensec: 8, ctimensec: 9, mode: 0o644, uid: 10, gid: 11,
    },
    golden: new Bytes().u32(0x248).u32(0).u64(3).u64(0x1_0000_0000n).u64(0xdeadbeefcafen).u64(0xffffffffffffff00n).u64(5).u64(6)
      .u32(7).u32(8).u32(9).u32(0o644).u32(0).u32(10).u32(11).u32(0).build(),
  },
  fuse_open_in: { codec: s.openIn, value: { flags: 0o100002, openFlags: 1 }, golden: new Bytes().u32(0o100002).u32(1).build() },
  fuse_open_out: {
    codec: s.openOut,
    value: { fh: 0x1_0000_0001, openFlags: 1, backingId: -1 },
    golden: new Bytes().u64(0x1_0000_0001).u32(1).i32(-1).build(),
  },
  'fuse_read_in/fuse_write_in': {
    codec: s.ioIn,
    value: { fh: 4, offset: 0x2_0000_1000, size: 1 << 20, ioFlags: 2, lockOwner: 77n, flags: 0o40002 },
    golden: new Bytes().u64(4).u64(0x2_0000_1000).u32(1 << 20).u32(2).u64(77).u32(0o40002).u32(0).build(),
  },
  fuse_write_out: { codec: s.writeOut, value: { size: 65536 }, golden: new Bytes().u32(65536).u32(0).build() },
  fuse_release_in: {
    codec: s.releaseIn,
    value: { fh: 8, flags: 0o2, releaseFlags: 1, lockOwner: 0x99n },
    golden: new Bytes().u64(8).u32(2).u32(1).u64(0x99).build(),
  },
  fuse_flush_in: { codec: s.flushIn, value: { fh: 9, lockOwner: 0x1234n }, golden: new Bytes().u64(9).u32(0).u32(0).u64(0x1234).build() },
  fuse_fsync_in: { codec: s.fsyncIn, value: { fh: 10, fsyncFlags: 1 }, golden: new Bytes().u64(10).u32(1).u32(0).build() },
  fuse_access_in: { codec: s.accessIn, value: { mask: 2 }, golden: new Bytes().u32(2).u32(0).build() },
  fuse_interrupt_in: { codec: s.interruptIn, value: { unique: 0x42n }, golden: new Bytes().u64(0x42).build() },
  fuse_forget_in: { codec: s.forgetIn, value: { nlookup: 3n }, golden: new Bytes().u64(3).build() },
  fuse_fallocate_in: {
    codec: s.fallocateIn,
    value: { fh: 11, offset: 4096, length: 8192, mode: 3 },
    golden: new Bytes().u64(11).u64(4096).u64(8192).u32(3).u32(0).build(),
  },
  fuse_kstatfs: {
    codec: s.statfsOut,
    value: { blocks: 1000, bfree: 1, bavail: 2, files: 3, ffree: 4, bsize: 4096, namelen: 255, frsize: 512 },
    golden: new Bytes().u64(1000).u64(1).u64(2).u64(3).u64(4).u32(4096).u32(255).u32(512).zeros(28).build(),
  },
  fuse_init_in: {
    codec: s.initIn,
    value: { major: 7, minor: 45, maxReadahead: 131072, flags: 0x73fffffb, flags2: 0x5fd },
    golden: new Bytes().u32(7).u32(45).u32(131072).u32(0x73fffffb).u32(0x5fd).zeros(44).build(),
  },
  fuse_init_out: {
    codec: s.initOut,
    value: {
      major: 7, minor: 45, maxReadahead: 65536, flags: 0x408021, maxBackground: 64, congestionThreshold: 48, maxWrite: 1 << 20,
      timeGran: 1, maxPages: 256, mapAlignment: 3, flags2: 5, maxStackDepth: 6, requestTimeout: 30,
    },
    golden: new Bytes().u32(7).u32(45).u32(65536).u32(0x408021).u16(64).u16(48).u32(1 << 20).u32(1).u16(256).u16(3).u32(5).u32(6).u16(30)
      .zeros(22).build(),
  },
  fuse_dirent: {
    codec: s.direntHead,
    value: { ino: 5, off: 6, namelen: 7, type: 8 },
    golden: new Bytes().u64(5).u64(6).u32(7).u32(8).build(),
  },
  fuse_batch_forget_in: { codec: s.batchForgetHead, value: { count: 2 }, golden: new Bytes().u32(2).u32(0).build() },
  fuse_forget_one: { codec: s.forgetOne, value: { nodeid: 12n, nlookup: 1n }, golden: new Bytes().u64(12).u64(1).build() },
};

describe('FUSE fixed structs', () => {
  it.each(Object.entries(cases))('%s encodes to and decodes from its golden bytes', (_name, { codec, value, golden }) => {
    expect(codec.size).toBe(golden.length);
    expect(codec.encode(value as never).equals(golden)).toBe(true);
    expect(codec.decode(golden)).toEqual(value);
  });

  it.each(Object.entries(cases))('%s refuses truncated input with a typed error', (_name, { codec, golden }) => {
    const truncated = golden.subarray(0, golden.length - 1);
    expect(() => codec.decode(truncated)).toThrow(FuseDecodeError);
    try {
      codec.decode(truncated);
    } catch (err) {
      expect(isVabError(err, 'ETRUNCATED')).toBe(true);
    }
  });

  it('has the sizes the kernel defines', () => {
    const sizes = Object.fromEntries(Object.entries(cases).map(([name, { codec }]) => [name, codec.size]));
    expect(sizes).toMatchObject({
      fuse_in_header: 40, fuse_out_header: 16, fuse_attr: 88, fuse_setattr_in: 88, fuse_open_out: 16, 'fuse_read_in/fuse_write_in': 40,
      fuse_release_in: 24, fuse_flush_in: 24, fuse_fsync_in: 16, fuse_fallocate_in: 32, fuse_kstatfs: 80, fuse_init_in: 64, fuse_init_out: 64,
    });
  });

  it('decodes at an offset inside a larger buffer', () => {
    const golden = cases.fuse_fsync_in.golden;
    expect(s.fsyncIn.decode(Buffer.concat([Buffer.alloc(5), golden]), 5)).toEqual(cases.fuse_fsync_in.value);
  });

  it('refuses a u64 beyond 2^53 with a typed protocol error instead of rounding', () => {
    const bad = new Bytes().u64(1n << 60n).u32(0).u32(0).build();
    expect(() => s.fsyncIn.decode(bad)).toThrow(FuseDecodeError);
    expect(() => s.fsyncIn.decode(bad)).toThrow(/beyond 2\^53/);
  });

  it('round-trips any read_in', () => {
    fc.assert(
      fc.property(fc.nat(), fc.maxSafeNat(), fc.nat({ max: 0xffffffff }), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), (fh, offset, size, lockOwner) => {
        const value = { fh, offset, size, ioFlags: 2, lockOwner, flags: 0 };
        expect(s.ioIn.decode(s.ioIn.encode(value))).toEqual(value);
      }),
    );
  });
});

describe('FUSE composite structs', () => {
  const entry: c.EntryOut = { nodeid: 12, generation: 1, entryValid: 2, attrValid: 3, entryValidNsec: 4, attrValidNsec: 5, attr: attrValue };
  const entryGolden = attrBytes(new Bytes().u64(12).u64(1).u64(2).u64(3).u32(4).u32(5)).build();

  it('fuse_entry_out is 128 bytes with the attr at 40', () => {
    expect(entryGolden.length).toBe(128);
    expect(c.encodeEntryOut(entry).equals(entryGolden)).toBe(true);
    expect(c.decodeEntryOut(entryGolden)).toEqual(entry);
    expect(() => c.decodeEntryOut(entryGolden.subarray(0, 127))).toThrow(FuseDecodeError);
  });

  it('fuse_attr_out is 104 bytes with the attr at 16', () => {
    const golden = attrBytes(new Bytes().u64(1).u32(500).u32(0)).build();
    const value = { attrValid: 1, attrValidNsec: 500, attr: attrValue };
    expect(golden.length).toBe(104);
    expect(c.encodeAttrOut(value).equals(golden)).toBe(true);
    expect(c.decodeAttrOut(golden)).toEqual(value);
    expect(() => c.decodeAttrOut(golden.subarray(0, 100))).toThrow(FuseDecodeError);
  });

  it('packs dirents 8-byte aligned, stopping before an entry that would not fit', () => {
    const entries: c.Dirent[] = [
      { ino: 1, off: 1, type: 4, name: '.' },
      { ino: 12, off: 2, type: 8, name: 'system_a' },
      { ino: 13, off: 3, type: 8, name: 'vendor' },
    ];
    const golden = new Bytes()
      .u64(1).u64(1).u32(1).u32(4).text('.').align8()
      .u64(12).u64(2).u32(8).u32(8).text('system_a').align8()
      .build();
    expect(golden.length).toBe(32 + 32);
    expect(c.encodeDirents(entries, 64 + 31, false).equals(golden)).toBe(true);
    expect(c.decodeDirents(golden, false)).toEqual(entries.slice(0, 2));
    expect(c.encodeDirents(entries, 10, false).length).toBe(0);
  });

  it('packs direntplus records as entry_out followed by the dirent', () => {
    const plusGolden = Buffer.concat([entryGolden, new Bytes().u64(12).u64(7).u32(3).u32(8).text('abc').align8().build()]);
    expect(plusGolden.length).toBe(c.direntSize(3, true));
    const record: c.Dirent = { ino: 12, off: 7, type: 8, name: 'abc', entry };
    expect(c.encodeDirents([record], 4096, true).equals(plusGolden)).toBe(true);
    expect(c.decodeDirents(plusGolden, true)).toEqual([record]);
  });

  it('refuses a dirent whose name runs past the buffer', () => {
    const bad = new Bytes().u64(1).u64(1).u32(200).u32(8).text('short').align8().build();
    expect(() => c.decodeDirents(bad, false)).toThrow(FuseDecodeError);
  });

  it('fuse_batch_forget_in carries count entries of nodeid and nlookup', () => {
    const golden = new Bytes().u32(2).u32(0).u64(12).u64(3).u64(13).u64(1).build();
    const items = [{ nodeid: 12n, nlookup: 3n }, { nodeid: 13n, nlookup: 1n }];
    expect(c.encodeBatchForget(items).equals(golden)).toBe(true);
    expect(c.decodeBatchForget(golden)).toEqual(items);
    expect(() => c.decodeBatchForget(golden.subarray(0, 30))).toThrow(FuseDecodeError);
  });

  it('reads the 16-byte fuse_init_in of kernels before 7.36 with flags2 zero', () => {
    const golden = new Bytes().u32(7).u32(31).u32(131072).u32(0x3fffffb).build();
    const value = { major: 7, minor: 31, maxReadahead: 131072, flags: 0x3fffffb, flags2: 0 };
    expect(c.decodeInitIn(golden)).toEqual(value);
    expect(c.encodeInitIn(value, true).equals(golden)).toBe(true);
    expect(() => c.decodeInitIn(golden.subarray(0, 12))).toThrow(FuseDecodeError);
    expect(() => c.decodeInitIn(golden.subarray(0, 4))).toThrow(FuseDecodeError);
  });

  it('sizes fuse_init_out by the negotiated minor', () => {
    const value = cases.fuse_init_out.value as s.InitOut;
    for (const [minor, size] of [[4, 8], [5, 24], [22, 24], [23, 64], [45, 64]]) {
      const encoded = c.encodeInitOut({ ...value, minor });
      expect(encoded.length).toBe(size);
      const expected = cases.fuse_init_out.golden.subarray(0, size);
      expect(encoded.subarray(8).equals(expected.subarray(8))).toBe(true);
      expect(c.decodeInitOut(encoded).minor).toBe(minor);
    }
    // The 24-byte form keeps max_write; fields after it read back as zero.
    const compat = c.decodeInitOut(c.encodeInitOut({ ...value, minor: 22 }));
    expect(compat).toMatchObject({ maxWrite: 1 << 20, timeGran: 0, maxPages: 0 });
  });

  it('reads NUL-terminated names and refuses one without its NUL', () => {
    const golden = new Bytes().text('system_b').u8(0).build();
    expect(c.encodeName('system_b').equals(golden)).toBe(true);
    expect(c.decodeName(golden)).toBe('system_b');
    expect(() => c.decodeName(golden.subarray(0, 8))).toThrow(FuseDecodeError);
  });
});
