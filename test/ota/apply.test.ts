import { promises as fs } from 'node:fs';
import path from 'node:path';
import { runChecked } from '../../src/util/exec';
import os from 'node:os';
import { vab } from '../support/cli';
import { AOSP_FIXTURES, describeWithFiles } from '../support/fixtures';
import { freshDevice, makeTestDevice, snapshotTree, TestDevice } from './support/device';

jest.setTimeout(180_000);

/** `vab apply` and `vab cancel` through bin/vab on a small erofs + ext4 device whose vendor grows. */
describe('vab apply', () => {
  let d: TestDevice;
  beforeAll(async () => {
    d = await makeTestDevice('vab-apply-');
  });
  afterAll(async () => {
    await fs.rm(d.dir, { recursive: true, force: true });
  });

  const status = async (device: string): Promise<{ state: string; snapshots: Array<{ name: string; device_size: number; cow: { ops: number } | null }> }> =>
    JSON.parse((await vab(['status', '--device', device, '--json'])).stdout);

  it('writes COWs whose snapshot view is the new image; the base images keep their old content', async () => {
    const device = await freshDevice(d, 'good');
    const r = await vab(['apply', d.payload, '--device', device, '--key', d.publicKey]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^system: \d+ bytes, COW \d+ bytes from \d+ ops, verified$/m);
    expect(r.stdout).toMatch(/update written; state unverified\n$/);
    const s = await status(device);
    expect(s.state).toBe('unverified');
    for (const p of ['system', 'vendor']) {
      const newImage = await fs.readFile(path.join(d.new, `${p}.img`));
      const oldImage = await fs.readFile(path.join(d.old, `${p}.img`));
      const base = await fs.readFile(path.join(device, 'super', `${p}.img`));
      expect(base.subarray(0, oldImage.length).equals(oldImage)).toBe(true);
      expect(s.snapshots.find((x) => x.name === p)?.device_size).toBe(newImage.length);
      const view = path.join(device, `${p}.view`);
      await runChecked(process.execPath, [path.join(__dirname, '../../bin/vab'), 'cow', 'apply', path.join(device, 'data/ota', `${p}.cow`), '--base', path.join(device, 'super', `${p}.img`), '-o', view, '--size', String(newImage.length)]);
      expect((await fs.readFile(view)).equals(newImage)).toBe(true);
    }
    // vendor grows from 8 to 12 MiB: its base was grown first (the new tail reads as zeros).
    expect((await fs.stat(path.join(device, 'super', 'vendor.img'))).size).toBe((await fs.stat(path.join(d.new, 'vendor.img'))).size);
    const record = JSON.parse(await fs.readFile(path.join(device, 'metadata/ota/vab-update.json'), 'utf8'));
    expect(record.postinstall).toEqual([{ name: 'system', path: 'bin/postinst', filesystemType: 'erofs', optional: false }]);
    // Running it again finds the update written.
    expect((await vab(['apply', d.payload, '--device', device, '--key', d.publicKey])).stdout).toMatch(/already written/);
  });

  it('with --json prints progress lines and a summary', async () => {
    const device = await freshDevice(d, 'json');
    const r = await vab(['apply', d.payload, '--device', device, '--json']);
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { event: string; ops?: number; totalOps?: number; state?: string });
    expect(lines.filter((l) => l.event === 'progress').length).toBeGreaterThan(10);
    expect(lines[lines.length - 1]).toMatchObject({ event: 'done', state: 'unverified' });
  });

  it.each([
    ['a wrong key', async (device: string) => {
      await runChecked('openssl', ['genrsa', '-out', path.join(d.dir, 'other.pem'), '2048']);
      await runChecked('openssl', ['rsa', '-in', path.join(d.dir, 'other.pem'), '-pubout', '-out', path.join(d.dir, 'other.pub')]);
      return vab(['apply', d.payload, '--device', device, '--key', path.join(d.dir, 'other.pub')]);
    }, /signature/i],
    ['a payload for other old images', async (device: string) => {
      await fs.copyFile(path.join(d.new, 'system.img'), path.join(device, 'super', 'system.img'));
      return vab(['apply', d.payload, '--device', device, '--key', d.publicKey]);
    }, /super\/system\.img hashes to .*not the image this payload updates/],
    ['a truncated payload', async (device: string) => {
      const cut = path.join(d.dir, 'truncated.bin');
      const bytes = await fs.readFile(d.payload);
      await fs.writeFile(cut, bytes.subarray(0, bytes.length - 5000));
      return vab(['apply', cut, '--device', device]);
    }, /truncated|past the end/],
  ])('refuses %s before any write: the device is exactly as it was', async (_what, run, message) => {
    const device = await freshDevice(d, 'refused');
    const before = await snapshotTree(device);
    const r = await run(device);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(message);
    const after = await snapshotTree(device);
    // The 'other old images' case changed system.img itself before running; nothing else may differ.
    expect(Object.keys(after).sort()).toEqual(Object.keys(before).sort());
    for (const [file, bytes] of Object.entries(before)) if (!(file === 'super/system.img' && /other old/.test(_what))) expect([file, after[file] === bytes]).toEqual([file, true]);
  });

  it('cancel removes the COWs and statuses before boot; the state is none again', async () => {
    const device = await freshDevice(d, 'cancel');
    expect((await vab(['apply', d.payload, '--device', device])).code).toBe(0);
    const r = await vab(['cancel', '--device', device]);
    expect(r).toMatchObject({ code: 0, stdout: 'vab cancel: the update is cancelled; state none\n' });
    expect((await status(device)).state).toBe('none');
    expect(await fs.readdir(path.join(device, 'data/ota'))).toEqual([]);
    await expect(fs.stat(path.join(device, 'metadata/ota/vab-update.json'))).rejects.toThrow(/ENOENT/);
  });
});

describeWithFiles("vab apply on Android's sample full payload", [path.join(AOSP_FIXTURES, 'full_payload.bin')], () => {
  let dir: string;
  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vab-apply-aosp-'));
  });
  afterAll(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('applies to a device made from empty images (a full payload needs no source)', async () => {
    await fs.mkdir(path.join(dir, 'super'));
    for (const p of ['kernel', 'root']) await fs.writeFile(path.join(dir, 'super', `${p}.img`), Buffer.alloc(0));
    const r = await vab(['apply', path.join(AOSP_FIXTURES, 'full_payload.bin'), '--device', dir]);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/^kernel: 4194304 bytes, COW \d+ bytes from 2 ops, verified$/m);
    expect(r.stdout).toMatch(/^root: 12288 bytes, COW \d+ bytes from 1 ops, verified$/m);
    expect((await fs.stat(path.join(dir, 'super', 'kernel.img'))).size).toBe(4194304);
  });
});
