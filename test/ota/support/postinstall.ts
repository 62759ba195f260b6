import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { run, runChecked } from '../../../src/util/exec';

/** A file in a test image: text (mode 0755 when `exec`), or a symlink to `link`. */
export type ImageEntry = { text: string | Buffer; exec?: boolean } | { link: string };

/** Builds a real erofs (mkfs.erofs from a directory) or ext4 (mkfs.ext4 -d) image of `entries`. */
export async function makeImage(dir: string, name: string, kind: 'erofs' | 'ext4', entries: Record<string, ImageEntry>): Promise<string> {
  const tree = await fs.mkdtemp(path.join(dir, `${name}-tree-`));
  for (const [file, entry] of Object.entries(entries)) {
    const target = path.join(tree, file);
    await fs.mkdir(path.dirname(target), { recursive: true });
    if ('link' in entry) await fs.symlink(entry.link, target);
    else await fs.writeFile(target, entry.text, { mode: entry.exec ? 0o755 : 0o644 });
  }
  const image = path.join(dir, `${name}.${kind}`);
  if (kind === 'erofs') await runChecked('mkfs.erofs', [image, tree]);
  else await runChecked('mkfs.ext4', ['-q', '-F', '-b', '4096', '-d', tree, image, '16M']);
  return image;
}

export async function tempDir(prefix: string): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), prefix));
}

/** Mounts whose mount point is under `root` (read from /proc/self/mountinfo). */
export async function mountsUnder(root: string): Promise<string[]> {
  const text = await fs.readFile('/proc/self/mountinfo', 'utf8');
  return text
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((mountpoint): mountpoint is string => mountpoint !== undefined && (mountpoint === root || mountpoint.startsWith(`${root}/`)));
}

/** Loop devices attached to `image` (losetup -j). */
export async function loopsFor(image: string): Promise<string[]> {
  const result = await run('losetup', ['-j', image]);
  return result.stdout
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => line.split(':')[0]);
}

/** Last-resort cleanup for afterAll: whatever a failed test left mounted or attached. */
export async function forceCleanup(root: string, images: readonly string[]): Promise<void> {
  for (const mountpoint of (await mountsUnder(root)).reverse()) await run('umount', ['-l', mountpoint]);
  for (const image of images) for (const loop of await loopsFor(image)) await run('losetup', ['-d', loop]);
}

/** Running and not a zombie. */
export async function alive(pid: number): Promise<boolean> {
  const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  return stat !== '' && !/^\d+ \(.*\) [ZX]/.test(stat);
}

export async function waitFor(done: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error(`condition not reached within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
