import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { extractPayload } from '../../src/payload/extract';
import { generatePayload } from '../../src/payload/generate';
import { inspectPayload } from '../../src/payload/inspect';
import { randomBytes, tempDir } from './support/images';

const run = promisify(execFile);

/** A small root filesystem tree; `version` 2 is what an update would change it into. */
async function makeTree(root: string, version: 1 | 2): Promise<void> {
  await fs.mkdir(path.join(root, 'bin'), { recursive: true });
  await fs.mkdir(path.join(root, 'etc'), { recursive: true });
  await fs.mkdir(path.join(root, 'lib'), { recursive: true });
  const library = randomBytes(42, 1536 * 1024);
  if (version === 2) for (let i = 100; i < library.length; i += 65536) library[i] ^= 0x33; // a patched library
  await fs.writeFile(path.join(root, 'lib', 'libvab.so'), library);
  await fs.writeFile(path.join(root, 'bin', 'tool'), randomBytes(7, 300 * 1024));
  await fs.writeFile(path.join(root, 'etc', 'build.prop'), `ro.build.version=${version}\n`.repeat(50));
  if (version === 1) await fs.writeFile(path.join(root, 'etc', 'removed.conf'), 'old setting\n');
  if (version === 2) await fs.writeFile(path.join(root, 'bin', 'added'), randomBytes(9, 200 * 1024));
}

describe('generate then extract, real ext4 and erofs images', () => {
  let dir: string;
  const images: Record<'old' | 'new', Record<string, Buffer>> = { old: {}, new: {} };

  beforeAll(async () => {
    dir = await tempDir('vab-fsimg-');
    for (const [side, version] of [['old', 1], ['new', 2]] as const) {
      const tree = path.join(dir, `tree-${side}`);
      await makeTree(tree, version);
      await fs.mkdir(path.join(dir, side));
      const erofs = path.join(dir, side, 'system.img');
      const ext4 = path.join(dir, side, 'vendor.img');
      await run('mkfs.erofs', ['--quiet', '-T', '1700000000', erofs, tree]);
      await run('mkfs.ext4', ['-q', '-F', '-b', '4096', '-d', tree, ext4, '8M'], { env: { ...process.env, E2FSPROGS_FAKE_TIME: '1700000000' } });
      images[side] = { system: await fs.readFile(erofs), vendor: await fs.readFile(ext4) };
    }
  });
  afterAll(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  async function expectExtracted(out: string): Promise<void> {
    for (const [name, data] of Object.entries(images.new)) expect((await fs.readFile(path.join(out, `${name}.img`))).equals(data)).toBe(true);
  }

  it('full payload', async () => {
    const file = path.join(dir, 'full.bin');
    await generatePayload({ targetDir: path.join(dir, 'new'), output: file });
    await extractPayload(file, { outDir: path.join(dir, 'out-full') });
    await expectExtracted(path.join(dir, 'out-full'));
  });

  it('incremental payload, mostly copies', async () => {
    const file = path.join(dir, 'delta.bin');
    await generatePayload({ targetDir: path.join(dir, 'new'), sourceDir: path.join(dir, 'old'), output: file, compression: 'xz' });
    const summary = await inspectPayload(file);
    expect(summary.kind).toBe('incremental');
    for (const p of summary.partitions) expect(p.op_counts.SOURCE_COPY).toBeGreaterThan(0);
    expect(summary.file_size).toBeLessThan((await fs.stat(path.join(dir, 'full.bin'))).size / 2);
    await extractPayload(file, { outDir: path.join(dir, 'out-delta'), sourceDir: path.join(dir, 'old') });
    await expectExtracted(path.join(dir, 'out-delta'));
  });
});
