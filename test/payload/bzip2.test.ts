import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { bzip2Pieces } from '../../src/payload/bzip2';
import { run } from '../../src/util/exec';

/** vab's streaming bzip2 decoder against the bzip2 tool itself, on data of every kind and level. */
describe('streaming bzip2 decoder', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vab-bzip2-'));
  });
  afterAll(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  async function bzip2(data: Buffer, level: number): Promise<Buffer> {
    const raw = path.join(dir, 'raw');
    await fs.writeFile(raw, data);
    const r = await run('sh', ['-c', `bzip2 -c -${level} ${raw} > ${raw}.bz2`]);
    if (r.code !== 0) throw new Error(r.stderr);
    return fs.readFile(`${raw}.bz2`);
  }

  const decode = (data: Buffer, limit?: number): Buffer => Buffer.concat([...bzip2Pieces(data, limit)].map((p) => Buffer.from(p)));

  const words = ['vab ', 'cow ', 'merge ', '\n', 'snapshot '];
  const cases: Array<[string, () => Buffer]> = [
    ['empty', () => Buffer.alloc(0)],
    ['one byte', () => Buffer.from('x')],
    ['random (incompressible), several blocks at level 1', () => randomBytes(350_000)],
    ['long runs (RLE and RUNA/RUNB at their limits)', () => Buffer.concat([Buffer.alloc(300_000, 7), Buffer.from('abcd'.repeat(80_000)), Buffer.alloc(257, 1), Buffer.alloc(3, 2)])],
    ['text', () => Buffer.from(Array.from({ length: 200_000 }, (_, i) => words[(i * 7919) % 5]).join(''))],
  ];
  it.each(cases.flatMap(([name, make]) => [1, 9].map((level) => [name, level, make] as const)))('%s, level %i: the bytes bzip2 compressed', async (_name, level, make) => {
    const data = make();
    expect(decode(await bzip2(data, level)).equals(data)).toBe(true);
  });

  it('decodes streams written back to back', async () => {
    const a = randomBytes(1000);
    const b = Buffer.alloc(5000, 3);
    expect(decode(Buffer.concat([await bzip2(a, 1), await bzip2(b, 9)])).equals(Buffer.concat([a, b]))).toBe(true);
  });

  it('hands out output in pieces of at most 1 MiB', async () => {
    const data = Buffer.alloc(3 << 20, 9);
    const pieces = [...bzip2Pieces(await bzip2(data, 9))];
    expect(pieces.length).toBeGreaterThanOrEqual(3);
    expect(Math.max(...pieces.map((p) => p.length))).toBeLessThanOrEqual(1 << 20);
    expect(Buffer.concat(pieces).equals(data)).toBe(true);
    expect(() => decode(Buffer.alloc(0))).toThrow(/ends early/);
  });

  it('refuses output past the limit, corrupt, truncated and trailing data with an error', async () => {
    const good = await bzip2(Buffer.from('hello hello hello '.repeat(1000)), 9);
    expect(() => decode(good, 100)).toThrow(/decompresses to more than 100 bytes/);
    const flipped = Buffer.from(good);
    flipped[good.length - 8] ^= 0x40;
    expect(() => decode(flipped)).toThrow(/CRC|Huffman|magic|selector|origPtr|block/);
    expect(() => decode(good.subarray(0, good.length - 6))).toThrow(/ends early/);
    expect(() => decode(Buffer.concat([good, Buffer.from('junk')]))).toThrow(/trailing garbage/);
    expect(() => decode(Buffer.from('BZh0'))).toThrow(/block size digit/);
  });

  it('never throws anything but its own error on mutated input', async () => {
    const good = await bzip2(randomBytes(20_000), 9);
    for (let i = 0; i < 300; i++) {
      const bad = Buffer.from(good);
      bad[4 + ((i * 7919) % (bad.length - 4))] ^= 1 << i % 8;
      try {
        decode(bad, 1 << 20);
      } catch (err) {
        expect((err as Error).constructor.name).toBe('Bzip2Error');
      }
    }
  });
});
