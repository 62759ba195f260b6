import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { KernelStatus } from '../../src/kernel/control';
import { Runtime, ddRead, sh, vab, vabChild } from './support/runtime';

jest.setTimeout(60_000);

/** The command line: `vab kernel`, `vab dmctl`, `vab passthrough`, as the demo and benchmarks use them. */
const KiB = 1024;
const MiB = 1024 * KiB;

async function isMounted(mountpoint: string): Promise<boolean> {
  const mounts = await fs.readFile('/proc/mounts', 'utf8');
  return mounts.split('\n').some((line) => line.split(' ')[1] === mountpoint);
}

describe('vab dmctl and vab passthrough against a running kernel', () => {
  let rt: Runtime;
  beforeAll(async () => {
    rt = await Runtime.start(['--max-io-bytes', '131072', '--channel-window', '3']);
  });
  afterAll(async () => {
    await rt?.dispose();
  });

  it('creates, lists, sets and removes, with clear errors and non-zero exits', async () => {
    const initial = JSON.parse((await rt.dmctl(['list', '--json'])).stdout) as KernelStatus;
    expect(initial.params).toMatchObject({ max_io_bytes: 131072, channel_window: 3 });
    const created = await rt.dmctl(['create', 'system', '--size', String(2 * MiB)]);
    expect(created).toMatchObject({ code: 0 });
    expect(created.stdout).toContain('system');
    const listed = await rt.dmctl(['list']);
    expect(listed.stdout).toMatch(/^system\t2097152\t4096\tdm-user:system\t0\t0\t0$/m);
    expect((await sh(`stat -c %s ${rt.mount}/system`)).stdout.trim()).toBe(String(2 * MiB));

    const duplicate = await rt.dmctl(['create', 'system', '--size', '4096']);
    expect(duplicate.code).not.toBe(0);
    expect(duplicate.stderr).toMatch(/already exists/);
    const badSize = await rt.dmctl(['create', 'odd', '--size', '1000']);
    expect(badSize.code).not.toBe(0);
    expect(badSize.stderr).toMatch(/multiple of 512/);
    const unknown = await rt.dmctl(['remove', 'nothing']);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toMatch(/no target named "nothing"/);
    const badParam = await rt.dmctl(['set', 'bogus_ms', '5']);
    expect(badParam.code).not.toBe(0);
    expect(badParam.stderr).toMatch(/unknown kernel parameter/);

    for (const [param, value] of [['daemon_timeout_ms', 1234], ['restart_grace_ms', 50], ['io_timeout_ms', 9000], ['channel_window', 3], ['max_io_bytes', 262144]] as const) {
      expect((await rt.dmctl(['set', param, String(value)])).code).toBe(0);
    }
    const status = JSON.parse((await rt.dmctl(['list', '--json'])).stdout) as KernelStatus;
    expect(status.params).toEqual({ daemon_timeout_ms: 1234, restart_grace_ms: 50, io_timeout_ms: 9000, channel_window: 3, max_io_bytes: 262144 });
    expect(status.targets).toEqual([{ name: 'system', sectors: 4096, channels: 0, queued: 0, held: 0, had_daemon: false, removed: false, kind: 'dm-user', misc: 'system' }]);
    expect(status.mount).toBe(rt.mount);

    expect((await rt.dmctl(['remove', 'system'])).code).toBe(0);
    expect((await sh(`ls -A ${rt.mount}`)).stdout.trim()).toBe('');
    await fs.access(path.join(rt.run, 'dm-user', 'system')).then(
      () => Promise.reject(new Error('endpoint still there')),
      () => undefined,
    );
  });

  it('passes reads, writes, fsync and hole punches through to the image', async () => {
    const { image, file, content } = await rt.createTarget('data', 4 * MiB);
    const daemon = await rt.passthrough('data', image, 4);
    const patch = path.join(rt.dir, 'patch');
    const patchBytes = Buffer.alloc(128 * KiB, 0x5a);
    await fs.writeFile(patch, patchBytes);
    const wrote = await sh(`dd if=${patch} of=${file} bs=64k seek=2 oflag=direct conv=notrunc,fsync status=none`);
    expect(wrote).toMatchObject({ code: 0, stderr: '' });
    const punched = await sh(`fallocate --punch-hole --offset ${1 * MiB} --length ${64 * KiB} ${file}`);
    expect(punched).toMatchObject({ code: 0, stderr: '' });
    const expected = Buffer.from(content);
    patchBytes.copy(expected, 128 * KiB);
    expected.fill(0, 1 * MiB, 1 * MiB + 64 * KiB);
    expect((await fs.readFile(image)).equals(expected)).toBe(true);
    const out = path.join(rt.dir, 'data.out');
    expect((await ddRead(file, { bs: 1 * MiB, out })).code).toBe(0);
    expect((await fs.readFile(out)).equals(expected)).toBe(true);
    // Unaligned writes are refused, like O_DIRECT on a block device; unaligned reads work.
    const unaligned = await sh(`printf abc | dd of=${file} bs=3 seek=1 conv=notrunc status=none`);
    expect(unaligned.stderr).toMatch(/Invalid argument/);
    expect((await sh(`head -c 5 ${file} | od -An -tx1`)).stdout.trim().split(/\s+/)).toEqual([...expected.subarray(0, 5)].map((b) => b.toString(16).padStart(2, '0')));

    expect((await rt.dmctl(['remove', 'data'])).code).toBe(0);
    expect(await daemon.exited).toEqual({ code: 0, signal: null });
    expect(daemon.lines).toContain('vab passthrough: data target gone');
  });

  it('passthrough: exits non-zero for a missing target, stops on SIGTERM', async () => {
    const missing = await vab(['passthrough', 'ghost', '--run', rt.run, '--image', '/dev/null']);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toMatch(/no dm-user target/);
    const { image } = await rt.createTarget('stopme', 64 * KiB);
    const daemon = await rt.passthrough('stopme', image, 2);
    await rt.waitForTarget('stopme', (t) => t.channels === 2, 'two channels');
    daemon.signal('SIGTERM');
    expect(await daemon.exited).toEqual({ code: 0, signal: null });
    await rt.waitForTarget('stopme', (t) => t.channels === 0, 'the channels to close');
  });

  it('refuses a second kernel on the same run directory', async () => {
    const second = await vab(['kernel', '--mount', path.join(rt.dir, 'mnt2'), '--run', rt.run]);
    expect(second.code).not.toBe(0);
    expect(second.stderr).toMatch(/already running/);
    // Nor on the live kernel's mount from another run directory: its mount must survive.
    const intruder = await vab(['kernel', '--mount', rt.mount, '--run', path.join(rt.dir, 'run2')]);
    expect(intruder.code).not.toBe(0);
    expect(intruder.stderr).toMatch(new RegExp(`pid ${rt.kernel.pid}\\) is already serving`));
    expect(await isMounted(rt.mount)).toBe(true);
    expect((await rt.dmctl(['list'])).code).toBe(0);
  });
});

describe('vab kernel lifetime', () => {
  it('reports a kernel that is not running', async () => {
    const r = await vab(['dmctl', '--run', '/nonexistent/vab-run', 'list']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/not running/);
  });

  it('refuses a bad parameter flag before creating or mounting anything', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vab-cli-params-'));
    try {
      const r = await vab(['kernel', '--mount', path.join(dir, 'mnt'), '--run', path.join(dir, 'run'), '--max-io-bytes', '1000']);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/max_io_bytes must be an integer from 4096/);
      expect(await fs.readdir(dir)).toEqual([]);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('on SIGTERM fails queued IO, unmounts and exits 0; restarts over what a SIGKILLed kernel left', async () => {
    const rt = await Runtime.start(['--page-cache', '--daemon-timeout-ms', '30000']);
    try {
      const { image, file, content } = await rt.createTarget('cached', 1 * MiB);
      const daemon = await rt.passthrough('cached', image, 1);
      // Buffered reads through the page cache (no O_DIRECT) see the image.
      const out = path.join(rt.dir, 'cached.out');
      expect((await sh(`cat ${file} > ${out}`)).code).toBe(0);
      expect((await fs.readFile(out)).equals(content)).toBe(true);
      daemon.signal('SIGKILL');
      await daemon.exited;
      await rt.createTarget('waiting', 64 * KiB);
      const reader = ddRead(path.join(rt.mount, 'waiting'), { bs: 4096, count: 1 });
      await rt.waitForTarget('waiting', (t) => t.queued === 1, 'a queued read');
      rt.kernel.signal('SIGTERM');
      const r = await reader;
      expect(r.stderr).toMatch(/Input\/output error/);
      expect(await rt.kernel.exited).toEqual({ code: 0, signal: null });
      expect(await isMounted(rt.mount)).toBe(false);

      // A kernel killed outright leaves a dead mount and stale sockets; the next one cleans up.
      const killed = vabChild(['kernel', '--mount', rt.mount, '--run', rt.run, '--log', rt.log]);
      await killed.waitForLine(/ready/);
      expect((await vab(['dmctl', '--run', rt.run, 'create', 'x', '--size', '4096'])).code).toBe(0);
      killed.signal('SIGKILL');
      await killed.exited;
      expect(await isMounted(rt.mount)).toBe(true);
      const again = vabChild(['kernel', '--mount', rt.mount, '--run', rt.run, '--log', rt.log]);
      try {
        await again.waitForLine(/ready/);
        expect((await vab(['dmctl', '--run', rt.run, 'create', 'x', '--size', '4096'])).code).toBe(0);
        expect((await sh(`ls ${rt.mount}`)).stdout.trim()).toBe('x');
      } finally {
        again.signal('SIGTERM');
        expect(await again.exited).toEqual({ code: 0, signal: null });
      }
    } finally {
      await rt.dispose();
    }
  });
});
