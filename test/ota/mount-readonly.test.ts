import { promises as fs } from 'node:fs';
import path from 'node:path';
import { mountReadOnly, probeFilesystem, ReadOnlyMount, unmountReadOnly } from '../../src/ota/mount-readonly';
import { run, start } from '../../src/util/exec';
import { forceCleanup, loopsFor, makeImage, mountsUnder, tempDir, waitFor } from './support/postinstall';

jest.setTimeout(60_000);

let dir: string;
let erofs: string;
let ext4: string;

beforeAll(async () => {
  dir = await tempDir('vab-mount-ro-');
  const entries = { 'hello.txt': { text: 'hello\n' } };
  erofs = await makeImage(dir, 'e', 'erofs', entries);
  ext4 = await makeImage(dir, 'x', 'ext4', entries);
});

afterAll(async () => {
  if (!dir) return;
  await forceCleanup(dir, [erofs, ext4]);
  await fs.rm(dir, { recursive: true, force: true });
});

describe('probeFilesystem', () => {
  async function probeBytes(name: string, bytes: Buffer): Promise<string | undefined> {
    const file = path.join(dir, name);
    await fs.writeFile(file, bytes);
    return probeFilesystem(file);
  }

  it('finds erofs by its u32 LE magic at 1024 and ext2/3/4 by its u16 LE magic at 1080', async () => {
    const erofsHead = Buffer.alloc(2048);
    Buffer.from([0xe2, 0xe1, 0xf5, 0xe0]).copy(erofsHead, 1024);
    expect(await probeBytes('golden-erofs', erofsHead)).toBe('erofs');
    const extHead = Buffer.alloc(2048);
    Buffer.from([0x53, 0xef]).copy(extHead, 1080);
    expect(await probeBytes('golden-ext', extHead)).toBe('ext4');
    // Byte-swapped magics, a magic one byte off, and a file that ends before the magic are nothing.
    const swapped = Buffer.alloc(2048);
    Buffer.from([0xe0, 0xf5, 0xe1, 0xe2]).copy(swapped, 1024);
    Buffer.from([0xef, 0x53]).copy(swapped, 1080);
    expect(await probeBytes('swapped', swapped)).toBeUndefined();
    const shifted = Buffer.alloc(2048);
    Buffer.from([0x53, 0xef]).copy(shifted, 1081);
    expect(await probeBytes('shifted', shifted)).toBeUndefined();
    expect(await probeBytes('short', extHead.subarray(0, 1081))).toBeUndefined();
    // And what mkfs really writes.
    expect(await probeFilesystem(erofs)).toBe('erofs');
    expect(await probeFilesystem(ext4)).toBe('ext4');
  });
});

describe('mountReadOnly', () => {
  async function mountpoint(name: string): Promise<string> {
    return fs.mkdtemp(path.join(dir, `${name}-`));
  }

  async function readThrough(mount: ReadOnlyMount): Promise<string> {
    // A child reads the mount, as post-install programs do.
    return (await run('cat', [path.join(mount.mountpoint, 'hello.txt')])).stdout;
  }

  it('mounts erofs through a read-only loop device when file-backed is not wanted', async () => {
    const mount = await mountReadOnly(erofs, await mountpoint('eloop'), 'erofs', undefined, { erofsFileBacked: false });
    expect(mount).toMatchObject({ via: 'loop', loopDevice: expect.stringMatching(/^\/dev\/loop\d+$/) });
    expect(await readThrough(mount)).toBe('hello\n');
    expect((await run('blockdev', ['--getro', mount.loopDevice ?? ''])).stdout.trim()).toBe('1');
    expect(await unmountReadOnly(mount)).toBe('');
    expect(await loopsFor(erofs)).toEqual([]);
    expect(await mountsUnder(mount.mountpoint)).toEqual([]);
  });

  it('undoes a busy mount lazily and still detaches the loop device once it is free', async () => {
    const mount = await mountReadOnly(ext4, await mountpoint('busy'), 'ext4');
    expect(mount.via).toBe('loop');
    const holder = start('sleep', ['60'], { cwd: mount.mountpoint });
    try {
      const problem = await unmountReadOnly(mount);
      expect(problem).toMatch(/umount .* failed \(.*busy.*\); detached lazily/);
      expect(await mountsUnder(mount.mountpoint)).toEqual([]);
    } finally {
      await holder.stop('SIGKILL');
    }
    // losetup -d on a busy device only marks it to go when its last user does.
    await waitFor(async () => (await loopsFor(ext4)).length === 0);
  });

  it('leaves no loop device behind when the mount fails', async () => {
    await expect(mountReadOnly(erofs, await mountpoint('wrong'), 'ext4')).rejects.toMatchObject({
      code: 'ESTATE',
      message: expect.stringContaining(`${erofs}: cannot mount read-only as ext4: mount of /dev/loop`),
    });
    expect(await loopsFor(erofs)).toEqual([]);
  });
});
