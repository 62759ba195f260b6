import { dataOffset, decodeHeader, encodeHeader, metadataSize } from '../../src/payload/header';
import { CowMergeType, DeltaArchiveManifest, OpType, decodeManifest, decodeSignatures, encodeManifest, encodeSignatures } from '../../src/payload/manifest';

/** Hex with spaces and comments removed: golden bytes are written out by hand, field by field. */
function hex(text: string): Buffer {
  return Buffer.from(text.replace(/#[^\n]*/g, '').replace(/\s+/g, ''), 'hex');
}

describe('payload header', () => {
  const golden = hex(`
    43 72 41 55 00 00 00 00   # "CrAU", major (high bytes)
    00 00 00 02 00 00 00 00   # major = 2, manifest_size (high bytes)
    00 01 02 03 00 00 01 0b   # manifest_size = 0x10203, metadata_signature_size = 267
  `);
  const header = { major_version: 2, manifest_size: 0x10203, metadata_signature_size: 267 };

  it('encodes to the golden bytes and decodes them', () => {
    expect(encodeHeader(header).equals(golden)).toBe(true);
    expect(decodeHeader(golden)).toEqual(header);
    expect(metadataSize(header)).toBe(24 + 0x10203);
    expect(dataOffset(header)).toBe(24 + 0x10203 + 267);
  });

  it('refuses a short header, a wrong magic, another major version and an absurd manifest size', () => {
    expect(() => decodeHeader(golden.subarray(0, 23), 'p.bin')).toThrow('p.bin at offset 0: payload header needs 24 bytes, the file has 23');
    const magic = Buffer.from(golden);
    magic[0] = 0x50;
    expect(() => decodeHeader(magic)).toThrow(/not a payload: magic is 50724155/);
    const v1 = Buffer.from(golden);
    v1[11] = 1;
    expect(() => decodeHeader(v1)).toThrow(/major version 1 is not supported/);
    const huge = Buffer.from(golden);
    huge.writeBigUInt64BE(1n << 40n, 12);
    expect(() => decodeHeader(huge)).toThrow(/manifest size 1099511627776 is absurd/);
    expect(() => decodeHeader(golden, 'p.bin', 1000)).toThrow(/header declares 66342 bytes of metadata, the file has 1000/);
  });
});

describe('manifest protobuf', () => {
  const hash = Buffer.alloc(32, 0xab);
  const manifest: DeltaArchiveManifest = {
    block_size: 4096,
    signatures_offset: 300,
    signatures_size: 267,
    minor_version: 9,
    partitions: [
      {
        partition_name: 'sys',
        new_partition_info: { size: 8192, hash },
        operations: [{ type: OpType.SOURCE_COPY, src_extents: [{ start_block: 1, num_blocks: 2 }], dst_extents: [{ start_block: 5, num_blocks: 2 }] }],
        merge_operations: [{ type: CowMergeType.COW_COPY, src_extent: { start_block: 1, num_blocks: 2 }, dst_extent: { start_block: 5, num_blocks: 2 } }],
      },
    ],
  };
  const golden = hex(`
    18 80 20                  # 3 block_size = 4096
    20 ac 02                  # 4 signatures_offset = 300
    28 8b 02                  # 5 signatures_size = 267
    60 09                     # 12 minor_version = 9
    6a 4d                     # 13 partitions, 77 bytes:
      0a 03 73 79 73          #   1 partition_name "sys"
      3a 25                   #   7 new_partition_info, 37 bytes:
        08 80 40              #     1 size = 8192
        12 20 ${'ab'.repeat(32)} # 2 hash
      42 0e                   #   8 operations, 14 bytes:
        08 04                 #     1 type = SOURCE_COPY
        22 04 08 01 10 02     #     4 src_extents {1, 2}
        32 04 08 05 10 02     #     6 dst_extents {5, 2}
      92 01 0e                #   18 merge_operations, 14 bytes:
        08 00                 #     1 type = COW_COPY
        12 04 08 01 10 02     #     2 src_extent {1, 2}
        1a 04 08 05 10 02     #     3 dst_extent {5, 2}
  `);

  it('encodes to hand-built protobuf bytes', () => {
    expect(encodeManifest(manifest).toString('hex')).toBe(golden.toString('hex'));
  });

  it('decodes them back, with numbers for 64-bit fields', () => {
    // Repeated fields come back as empty lists when absent.
    const partition = { ...manifest.partitions[0], new_partition_signature: [] };
    expect(decodeManifest(golden)).toEqual({ ...manifest, apex_info: [], partitions: [partition] });
  });

  it('gives extents the proto2 default of 0 for an absent start_block', () => {
    // partition "k" with one ZERO op whose dst extent has only num_blocks = 3 on the wire.
    const bytes = hex(`6a 0b  0a 01 6b  42 06 08 06 32 02 10 03`);
    expect(decodeManifest(bytes).partitions[0].operations[0].dst_extents).toEqual([{ start_block: 0, num_blocks: 3 }]);
  });

  it('refuses a required field that is missing and a value beyond 2^53', () => {
    expect(() => decodeManifest(hex('6a 02 42 00'))).toThrow(/cannot parse payload manifest/);
    expect(() => decodeManifest(hex('20 ff ff ff ff ff ff ff ff ff 01'))).toThrow(/signatures_offset = 18446744073709551615 is beyond 2\^53/);
  });
});

describe('Signatures protobuf', () => {
  const golden = hex(`
    0a 0b                     # 1 signatures, 11 bytes:
      12 04 de ad be ef       #   2 data
      1d 04 00 00 00          #   3 unpadded_signature_size = 4 (fixed32, little-endian)
  `);
  const message = { signatures: [{ data: Buffer.from('deadbeef', 'hex'), unpadded_signature_size: 4 }] };

  it('encodes and decodes the golden bytes', () => {
    expect(encodeSignatures(message).equals(golden)).toBe(true);
    expect(decodeSignatures(golden)).toEqual(message);
  });

  it('has the sizes real payloads show for one RSA-2048 and one RSA-4096 signature', () => {
    expect(encodeSignatures({ signatures: [{ data: Buffer.alloc(256), unpadded_signature_size: 256 }] }).length).toBe(267);
    expect(encodeSignatures({ signatures: [{ data: Buffer.alloc(512), unpadded_signature_size: 512 }] }).length).toBe(523);
  });
});
