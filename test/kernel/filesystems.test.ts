import { promises as fs } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { Runtime, sh } from './support/runtime';

jest.setTimeout(90_000);

/**
 * (6) Real filesystems on block files served by `vab kernel` + `vab passthrough`, mounted read-only
 * as postinstall does: ext4 on a direct-IO loop device, and erofs mounted file-backed (Linux 6.12+).
 */
const MiB = 1024 * 1024;

let rt: Runtime;
let content: string;
const mounted: string[] = [];
const loops: string[] = [];
const files: Record<string, Buffer> = {
  'hello.txt': Buffer.from('hello from a block file\n'),
  'bin/blob': randomBytes(300 * 1024),
  'deep/a/b/c.txt': Buffer.from('nested\n'),
};
const SCRIPT = '#!/bin/sh\necho "postinstall ran with $1 on $(uname -s)"\n';

async function must(script: string): Promise<string> {
  const r = await sh(script);
  if (r.code !== 0) throw new Error(`${script} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

beforeAll(async () => {
  rt = await Runtime.start();
  content = path.join(rt.dir, 'content');
  for (const [name, data] of Object.entries(files)) {
    await fs.mkdir(path.dirname(path.join(content, name)), { recursive: true });
    await fs.writeFile(path.join(content, name), data);
  }
  await fs.writeFile(path.join(content, 'postinstall.sh'), SCRIPT, { mode: 0o755 });
});

afterAll(async () => {
  // Filesystems first, then loop devices, then daemons and kernel; each step even if one fails.
  for (const dir of mounted.reverse()) await sh(`umount ${dir} || umount -l ${dir}`);
  for (const loop of loops) await sh(`losetup -d ${loop}`);
  await rt?.dispose();
});

/** Serves `image` (padded to whole 4 KiB blocks) as target `name`; returns its block file. */
async function serveImage(name: string, image: string): Promise<string> {
  const size = Math.ceil((await fs.stat(image)).size / 4096) * 4096;
  await fs.truncate(image, size);
  const created = await rt.dmctl(['create', name, '--size', String(size)]);
  expect(created.code).toBe(0);
  await rt.passthrough(name, image, 4);
  return path.join(rt.mount, name);
}

async function checkTree(root: string): Promise<void> {
  for (const [name, data] of Object.entries(files)) {
    const copy = path.join(rt.dir, 'copy.out');
    await must(`cat ${path.join(root, name)} > ${copy}`);
    expect((await fs.readFile(copy)).equals(data)).toBe(true);
  }
  expect(await must(`${path.join(root, 'postinstall.sh')} vab`)).toBe('postinstall ran with vab on Linux\n');
}

it('(6) ext4 on a read-only direct-IO loop device over a block file', async () => {
  const image = path.join(rt.dir, 'ext4.img');
  await must(`mkfs.ext4 -q -F -b 4096 -d ${content} ${image} ${16 * MiB / 1024}`);
  const block = await serveImage('system', image);
  const loop = (await must(`losetup --direct-io=on -r -f --show ${block}`)).trim();
  loops.push(loop);
  const dir = path.join(rt.dir, 'system-ro');
  await fs.mkdir(dir);
  await must(`mount -t ext4 -o ro ${loop} ${dir}`);
  mounted.push(dir);
  await checkTree(dir);
  // Read-only all the way down: nothing may be written through it.
  expect((await sh(`touch ${dir}/new`)).code).not.toBe(0);
});

it('(6) erofs mounted file-backed from a block file', async () => {
  const image = path.join(rt.dir, 'erofs.img');
  await must(`mkfs.erofs ${image} ${content}`);
  const block = await serveImage('vendor', image);
  const dir = path.join(rt.dir, 'vendor-ro');
  await fs.mkdir(dir);
  await must(`mount -t erofs -o ro ${block} ${dir}`);
  mounted.push(dir);
  await checkTree(dir);
});
