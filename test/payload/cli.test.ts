import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { RunResult, runChecked } from '../../src/util/exec';
import { vab as cli } from '../support/cli';
import { AOSP_FIXTURES as AOSP, describeWithFiles, makeRepoImages } from '../support/fixtures';
import { OpType } from '../../src/payload/manifest';
import { buildPayload, extent, payloadNamed } from './support/build';
import { evolve, randomBytes, tempDir, writeImages } from './support/images';

function vab(...args: string[]) {
  return cli(args);
}

/** The same checks on a full payload vab makes from the repo's own images, then on Android's sample. */
describe('vab payload (command line), repo-made images', () => {
  let dir: string;
  const images: Record<string, Buffer> = {};
  let file: string;
  let generated: RunResult;
  beforeAll(async () => {
    dir = await tempDir('vab-cli-');
    const built = await makeRepoImages(path.join(dir, 'built'));
    await fs.mkdir(path.join(dir, 'target'));
    for (const [name, from] of [['kernel', built.ext4], ['root', built.erofs]] as const) {
      images[name] = await fs.readFile(from);
      await fs.copyFile(from, path.join(dir, 'target', `${name}.img`));
    }
    file = path.join(dir, 'full.bin');
    generated = await vab('payload', 'generate', '--target', path.join(dir, 'target'), '-o', file, '--compression', 'xz');
  });
  afterAll(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('generates a full payload and extracts it into images identical to the originals', async () => {
    expect(generated).toMatchObject({ code: 0, stderr: '' });
    expect(generated.stdout).toMatch(/full\.bin: \d+ bytes; kernel \(full, \d+ ops\), root \(full, \d+ ops\); minor version 0\n$/);
    const out = path.join(dir, 'out');
    const result = await vab('payload', 'extract', file, '--out', out);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`kernel: ${path.join(out, 'kernel.img')} (${images.kernel.length} bytes, sha256 verified)`);
    expect((await fs.readFile(path.join(out, 'kernel.img'))).equals(images.kernel)).toBe(true);
    expect((await fs.readFile(path.join(out, 'root.img'))).equals(images.root)).toBe(true);
  });

  it('extract --fsync makes the same images (durable before they are renamed into place)', async () => {
    const out = path.join(dir, 'out-fsync');
    const result = await vab('payload', 'extract', file, '--out', out, '--fsync');
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect((await fs.readFile(path.join(out, 'kernel.img'))).equals(images.kernel)).toBe(true);
    expect((await fs.readFile(path.join(out, 'root.img'))).equals(images.root)).toBe(true);
  });

  it('inspects as text and as JSON', async () => {
    const sha = (name: string) => runChecked('sha256sum', [path.join(dir, 'target', `${name}.img`)]).then((r) => r.stdout.split(' ')[0]);
    const text = await vab('payload', 'inspect', file);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/version 2\.0 \(full\), block size 4096/);
    expect(text.stdout).toContain(`partition kernel\n    new ${images.kernel.length} bytes sha256 ${await sha('kernel')}\n`);
    expect(text.stdout).toMatch(/partition kernel\n.*\n\s+\d+ operations: .*REPLACE_XZ \d+/);
    const json = await vab('payload', 'inspect', '--json', file);
    const summary = JSON.parse(json.stdout);
    expect(summary.kind).toBe('full');
    expect(summary.partitions.map((p: { name: string }) => p.name)).toEqual(['kernel', 'root']);
    expect(summary.partitions[1].new_hash).toBe(await sha('root'));
    expect(summary.signatures.payload.count).toBe(0);
  });

  it('fails with a non-zero exit and a message naming the file and offset on a bad payload', async () => {
    const bad = Buffer.from(await fs.readFile(file));
    bad.write('NOPE', 0);
    await fs.writeFile(path.join(dir, 'bad.bin'), bad);
    const result = await vab('payload', 'extract', path.join(dir, 'bad.bin'), '--out', path.join(dir, 'bad-out'));
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(`vab: ${path.join(dir, 'bad.bin')} at offset 0: not a payload: magic is 4e4f5045, expected 43724155 ("CrAU") [ECORRUPT]\n`);
    expect(existsSync(path.join(dir, 'bad-out'))).toBe(false);
  });

  it('generates a signed incremental payload, verifies it and applies it; a wrong key is refused', async () => {
    const old = { system: randomBytes(1, 3 * 1024 * 1024) };
    await writeImages(path.join(dir, 'old'), old);
    const neu = { system: evolve(old.system, 2) };
    await writeImages(path.join(dir, 'new'), neu);
    for (const name of ['key', 'other']) {
      await runChecked('openssl', ['genrsa', '-out', path.join(dir, `${name}.pem`), '2048']);
      await runChecked('openssl', ['rsa', '-in', path.join(dir, `${name}.pem`), '-pubout', '-out', path.join(dir, `${name}.pub`)]);
    }
    const file = path.join(dir, 'delta.bin');
    const gen = await vab('payload', 'generate', '--target', path.join(dir, 'new'), '--source', path.join(dir, 'old'), '-o', file, '--key', path.join(dir, 'key.pem'), '--compression', 'xz');
    expect(gen.code).toBe(0);
    expect(gen.stdout).toMatch(/delta\.bin: \d+ bytes, signed; system \(incremental, \d+ ops\)/);

    const inspect = await vab('payload', 'inspect', file, '--key', path.join(dir, 'key.pub'));
    expect(inspect.code).toBe(0);
    expect(inspect.stdout).toMatch(/metadata signature: 1 \(267 bytes\), verifies/);
    expect(inspect.stdout).toMatch(/VABC: snapshots on, vabc on, compression lz4, cow v3, compression factor 65536/);

    const out = path.join(dir, 'out-delta');
    const extract = await vab('payload', 'extract', file, '--out', out, '--source', path.join(dir, 'old'), '--key', path.join(dir, 'key.pub'));
    expect(extract.code).toBe(0);
    expect((await fs.readFile(path.join(out, 'system.img'))).equals(neu.system)).toBe(true);

    const wrongOut = path.join(dir, 'wrong');
    const wrong = await vab('payload', 'extract', file, '--out', wrongOut, '--source', path.join(dir, 'old'), '--key', path.join(dir, 'other.pub'));
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/^vab: .*delta\.bin: the metadata signature does not verify against the given key \[EHASH\]\n$/);
    expect(existsSync(wrongOut)).toBe(false);
    const inspectWrong = await vab('payload', 'inspect', file, '--key', path.join(dir, 'other.pub'));
    expect(inspectWrong.code).toBe(1);
    expect(inspectWrong.stdout).toMatch(/payload signature: 1 \(267 bytes\), DOES NOT VERIFY/);
  });
});

const AOSP_FILES = ['full_payload.bin', 'disk_ext2_4k.img', 'disk_sqfs_default.img'].map((f) => path.join(AOSP, f));

describeWithFiles('vab payload (command line), the AOSP sample payload', AOSP_FILES, () => {
  let dir: string;
  beforeAll(async () => {
    dir = await tempDir('vab-cli-aosp-');
  });
  afterAll(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('extracts the AOSP full payload into images identical to the originals', async () => {
    const out = path.join(dir, 'aosp');
    const result = await vab('payload', 'extract', path.join(AOSP, 'full_payload.bin'), '--out', out);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('kernel: ');
    expect((await fs.readFile(path.join(out, 'kernel.img'))).equals(await fs.readFile(path.join(AOSP, 'disk_ext2_4k.img')))).toBe(true);
    expect((await fs.readFile(path.join(out, 'root.img'))).equals(await fs.readFile(path.join(AOSP, 'disk_sqfs_default.img')))).toBe(true);
  });

  it('inspects as text and as JSON', async () => {
    const text = await vab('payload', 'inspect', path.join(AOSP, 'full_payload.bin'));
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/version 2\.0 \(full\), block size 4096/);
    expect(text.stdout).toMatch(/partition kernel\n\s+new 4194304 bytes sha256 [0-9a-f]{64}\n\s+2 operations: REPLACE_BZ 2/);
    const json = await vab('payload', 'inspect', '--json', path.join(AOSP, 'full_payload.bin'));
    const summary = JSON.parse(json.stdout);
    expect(summary.partitions.map((p: { name: string }) => p.name)).toEqual(['kernel', 'root']);
    expect(summary.partitions[1].op_counts).toEqual({ REPLACE_XZ: 1 });
    expect(summary.signatures.payload.count).toBe(0);
  });

  it('fails with a non-zero exit and a message naming the file and offset on a bad payload', async () => {
    const bad = Buffer.from(await fs.readFile(path.join(AOSP, 'full_payload.bin')));
    bad.write('NOPE', 0);
    await fs.writeFile(path.join(dir, 'bad.bin'), bad);
    const result = await vab('payload', 'extract', path.join(dir, 'bad.bin'), '--out', path.join(dir, 'bad-out'));
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(`vab: ${path.join(dir, 'bad.bin')} at offset 0: not a payload: magic is 4e4f5045, expected 43724155 ("CrAU") [ECORRUPT]\n`);
    expect(existsSync(path.join(dir, 'bad-out'))).toBe(false);
  });
});

describe('vab payload: minor versions and partition names (command line)', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await tempDir('vab-cli-minor-');
    const old = { system: randomBytes(5, 2 * 1024 * 1024) };
    await writeImages(path.join(dir, 'old'), old);
    // Whole blocks, as Android's images are: anything else makes generate warn on stderr.
    const neu = evolve(old.system, 6);
    await writeImages(path.join(dir, 'new'), { system: neu.subarray(0, neu.length - (neu.length % 4096)) });
  });
  afterAll(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('generate --minor-version 7 writes minor version 7, and inspect --strict accepts it', async () => {
    const file = path.join(dir, 'm7.bin');
    const gen = await vab('payload', 'generate', '--target', path.join(dir, 'new'), '--source', path.join(dir, 'old'), '-o', file, '--minor-version', '7');
    expect(gen.stderr).toBe('');
    expect(gen.stdout).toMatch(/m7\.bin: \d+ bytes; system \(incremental, \d+ ops\); minor version 7\n$/);
    const inspect = await vab('payload', 'inspect', '--strict', file);
    expect(inspect.code).toBe(0);
    expect(inspect.stdout).toContain('minor version 7 (delta) allows REPLACE, REPLACE_BZ, SOURCE_COPY, SOURCE_BSDIFF, ZERO, DISCARD, REPLACE_XZ, PUFFDIFF, BROTLI_BSDIFF\n');
    expect(inspect.stdout).not.toContain('NOT ALLOWED');
  });

  it('--compression zstd with the incremental default is refused, naming the conflict', async () => {
    const file = path.join(dir, 'zstd.bin');
    const gen = await vab('payload', 'generate', '--target', path.join(dir, 'new'), '--source', path.join(dir, 'old'), '-o', file, '--compression', 'zstd');
    expect(gen.code).toBe(1);
    expect(gen.stderr).toMatch(/^vab: --compression zstd writes REPLACE_ZSTD, which needs minor version 10; minor version 9 does not allow it .*\[EINVAL_INPUT\]\n$/);
    expect(existsSync(file)).toBe(false);
  });

  it('inspect reports an op the minor version does not allow; --strict exits non-zero', async () => {
    const image = Buffer.alloc(8192, 7);
    const file = path.join(dir, 'zero-in-full.bin');
    await fs.writeFile(file, buildPayload({ partitions: [{ partition_name: 'system', image, ops: [{ type: OpType.REPLACE, data: image.subarray(0, 4096), dst_extents: [extent(0, 1)] }, { type: OpType.ZERO, dst_extents: [extent(1, 1)] }] }] }));
    const plain = await vab('payload', 'inspect', file);
    expect(plain.code).toBe(0);
    expect(plain.stdout).toContain('NOT ALLOWED by minor version 0: partition system op 1 (ZERO) (1 in all)');
    const strict = await vab('payload', 'inspect', '--strict', file);
    expect(strict.code).toBe(1);
    expect(strict.stdout).toContain('NOT ALLOWED');
    expect(strict.stderr).toMatch(/zero-in-full\.bin: ops not allowed by minor version 0: partition system op 1 \(ZERO\) \(1 in all\); .* \[ECORRUPT\]\n$/);
  });

  it('extract refuses a partition named "../../evil-escape" and writes nothing anywhere', async () => {
    const file = path.join(dir, 'escape.bin');
    await fs.writeFile(file, payloadNamed(['system', '../../evil-escape']));
    const out = path.join(dir, 'out', 'a', 'b');
    const before = (await fs.readdir(dir, { recursive: true })).sort();
    const result = await vab('payload', 'extract', file, '--out', out);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(`vab: ${file} at offset 24: partition 1 is named "../../evil-escape": a partition name must not start with "." [ECORRUPT]\n`);
    expect((await fs.readdir(dir, { recursive: true })).sort()).toEqual(before);
  });
});
