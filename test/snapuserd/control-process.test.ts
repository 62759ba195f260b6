import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { ChildHandle } from '../../src/util/exec';
import { Runtime, sh, vab, vabChild } from '../kernel/support/runtime';
import { prepareSnapshot, ServedSnapshot } from './support/daemon';

jest.setTimeout(120_000);

const SIZE = 2 * 1024 * 1024;
const NOBODY = 'setpriv --reuid=65534 --regid=65534 --clear-groups';

/**
 * `vab snapuserd` with its control socket, driven by `vab snapctl` as libsnapshot drives
 * Android's: real kernel, real daemon, real reads of the block files from child processes.
 */
describe('vab snapuserd --run DIR (control socket) and vab snapctl', () => {
  let rt: Runtime;
  let daemon: ChildHandle;
  const images: Record<string, Buffer> = {};
  const snaps: Record<string, ServedSnapshot> = {};
  const snapctl = (command: string) => vab(['snapctl', '--run', rt.run, command]);

  async function pair(name: string): Promise<ServedSnapshot> {
    const base = path.join(rt.dir, `${name}.base`);
    const target = path.join(rt.dir, `${name}.new`);
    const old = randomBytes(SIZE);
    const next = Buffer.from(old);
    for (let b = 0; b < SIZE / 4096; b += 3) randomBytes(4096).copy(next, b * 4096);
    await fs.writeFile(base, old);
    await fs.writeFile(target, next);
    images[name] = next;
    return prepareSnapshot(rt, name, base, target);
  }

  async function readBlock(name: string): Promise<Buffer> {
    const out = path.join(rt.dir, `${name}.read`);
    const r = await sh(`dd if=${path.join(rt.mount, name)} of=${out} bs=64k iflag=direct status=none`);
    if (r.code !== 0) throw new Error(`reading ${name}: ${r.stderr}`);
    return fs.readFile(out);
  }

  beforeAll(async () => {
    rt = await Runtime.start(['--daemon-timeout-ms', '3000']);
    snaps.system = await pair('system');
    snaps.vendor = await pair('vendor');
    daemon = vabChild(['snapuserd', '--run', rt.run, '--log', path.join(rt.dir, 'snapuserd.log')]);
    rt.daemons.push(daemon);
    await daemon.waitForLine(/^vab snapuserd: ready, listening on /);
  });
  afterAll(async () => {
    await rt?.dispose();
  });

  it('listens on <run>/snapuserd.sock, mode 0600', async () => {
    const st = await fs.stat(path.join(rt.run, 'snapuserd.sock'));
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o600);
  });

  it('init answers success,<num_sectors>; after start the block file reads as the new image', async () => {
    for (const name of ['system', 'vendor']) {
      const s = snaps[name];
      expect(await snapctl(`init,${name},${s.cow},${s.base},${s.base}`)).toMatchObject({ code: 0, stdout: `success,${SIZE / 512}\n` });
      expect(await snapctl(`start,${name}`)).toMatchObject({ code: 0, stdout: 'success\n' });
      expect((await readBlock(name)).equals(images[name])).toBe(true);
    }
    expect(await snapctl('getstatus,system')).toMatchObject({ code: 0, stdout: 'snapshot\n' });
    expect(await snapctl('update-verify')).toMatchObject({ code: 0, stdout: 'success\n' });
  });

  it('a bad COW makes init answer fail (exit 1) and the daemon keeps serving the others', async () => {
    const bad = path.join(rt.dir, 'bad.cow');
    await fs.writeFile(bad, randomBytes(8192));
    const created = await rt.dmctl(['create', 'product', '--size', String(SIZE)]);
    expect(created.code).toBe(0);
    const r = await snapctl(`init,product,${bad},${snaps.system.base},${snaps.system.base}`);
    expect(r).toMatchObject({ code: 1, stdout: 'fail\n' });
    expect(await snapctl(`init,product,${path.join(rt.dir, 'missing.cow')},${snaps.system.base},${snaps.system.base}`)).toMatchObject({ code: 1, stdout: 'fail\n' });
    expect(await snapctl('no_such_command')).toMatchObject({ code: 1, stdout: 'fail\n' });
    expect(daemon.running).toBe(true);
    expect((await readBlock('vendor')).equals(images.vendor)).toBe(true);
    const log = await fs.readFile(path.join(rt.dir, 'snapuserd.log'), 'utf8');
    expect(log).toMatch(/"misc":"product"/);
    expect(log).toMatch(/bad\.cow/);
  });

  it('an unprivileged user cannot connect', async () => {
    const node = process.execPath;
    const socket = path.join(rt.run, 'snapuserd.sock');
    const probe = `${node} -e "require('net').connect(process.argv[1]).on('connect', () => process.exit(0)).on('error', (e) => { console.error(e.code); process.exit(1); })" ${socket}`;
    const r = await sh(`${NOBODY} ${probe}`);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe('EACCES');
    expect((await sh(probe)).code).toBe(0);
  });

  it('delete lets a handler go: its IO then fails at once, and delete of an unknown one succeeds', async () => {
    expect(await snapctl('delete,vendor')).toMatchObject({ code: 0, stdout: 'success\n' });
    const r = await sh(`dd if=${path.join(rt.mount, 'vendor')} of=/dev/null bs=4k count=1 iflag=direct status=none`);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/Input\/output error/);
    expect(await snapctl('delete,vendor')).toMatchObject({ code: 0, stdout: 'success\n' });
    expect(await snapctl('getstatus,vendor')).toMatchObject({ stdout: 'snapshot-merge-failed\n' });
  });

  it('detach: the listener goes, IO is still served, and the daemon exits once its targets are removed', async () => {
    expect(await snapctl('detach')).toMatchObject({ code: 0 });
    await expect(fs.stat(path.join(rt.run, 'snapuserd.sock'))).rejects.toThrow(/ENOENT/);
    expect((await readBlock('system')).equals(images.system)).toBe(true);
    expect(daemon.running).toBe(true);
    for (const name of ['system', 'vendor', 'product']) expect((await rt.dmctl(['remove', name])).code).toBe(0);
    const exit = await Promise.race([daemon.exited, new Promise((resolve) => setTimeout(() => resolve('still running'), 15_000))]);
    expect(exit).toEqual({ code: 0, signal: null });
    expect(daemon.stdout).toContain('vab snapuserd: stopped (detach)');
  });
});
