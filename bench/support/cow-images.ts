import { promises as fs } from 'node:fs';
import path from 'node:path';

/** The COW benchmark's images: deterministic, so runs compare. */
const BS = 4096;

/** xorshift32 stream, so the images are the same on every run. */
export function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
}

/** Compressible material: words from a small vocabulary with numbers mixed in (roughly 3:1 with zstd). */
function textPool(bytes: number, seed: number): Buffer {
  const next = rng(seed);
  const words = ['system ', 'vendor ', 'lib64 ', 'android.', 'update ', 'block ', '0x', 'merge\n', 'snapshot ', '/data '];
  const out = Buffer.alloc(bytes);
  let at = 0;
  while (at < bytes) {
    const r = next();
    const word = r % 3 === 0 ? `${r % 100000} ` : words[r % words.length];
    at += out.write(word, at, 'latin1');
  }
  return out;
}

/** OLD and NEW: NEW has 30% of its blocks changed (24% new content, 3% moved from elsewhere, 3% zeroed). */
export async function makeImages(dir: string, sizeMib: number): Promise<{ oldPath: string; newPath: string }> {
  const blocks = (sizeMib * 1024 * 1024) / BS;
  const pool = textPool(8 * 1024 * 1024, 7);
  const next = rng(11);
  const slice = (): Buffer => {
    const at = next() % (pool.length - BS);
    return pool.subarray(at, at + BS);
  };
  const oldImage = Buffer.allocUnsafe(blocks * BS);
  for (let b = 0; b < blocks; b++) slice().copy(oldImage, b * BS);
  const newImage = Buffer.from(oldImage);
  for (let b = 0; b < blocks; b++) {
    const roll = next() % 100;
    if (roll < 24) slice().copy(newImage, b * BS);
    else if (roll < 27) {
      const from = next() % blocks;
      oldImage.copy(newImage, b * BS, from * BS, (from + 1) * BS);
    }
    else if (roll < 30) newImage.fill(0, b * BS, (b + 1) * BS);
  }
  const oldPath = path.join(dir, 'old.img');
  const newPath = path.join(dir, 'new.img');
  await fs.writeFile(oldPath, oldImage);
  await fs.writeFile(newPath, newImage);
  // Write the images back now, so their writeback does not land in a timed figure.
  for (const file of [oldPath, newPath]) await syncFile(file);
  return { oldPath, newPath };
}

export async function syncFile(file: string): Promise<void> {
  const handle = await fs.open(file, 'r+');
  await handle.sync();
  await handle.close();
}
