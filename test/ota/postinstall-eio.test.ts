import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { runPostinstall } from '../../src/ota/postinstall';
import type { PostinstallEvent } from '../../src/ota/postinstall-progress';
import { Runtime } from '../kernel/support/runtime';
import { forceCleanup, loopsFor, makeImage, mountsUnder } from './support/postinstall';

jest.setTimeout(120_000);

/**
 * The partition's block file is served by `vab kernel` + `vab passthrough` (child processes), as
 * after `vab boot`. When its daemon dies the program's reads fail with EIO: the runner must say so,
 * name the partition, and still unmount. Needs the built CLI (npm run build).
 */
let rt: Runtime;
let mountRoot: string;
const images: string[] = [];

beforeAll(async () => {
  rt = await Runtime.start();
  mountRoot = path.join(rt.dir, 'postinstall');
});

afterEach(async () => {
  expect(await mountsUnder(mountRoot)).toEqual([]);
  for (const image of images) expect(await loopsFor(image)).toEqual([]);
});

afterAll(async () => {
  if (!rt) return;
  await forceCleanup(mountRoot, images);
  await rt.dispose();
});

/** Serves an image as target `name` and returns its block file under the kernel's mount. */
async function serve(name: string, kind: 'erofs' | 'ext4', go: string): Promise<{ block: string; daemon: Awaited<ReturnType<Runtime['passthrough']>> }> {
  // Reads a large incompressible file only once the test says go, i.e. after the daemon is dead.
  const script = `#!/bin/sh\nprintf 'global_progress 0.5\\n' >&3\nwhile [ ! -e ${go} ]; do sleep 0.05; done\ncat "$(dirname "$0")/big.bin" > /dev/null\n`;
  const image = await makeImage(rt.dir, name, kind, { postinst: { text: script, exec: true }, 'big.bin': { text: randomBytes(3 << 20) } });
  const size = Math.ceil((await fs.stat(image)).size / 4096) * 4096;
  await fs.truncate(image, size);
  images.push(image);
  const created = await rt.dmctl(['create', name, '--size', String(size)]);
  expect(created.code).toBe(0);
  const daemon = await rt.passthrough(name, image, 2);
  const block = path.join(rt.mount, name);
  images.push(block);
  return { block, daemon };
}

it.each([['erofs'], ['ext4']] as const)('reports EIO with the partition name when the daemon dies while %s post-install reads', async (kind) => {
  const name = `sys${kind}`;
  const go = path.join(rt.dir, `go-${kind}`);
  const { block, daemon } = await serve(name, kind, go);
  let killed: Promise<void> | undefined;
  const onProgress = (event: PostinstallEvent): void => {
    if (event.event !== 'progress' || killed) return;
    killed = (async () => {
      daemon.signal('SIGKILL');
      await daemon.exited;
      await fs.writeFile(go, '');
    })();
  };
  const began = performance.now();
  const run = runPostinstall([{ name, blockFile: block, filesystemType: '' }], { targetSlot: 1, timeoutMs: 60_000, mountRoot, onProgress });
  await expect(run).rejects.toMatchObject({
    code: 'EIO',
    partition: name,
    details: expect.objectContaining({ ioError: true }),
    message: expect.stringMatching(new RegExp(`^post-install of ${name}: .*postinst hit an IO error reading the partition and exited with 1: .*Input/output error`)),
  });
  await killed;
  // A terminated daemon fails IO at once: far within the program's own timeout.
  expect(performance.now() - began).toBeLessThan(30_000);

  // With the daemon gone even the superblock cannot be read: the probe says so, naming the file.
  await expect(runPostinstall([{ name, blockFile: block }], { targetSlot: 1, timeoutMs: 60_000, mountRoot })).rejects.toMatchObject({
    code: 'EIO',
    partition: name,
    message: expect.stringContaining(`${block} at offset 0: cannot read the superblock`),
  });
});
