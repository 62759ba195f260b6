import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import fc from 'fast-check';
import { CodecError, createCodec, parseCompression } from '../../src/cow/codec';
import { CowCompression } from '../../src/cow/format';
import { decodeLz4Block, Lz4FormatError } from '../../src/cow/lz4-block';
import { pseudoRandom, textLike } from './helpers';

let dir: string;
beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vab-codec-'));
});
afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

/**
 * Wraps a raw LZ4 block in a minimal LZ4 frame so the reference `lz4` tool can decode it. The
 * frame descriptor (FLG 0x60: version 1, independent blocks; BD 0x70: 4 MiB blocks) has the
 * header checksum 0x73, which is (xxh32(descriptor) >> 8) & 0xff.
 */
function lz4Frame(rawBlock: Buffer): Buffer {
  const header = Buffer.from([0x04, 0x22, 0x4d, 0x18, 0x60, 0x70, 0x73]);
  const size = Buffer.alloc(4);
  size.writeUInt32LE(rawBlock.length);
  return Buffer.concat([header, size, rawBlock, Buffer.alloc(4)]);
}

/** The raw blocks inside a frame the `lz4` tool wrote (compressed ones only; bit 31 marks stored blocks). */
function blocksOfFrame(frame: Buffer): Buffer[] {
  const flags = frame[4];
  let at = 7 + (flags & 0x08 ? 8 : 0) + (flags & 0x01 ? 4 : 0);
  const blocks: Buffer[] = [];
  for (;;) {
    const word = frame.readUInt32LE(at);
    at += 4;
    if (word === 0) return blocks;
    const length = word & 0x7fffffff;
    expect(word >>> 31).toBe(0);
    blocks.push(frame.subarray(at, at + length));
    at += length + (flags & 0x10 ? 4 : 0);
  }
}

describe('lz4 (raw block, as LZ4_compress_default / LZ4_decompress_safe)', () => {
  const lz4 = createCodec(CowCompression.Lz4);

  it.each([4096, 65536, 262144])('writes a block the reference lz4 decoder reads (%i bytes)', async (size) => {
    const input = textLike(size, size);
    const block = Buffer.from(lz4.compress(input));
    expect(block.length).toBeLessThan(size);
    const framed = path.join(dir, `mine-${size}.lz4`);
    await fs.writeFile(framed, lz4Frame(block));
    expect(execFileSync('lz4', ['-d', '-c', framed], { maxBuffer: 1 << 22 }).equals(input)).toBe(true);
  });

  it('reads the blocks the reference lz4 encoder writes', async () => {
    const input = textLike(65536, 3);
    const source = path.join(dir, 'ref.bin');
    await fs.writeFile(source, input);
    const frame = execFileSync('lz4', ['-q', '-B4', '-BD', '--no-frame-crc', '-c', source]);
    const [block] = blocksOfFrame(frame);
    const out = Buffer.alloc(65536);
    lz4.decompressInto(block, out);
    expect(out.equals(input)).toBe(true);
  });

  it('round-trips any data through the decoder', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 3000 }), fc.nat(200), (bytes, repeat) => {
        const input = Buffer.concat([Buffer.from(bytes), Buffer.alloc(repeat, bytes[0] ?? 1), Buffer.from(bytes)]);
        if (input.length === 0) return;
        const packed = lz4.compress(input);
        const out = Buffer.alloc(input.length);
        expect(decodeLz4Block(packed, 0, packed.length, out, 0, out.length)).toBe(input.length);
        expect(out.equals(input)).toBe(true);
      }),
    );
  });

  it('reports malformed input without reading or writing out of bounds', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 64 }), (bytes) => {
        const out = Buffer.alloc(128);
        try {
          expect(decodeLz4Block(bytes, 0, bytes.length, out, 0, out.length)).toBeLessThanOrEqual(128);
        } catch (err) {
          expect(err).toBeInstanceOf(Lz4FormatError);
        }
      }),
    );
    // A match that reaches back before the start of the output.
    expect(() => decodeLz4Block(Buffer.from([0x10, 0x41, 0x05, 0x00, 0x00]), 0, 5, Buffer.alloc(64), 0, 64)).toThrow(/points before/);
  });

  it('refuses data that decodes to the wrong size', () => {
    const packed = Buffer.from(lz4.compress(textLike(4096, 1)));
    expect(() => lz4.decompressInto(packed, Buffer.alloc(8192))).toThrow(CodecError);
    expect(() => lz4.decompressInto(packed, Buffer.alloc(2048))).toThrow(CodecError);
  });
});

describe('zstd (one frame per unit)', () => {
  const zstd = createCodec(CowCompression.Zstd, 3, 65536);

  it('writes frames the reference zstd tool reads, and reads its frames', async () => {
    const input = textLike(65536, 9);
    const mine = path.join(dir, 'mine.zst');
    await fs.writeFile(mine, zstd.compress(input));
    expect(execFileSync('zstd', ['-d', '-c', '-q', mine]).equals(input)).toBe(true);
    const source = path.join(dir, 'z.bin');
    await fs.writeFile(source, input);
    const theirs = execFileSync('zstd', ['-c', '-q', '-19', source]);
    const out = Buffer.alloc(65536);
    zstd.decompressInto(theirs, out);
    expect(out.equals(input)).toBe(true);
  });

  it('refuses corrupt frames and the wrong size', () => {
    const packed = Buffer.from(zstd.compress(textLike(4096, 4)));
    expect(() => zstd.decompressInto(packed, Buffer.alloc(8192))).toThrow(CodecError);
    packed[packed.length - 3] ^= 0xff;
    expect(() => zstd.decompressInto(packed.subarray(0, 10), Buffer.alloc(4096))).toThrow(CodecError);
  });
});

describe('gz (zlib-wrapped deflate, as compress2) and brotli', () => {
  it('writes a zlib stream, not raw deflate or gzip', () => {
    const gz = createCodec(CowCompression.Gz);
    const packed = Buffer.from(gz.compress(textLike(4096, 5)));
    expect(packed[0]).toBe(0x78);
    expect(((packed[0] << 8) | packed[1]) % 31).toBe(0);
    expect(zlib.inflateSync(packed).equals(textLike(4096, 5))).toBe(true);
  });

  it.each([CowCompression.Gz, CowCompression.Brotli])('round-trips and refuses the wrong size (algorithm %i)', (algorithm) => {
    const codec = createCodec(algorithm);
    const input = textLike(16384, 6);
    const out = Buffer.alloc(16384);
    codec.decompressInto(codec.compress(input), out);
    expect(out.equals(input)).toBe(true);
    expect(() => codec.decompressInto(codec.compress(input), Buffer.alloc(8192))).toThrow(CodecError);
    expect(() => codec.decompressInto(Buffer.from('not compressed at all'), out)).toThrow(CodecError);
  });

  it('leaves incompressible data longer than its input, so the writer stores it raw', () => {
    for (const algorithm of [CowCompression.Gz, CowCompression.Brotli, CowCompression.Lz4, CowCompression.Zstd]) {
      expect(createCodec(algorithm).compress(pseudoRandom(4096, 8)).length).toBeGreaterThanOrEqual(4096);
    }
  });
});

describe('compression names', () => {
  it('parses names and levels like CowOptions.compression', () => {
    expect(parseCompression('zstd')).toEqual({ algorithm: CowCompression.Zstd, level: 3 });
    expect(parseCompression('gz')).toEqual({ algorithm: CowCompression.Gz, level: 9 });
    expect(parseCompression('brotli,5')).toEqual({ algorithm: CowCompression.Brotli, level: 5 });
    expect(parseCompression('')).toEqual({ algorithm: CowCompression.None, level: 0 });
    expect(() => parseCompression('zstd,3,1')).toThrow(/comma/);
    expect(() => parseCompression('zstd,x')).toThrow(/integer/);
    expect(() => parseCompression('xz')).toThrow(/unknown/);
  });
});
