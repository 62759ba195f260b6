import { promises as fs } from 'node:fs';
import path from 'node:path';
import { extractPayload } from '../../src/payload/extract';
import { OpType } from '../../src/payload/manifest';
import { STREAM_MIN_BYTES } from '../../src/payload/stream-decode';
import { run } from '../../src/util/exec';
import { MiB, vabMeasured, zeroBomb } from '../support/peak-memory';
import { bombPayload } from './support/bomb-payload';
import { randomBytes, tempDir } from './support/images';

const BLOCK = 4096;

/** `data` piped through a compressor's command line. */
async function pack(dir: string, data: Buffer, command: string): Promise<Buffer> {
  const input = path.join(dir, 'input');
  const output = path.join(dir, 'packed');
  await fs.writeFile(input, data);
  const result = await run('sh', ['-c', `${command} < '${input}' > '${output}'`], { timeoutMs: 60_000 });
  if (result.code !== 0) throw new Error(`${command} failed: ${result.stderr}`);
  return fs.readFile(output);
}

describe(`REPLACE_XZ and REPLACE_ZSTD ops of ${STREAM_MIN_BYTES} bytes or more are written as they decode`, () => {
  let dir: string;
  // 6 MiB: data, zeros, data; written to two extents in reverse order.
  const content = Buffer.concat([randomBytes(11, 2 * MiB), Buffer.alloc(2 * MiB), randomBytes(12, 2 * MiB)]);
  const blocks = content.length / BLOCK;
  const extents = [
    { start_block: 1024, num_blocks: 512 },
    { start_block: 0, num_blocks: 1024 },
  ];
  const image = Buffer.concat([content.subarray(512 * BLOCK), content.subarray(0, 512 * BLOCK)]);
  let caseNo = 0;

  beforeAll(async () => {
    dir = await tempDir('vab-stream-');
  });
  afterAll(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  async function extract(payload: Buffer): Promise<{ out: string; result: Promise<unknown> }> {
    const n = ++caseNo;
    const file = path.join(dir, `case-${n}.bin`);
    await fs.writeFile(file, payload);
    const out = path.join(dir, `out-${n}`);
    return { out, result: extractPayload(file, { outDir: out }) };
  }

  it.each([
    ['REPLACE_XZ', OpType.REPLACE_XZ, 'xz -0 -T1 -c'],
    ['REPLACE_ZSTD (size declared)', OpType.REPLACE_ZSTD, `zstd -c -q --stream-size=${content.length}`],
    ['REPLACE_ZSTD (size not declared)', OpType.REPLACE_ZSTD, 'zstd -c -q'],
  ] as const)('%s writes the right image across extents', async (_name, type, command) => {
    const { out, result } = await extract(bombPayload(type, await pack(dir, content, command), { blocks, extents, image }));
    await result;
    expect((await fs.readFile(path.join(out, 'system.img'))).equals(image)).toBe(true);
  });

  it.each([
    ['xz', OpType.REPLACE_XZ, 'xz -0 -T1', /xz data decompresses to more than 8388608 bytes/],
    ['zstd', OpType.REPLACE_ZSTD, 'zstd -c -q', /zstd data decompresses to more than 8388608 bytes/],
    ['zstd (size declared)', OpType.REPLACE_ZSTD, `zstd -c -q --stream-size=${512 * MiB}`, /zstd data does not decompress: frame declares 536870912 bytes, more than the 8388608 expected/],
  ] as const)('a %s bomb stops at the destination size and leaves no image', async (_kind, type, command, message) => {
    const bomb = await zeroBomb(path.join(dir, 'bomb'), 512 * MiB, command);
    const { out, result } = await extract(bombPayload(type, bomb, { blocks: 2048 }));
    await expect(result).rejects.toMatchObject({ code: 'ECORRUPT', message: expect.stringMatching(message) });
    expect(await fs.readdir(out).catch(() => [])).toEqual([]);
  });

  it('refuses data that ends short of the destination, or is cut off', async () => {
    const packed = await pack(dir, content, 'xz -0 -T1 -c');
    const short = await extract(bombPayload(OpType.REPLACE_XZ, packed, { blocks: 2048 }));
    await expect(short.result).rejects.toMatchObject({ code: 'ECORRUPT', message: expect.stringContaining(`xz data decompresses to ${content.length} bytes, expected ${2048 * BLOCK}`) });
    const cut = await extract(bombPayload(OpType.REPLACE_XZ, packed.subarray(0, packed.length - 100), { blocks, extents, image }));
    await expect(cut.result).rejects.toMatchObject({ code: 'ECORRUPT', message: expect.stringMatching(/op 0 \(REPLACE_XZ\): xz data does not decompress/) });
    const zstdCut = await pack(dir, content, 'zstd -c -q');
    const zcut = await extract(bombPayload(OpType.REPLACE_ZSTD, zstdCut.subarray(0, zstdCut.length - 100), { blocks, extents, image }));
    await expect(zcut.result).rejects.toMatchObject({ code: 'ECORRUPT' });
  });

  describe('a payload under 1 MB filling 256 MiB (measured in the child process)', () => {
    let baseline: number;

    beforeAll(async () => {
      const file = path.join(dir, 'harmless.bin');
      await fs.writeFile(file, bombPayload(OpType.REPLACE_XZ, await zeroBomb(path.join(dir, 'block.xz'), BLOCK, 'xz -0 -T1')));
      const result = await vabMeasured('payload', 'extract', file, '--out', path.join(dir, 'out-harmless'));
      expect(result.code).toBe(0);
      baseline = result.maxRssBytes;
    });

    it.each([
      ['REPLACE_XZ', OpType.REPLACE_XZ, 'xz -0 -T1'],
      ['REPLACE_ZSTD', OpType.REPLACE_ZSTD, 'zstd -c -q'],
    ] as const)('%s extracts within 64 MiB of the baseline', async (name, type, command) => {
      const payload = bombPayload(type, await zeroBomb(path.join(dir, 'zeros'), 256 * MiB, command), { blocks: (256 * MiB) / BLOCK });
      expect(payload.length).toBeLessThan(MiB);
      const file = path.join(dir, `zeros-${name}.bin`);
      await fs.writeFile(file, payload);
      const out = path.join(dir, `out-zeros-${name}`);
      const result = await vabMeasured('payload', 'extract', file, '--out', out);
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      expect(result.maxRssBytes - baseline).toBeLessThan(64 * MiB);
      expect((await fs.stat(path.join(out, 'system.img'))).size).toBe(256 * MiB);
      await fs.rm(out, { recursive: true, force: true });
    });
  });
});
