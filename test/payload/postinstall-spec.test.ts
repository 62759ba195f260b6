import { promises as fs } from 'node:fs';
import path from 'node:path';
import { decodeManifest, encodeManifest, PartitionUpdate } from '../../src/payload/manifest';
import { PayloadFile } from '../../src/payload/payload-file';
import { applyPostinstallSpecs, checkPostinstallSpecs, parsePostinstallSpec } from '../../src/payload/postinstall-spec';
import { vab } from '../support/cli';
import { randomBytes, tempDir } from './support/images';

describe('--postinstall PART:PATH[:FSTYPE][:optional]', () => {
  it.each([
    ['system:bin/postinst', { partition: 'system', path: 'bin/postinst', filesystemType: undefined, optional: false }],
    ['system:postinst:erofs', { partition: 'system', path: 'postinst', filesystemType: 'erofs', optional: false }],
    ['vendor:bin/x:ext4:optional', { partition: 'vendor', path: 'bin/x', filesystemType: 'ext4', optional: true }],
    ['vendor:bin/x::optional', { partition: 'vendor', path: 'bin/x', filesystemType: undefined, optional: true }],
    ['vendor:bin/x:optional', { partition: 'vendor', path: 'bin/x', filesystemType: undefined, optional: true }],
  ])('parses %s', (text, expected) => {
    expect(parsePostinstallSpec(text)).toEqual(expected);
  });

  it.each([
    ['system', /wrong number of fields/],
    [':bin/x', /partition name is empty/],
    ['system:', /program path is empty/],
    ['system:/bin/sh', /must be relative/],
    ['system:bin/../../etc/x', /must not contain "\.\."/],
    ['system:bin/x:EXT4!', /not a filesystem type/],
    ['system:bin/x:ext4:optional:more', /wrong number of fields/],
  ])('refuses %s', (text, message) => {
    expect(() => parsePostinstallSpec(text)).toThrow(message);
  });

  it('refuses a partition the payload does not have, or one named twice, before any work', () => {
    expect(() => checkPostinstallSpecs(['system'], [parsePostinstallSpec('vendor:x')])).toThrow(/vendor, which is not in the payload \(system\)/);
    expect(() => checkPostinstallSpecs(['system'], [parsePostinstallSpec('system:x'), parsePostinstallSpec('system:y')])).toThrow(/given twice/);
  });

  it('writes update_metadata.proto fields 2, 3, 4 and 9 of PartitionUpdate', () => {
    const update: PartitionUpdate = { partition_name: 'p', operations: [], merge_operations: [] };
    applyPostinstallSpecs([update], [parsePostinstallSpec('p:bin/x:ext4:optional')]);
    const bytes = encodeManifest({ block_size: 4096, partitions: [update] });
    // partitions (field 13) holds: name (1) "p", run_postinstall (2) true, postinstall_path (3)
    // "bin/x", filesystem_type (4) "ext4", postinstall_optional (9) true.
    const partition = Buffer.from([0x0a, 0x01, 0x70, 0x10, 0x01, 0x1a, 0x05, ...Buffer.from('bin/x'), 0x22, 0x04, ...Buffer.from('ext4'), 0x48, 0x01]);
    expect(bytes.includes(Buffer.concat([Buffer.from([0x6a, partition.length]), partition]))).toBe(true);
    expect(decodeManifest(bytes).partitions[0]).toMatchObject({ run_postinstall: true, postinstall_path: 'bin/x', filesystem_type: 'ext4', postinstall_optional: true });
  });
});

describe('vab payload generate --postinstall (command line)', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await tempDir('vab-postinstall-spec-');
    await fs.mkdir(path.join(dir, 'target'));
    await fs.writeFile(path.join(dir, 'target', 'system.img'), randomBytes(1, 64 * 1024));
    await fs.writeFile(path.join(dir, 'target', 'vendor.img'), randomBytes(2, 64 * 1024));
  });
  afterAll(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('records the fields, and inspect shows them', async () => {
    const out = path.join(dir, 'p.bin');
    const generated = await vab(['payload', 'generate', '--target', path.join(dir, 'target'), '-o', out, '--postinstall', 'system:bin/otapreopt:erofs', '--postinstall', 'vendor:postinst::optional']);
    expect(generated).toMatchObject({ code: 0, stderr: '' });
    const payload = await PayloadFile.open(out);
    try {
      const byName = Object.fromEntries(payload.manifest.partitions.map((p) => [p.partition_name, p]));
      expect(byName.system).toMatchObject({ run_postinstall: true, postinstall_path: 'bin/otapreopt', filesystem_type: 'erofs' });
      expect(byName.system.postinstall_optional).toBeFalsy();
      expect(byName.vendor).toMatchObject({ run_postinstall: true, postinstall_path: 'postinst', postinstall_optional: true });
      expect(byName.vendor.filesystem_type).toBeFalsy();
    } finally {
      await payload.close();
    }
    const text = await vab(['payload', 'inspect', out]);
    expect(text.stdout).toContain('post-install: bin/otapreopt (erofs)\n');
    expect(text.stdout).toContain('post-install: postinst, optional\n');
    const json = JSON.parse((await vab(['payload', 'inspect', '--json', out])).stdout) as { partitions: Array<{ name: string; postinstall?: unknown }> };
    expect(json.partitions.find((p) => p.name === 'vendor')?.postinstall).toEqual({ path: 'postinst', optional: true });
  });

  it('fails with exit 1 and writes nothing for a bad spec', async () => {
    const out = path.join(dir, 'bad.bin');
    const result = await vab(['payload', 'generate', '--target', path.join(dir, 'target'), '-o', out, '--postinstall', 'product:bin/x']);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/product, which is not in the payload/);
    await expect(fs.stat(out)).rejects.toThrow(/ENOENT/);
  });
});
