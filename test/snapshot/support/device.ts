import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createCow } from '../../../src/cow';
import { DeviceLayout } from '../../../src/snapshot';

const BS = 4096;

/** Deterministic bytes that differ per seed. */
export function pattern(length: number, seed: number): Buffer {
  const out = Buffer.alloc(length);
  let x = seed * 2654435761 + 1;
  for (let i = 0; i < length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

export async function tempDevice(): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), 'vab-snapshot-'));
}

/** super/<p>.img of `blocks` blocks, and a real COW in data/ota that changes a quarter of it. */
export async function writeImageAndCow(device: string, name: string, blocks: number, seed: number): Promise<void> {
  const layout = new DeviceLayout(device);
  await fs.mkdir(layout.superDir, { recursive: true });
  await fs.mkdir(layout.cowDir, { recursive: true });
  const old = pattern(blocks * BS, seed);
  const next = Buffer.from(old);
  pattern((blocks / 4) * BS, seed + 100).copy(next, 0);
  old.copy(next, (blocks / 2) * BS, 0, BS); // a copy op
  await fs.writeFile(layout.image(name), old);
  const target = path.join(device, `${name}.new`);
  await fs.writeFile(target, next);
  await createCow(layout.image(name), target, layout.cow(name), { compression: 'none', threads: 1 });
  await fs.rm(target);
}

/** Every file under the device with its bytes, for "nothing changed" checks. */
export async function snapshotTree(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const entry of await fs.readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const file = path.join(entry.parentPath, entry.name);
    out[path.relative(dir, file)] = (await fs.readFile(file)).toString('hex');
  }
  return out;
}
