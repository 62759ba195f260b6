import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** Deterministic pseudo-random bytes (xorshift), so a failing case can be replayed. */
export function randomBytes(seed: number, size: number): Buffer {
  const out = Buffer.alloc(size);
  let x = seed | 1;
  for (let i = 0; i < size; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out.writeInt32LE(x | 0, Math.min(i, size - 4));
  }
  return out;
}

/**
 * An updated version of `old`, as an OTA would see it: some blocks unchanged, some moved,
 * some edited a little, some new, some zeroed, and a different size.
 */
export function evolve(old: Buffer, seed: number, blockSize = 4096): Buffer {
  const blocks = Math.floor(old.length / blockSize);
  const out = Buffer.concat([old, randomBytes(seed, 5 * blockSize + 123)]);
  // Move a run of blocks down by 3 blocks (overlapping copy) and another one far away.
  old.copy(out, 10 * blockSize, 13 * blockSize, 23 * blockSize);
  old.copy(out, (blocks - 8) * blockSize, 30 * blockSize, 36 * blockSize);
  // Edit a few bytes in some blocks: a diff is much smaller than the data.
  for (let b = 40; b < 48; b++) out[b * blockSize + ((b * 37) % blockSize)] ^= 0xa5;
  // New data and a zeroed stretch.
  randomBytes(seed + 1, 4 * blockSize).copy(out, 50 * blockSize);
  out.fill(0, 60 * blockSize, 66 * blockSize);
  return out;
}

export async function tempDir(prefix: string): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), prefix));
}

export async function writeImages(dir: string, images: Record<string, Buffer>): Promise<void> {
  await fs.mkdir(dir, { recursive: true });
  for (const [name, data] of Object.entries(images)) await fs.writeFile(path.join(dir, `${name}.img`), data);
}
