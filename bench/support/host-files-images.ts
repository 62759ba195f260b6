import { promises as fs } from 'node:fs';
import path from 'node:path';
import { runChecked } from '../../src/util/exec';

/**
 * Two versions of an ext4 system image holding real files taken from this host (shared
 * libraries, executables, Python modules): what an OTA of a real system partition looks like,
 * with files in extents, some compressible and some not. NEW is OLD after an "update": every
 * tenth file patched in place and grown a little, every fiftieth removed, a few added. Both are
 * made the same way (fixed time, UUID and hash seed), so unchanged files mostly stay put and
 * moved ones show up as copies, as in real OTAs.
 */

const HOST_DIRS = ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/bin', '/usr/lib/gcc', '/usr/lib/python3', '/usr/lib/python3.11', '/usr/local/lib/node_modules'];
const LARGEST_FILE = 16 * 1024 * 1024;

async function listFiles(dir: string, budget: { bytes: number }, into: Array<{ file: string; size: number }>): Promise<void> {
  let entries: string[];
  try {
    entries = (await fs.readdir(dir)).sort();
  } catch {
    return; // not on this host
  }
  for (const name of entries) {
    if (budget.bytes <= 0) return;
    const file = path.join(dir, name);
    const stat = await fs.lstat(file).catch(() => undefined);
    if (!stat) continue;
    if (stat.isDirectory()) await listFiles(file, budget, into);
    else if (stat.isFile() && stat.size > 0 && stat.size <= LARGEST_FILE) {
      into.push({ file, size: stat.size });
      budget.bytes -= stat.size;
    }
  }
}

async function stage(dir: string, files: Array<{ file: string; size: number }>, version: 'old' | 'new'): Promise<void> {
  await fs.mkdir(dir, { recursive: true });
  for (let i = 0; i < files.length; i++) {
    if (version === 'new' && i % 50 === 49) continue; // removed in the update
    const data = await fs.readFile(files[i].file).catch(() => undefined);
    if (!data) continue;
    if (version === 'new' && i % 10 === 3) {
      // Patched: a few bytes in the middle change and the file grows a little.
      for (let k = 0; k < 16; k++) data[(Math.floor(data.length / 2) + k * 97) % data.length] ^= 0x5a;
      const grown = Buffer.concat([data, Buffer.from(`update ${i}\n`.repeat(24))]);
      await fs.writeFile(path.join(dir, `f${i}`), grown);
      continue;
    }
    await fs.writeFile(path.join(dir, `f${i}`), data);
  }
  if (version === 'new') {
    for (let i = 0; i < files.length; i += 97) {
      const data = await fs.readFile(files[i].file).catch(() => undefined);
      if (data) await fs.writeFile(path.join(dir, `added${i}`), Buffer.concat([Buffer.from(`added ${i}\n`), data.subarray(0, data.length >> 1)]));
    }
  }
}

async function mkfs(stageDir: string, image: string, sizeMiB: number): Promise<void> {
  await runChecked('mkfs.ext4', ['-q', '-F', '-b', '4096', '-U', '6b6a6c3e-0000-4000-8000-0000000000b1', '-E', 'hash_seed=6b6a6c3e-0000-4000-8000-0000000000b2', '-d', stageDir, image, `${sizeMiB}M`], {
    env: { ...process.env, E2FSPROGS_FAKE_TIME: '1700000000' },
  });
}

/** Writes `<dir>/old/system.img` and `<dir>/new/system.img`; returns the bytes of files in OLD. */
export async function makeHostFilesImages(dir: string, imageMiB: number, filesMiB: number): Promise<{ files: number; bytes: number }> {
  const files: Array<{ file: string; size: number }> = [];
  const budget = { bytes: filesMiB * 1024 * 1024 };
  for (const hostDir of HOST_DIRS) await listFiles(hostDir, budget, files);
  for (const version of ['old', 'new'] as const) {
    const stageDir = path.join(dir, `stage-${version}`);
    await stage(stageDir, files, version);
    await fs.mkdir(path.join(dir, version), { recursive: true });
    await mkfs(stageDir, path.join(dir, version, 'system.img'), imageMiB);
    await fs.rm(stageDir, { recursive: true, force: true });
  }
  return { files: files.length, bytes: files.reduce((sum, f) => sum + f.size, 0) };
}
