import { promises as fs } from 'node:fs';
import path from 'node:path';
import { mountReadOnly, ReadOnlyMount, unmountReadOnly } from '../../src/ota/mount-readonly';
import type { ChildHandle } from '../../src/util/exec';
import { forceUnmountUnder } from '../../src/fuse/cleanup';
import { runChecked } from '../../src/util/exec';
import { startVab, vab } from '../support/cli';
import { freshDevice, makeTestDevice, TestDevice } from './support/device';

jest.setTimeout(240_000);

/**
 * The flow a user runs, through bin/vab: apply a signed incremental payload, boot the snapshots as
 * block files, mount and run from them, post-install, merge, and the base images become the new
 * ones. The test process only reads the block files; the kernel and daemon serve them as children.
 */
describe('apply, boot, postinstall, merge', () => {
  let d: TestDevice;
  let device: string;
  let mount: string;
  let run: string;
  let boot: ChildHandle | undefined;
  const mounts: ReadOnlyMount[] = [];

  beforeAll(async () => {
    d = await makeTestDevice('vab-lifecycle-');
    device = await freshDevice(d, 'device');
    mount = path.join(d.dir, 'blocks');
    run = path.join(d.dir, 'run');
  });
  afterAll(async () => {
    for (const m of mounts) await unmountReadOnly(m).catch(() => undefined);
    if (boot?.running) await boot.stop('SIGTERM', 10_000);
    await forceUnmountUnder(d.dir);
    await fs.rm(d.dir, { recursive: true, force: true });
  });

  const sameFile = async (a: string, b: string, length?: number): Promise<boolean> => {
    const [x, y] = [await fs.readFile(a), await fs.readFile(b)];
    return length === undefined ? x.equals(y) : x.subarray(0, length).equals(y.subarray(0, length));
  };

  it('vab apply writes the update', async () => {
    expect(await vab(['apply', d.payload, '--device', device, '--key', d.publicKey])).toMatchObject({ code: 0, stderr: '' });
  });

  it('vab boot serves the new images as block files; the running images are untouched; erofs and ext4 mount; a program runs', async () => {
    boot = startVab(['boot', '--device', device, '--mount', mount, '--run', run, '--daemon-timeout-ms', '4000', '--log', path.join(d.dir, 'boot.log')]);
    await boot.waitForLine(/^vab boot: ready/, 60_000);
    expect(boot.stdout).toContain(`${path.join(mount, 'system')}\tsnapshot (snapuserd)`);
    for (const p of ['system', 'vendor']) {
      expect([p, await sameFile(path.join(mount, p), path.join(d.new, `${p}.img`))]).toEqual([p, true]);
      const oldSize = (await fs.stat(path.join(d.old, `${p}.img`))).size;
      expect([p, await sameFile(path.join(device, 'super', `${p}.img`), path.join(d.old, `${p}.img`), oldSize)]).toEqual([p, true]);
    }
    const record = JSON.parse(await fs.readFile(path.join(run, 'boot.json'), 'utf8'));
    expect(record.targets.map((t: { name: string; kind: string }) => `${t.name}:${t.kind}`)).toEqual(['system:snapshot', 'vendor:snapshot']);
    expect(Number(await fs.readFile(path.join(run, 'snapuserd.pid'), 'utf8'))).toBe(record.snapuserd_pid);
    const sys = path.join(d.dir, 'fs-system');
    const ven = path.join(d.dir, 'fs-vendor');
    await fs.mkdir(sys);
    await fs.mkdir(ven);
    mounts.push(await mountReadOnly(path.join(mount, 'system'), sys, 'erofs'));
    mounts.push(await mountReadOnly(path.join(mount, 'vendor'), ven, 'ext4'));
    expect((await runChecked(path.join(sys, 'bin/hello'), [])).stdout).toBe('hello from vab demo 2.0 (served through vab)\n');
    expect(await fs.readFile(path.join(ven, 'etc/vendor.prop'), 'utf8')).toBe('ro.vendor.build.version=2.0\n');
    while (mounts.length > 0) await unmountReadOnly(mounts.pop()!);
  });

  it('vab postinstall runs the program from the booted snapshot, with progress', async () => {
    const r = await vab(['postinstall', '--device', device, '--mount', mount, '--run', run, '--json'], { timeoutMs: 120_000 });
    expect(r.code).toBe(0);
    const events = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { event: string; partition: string; status?: string; fraction?: number });
    expect(events.filter((e) => e.event === 'progress').length).toBeGreaterThan(5);
    expect(events[events.length - 1]).toMatchObject({ event: 'done', partition: 'system', status: 'ok' });
    expect((await vab(['status', '--device', device, '--json'])).stdout).toContain('"state": "unverified"');
  });

  it('vab merge --wait merges into the base images; the block files stay the new images; the state is none', async () => {
    const r = await vab(['merge', '--device', device, '--run', run, '--wait'], { timeoutMs: 120_000 });
    expect(r).toMatchObject({ code: 0 });
    expect(r.stdout).toMatch(/done; the update is none/);
    for (const p of ['system', 'vendor']) {
      const size = (await fs.stat(path.join(d.new, `${p}.img`))).size;
      expect([p, await sameFile(path.join(device, 'super', `${p}.img`), path.join(d.new, `${p}.img`), size)]).toEqual([p, true]);
      expect([p, await sameFile(path.join(mount, p), path.join(d.new, `${p}.img`))]).toEqual([p, true]);
    }
    const list = await vab(['dmctl', '--run', run, 'list', '--json']);
    expect(JSON.parse(list.stdout).targets.map((t: { kind: string }) => t.kind)).toEqual(['linear', 'linear']);
    expect(JSON.parse((await vab(['status', '--device', device, '--json'])).stdout)).toMatchObject({ state: 'none', snapshots: [] });
    expect(await fs.readdir(path.join(device, 'data/ota'))).toEqual([]);
  });

  it('SIGTERM stops the boot: daemon and kernel gone, mount and pid files removed', async () => {
    boot!.signal('SIGTERM');
    expect(await boot!.exited).toEqual({ code: 0, signal: null });
    expect(boot!.stdout).toMatch(/vab boot: stopped \(SIGTERM\)/);
    await expect(fs.stat(path.join(run, 'boot.json'))).rejects.toThrow(/ENOENT/);
    const mounts = await fs.readFile('/proc/mounts', 'utf8');
    expect(mounts).not.toContain(mount);
  });
});
