import { spawn } from 'node:child_process';
import { compress, decompress } from '../../src/payload/codecs';
import { randomBytes } from './support/images';

/** Pipes `input` through a Debian command-line tool and returns its output. */
function tool(command: string, args: string[], input: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(Buffer.concat(out)) : reject(new Error(`${command} exited with ${code}`))));
    child.stdin.end(input);
  });
}

// Half compressible text, half noise: both code paths of each compressor get exercised.
const sample = Buffer.concat([Buffer.from('system/bin/otapreopt_script '.repeat(20000)), randomBytes(3, 200 * 1024)]);

describe.each([
  ['xz', 'xz', ['-c', '--check=none'], ['-dc']],
  ['xz', 'xz', ['-c', '--check=crc64', '-9'], ['-dc']],
  ['bz2', 'bzip2', ['-c'], ['-dc']],
  ['zstd', 'zstd', ['-c', '-q'], ['-dc', '-q']],
] as const)('%s against the Debian %s tool (%j)', (kind, command, packArgs, unpackArgs) => {
  it('decompresses what the tool compressed', async () => {
    const packed = await tool(command, [...packArgs], sample);
    expect((await decompress(kind, packed, sample.length)).equals(sample)).toBe(true);
    expect((await decompress(kind, packed, sample.length * 2, 'atMost')).equals(sample)).toBe(true);
  });

  it('compresses into something the tool decompresses, and smaller', async () => {
    const packed = await compress(kind, sample);
    expect(packed.length).toBeLessThan(sample.length * 0.6);
    expect((await tool(command, [...unpackArgs], packed)).equals(sample)).toBe(true);
  });
});

describe('decompression errors', () => {
  it.each(['xz', 'bz2', 'zstd', 'brotli'] as const)('%s: garbage and a wrong expected size are ECORRUPT', async (kind) => {
    await expect(decompress(kind, Buffer.from('this is not compressed data at all'), 4096, 'atMost')).rejects.toMatchObject({ code: 'ECORRUPT' });
    const packed = await compress(kind, sample);
    await expect(decompress(kind, packed, sample.length - 1)).rejects.toMatchObject({ code: 'ECORRUPT' });
    await expect(decompress(kind, packed, sample.length + 4096)).rejects.toMatchObject({ code: 'ECORRUPT' });
  });
});
