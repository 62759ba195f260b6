import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { Runtime, sh, vab } from '../kernel/support/runtime';
import { pausedReader, prepareSnapshot, startSnapuserd } from './support/daemon';

jest.setTimeout(120_000);

/**
 * Real processes over FUSE: `vab kernel`, `vab dmctl create`, `vab snapuserd --no-socket` serving
 * base + COW. All IO on the mount comes from child processes.
 */
const MiB = 1024 * 1024;
const BLOCK = 64 * 1024;

async function must(script: string): Promise<string> {
  const r = await sh(script);
  if (r.code !== 0) throw new Error(`${script} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

/** OLD and NEW raw images of `size` bytes, with about 30% of NEW's 4 KiB blocks changed. */
async function imagePair(dir: string, name: string, size: number): Promise<{ base: string; target: string; content: Buffer }> {
  const old = randomBytes(size);
  const next = Buffer.from(old);
  for (let b = 0; b < size / 4096; b++) {
    if (b % 10 < 3) randomBytes(4096).copy(next, b * 4096);
    else if (b % 10 === 3) old.copy(next, b * 4096, ((b + 7) % (size / 4096)) * 4096, ((b + 7) % (size / 4096)) * 4096 + 4096);
    else if (b % 10 === 4) next.fill(0, b * 4096, b * 4096 + 4096);
  }
  const base = path.join(dir, `${name}.old`);
  const target = path.join(dir, `${name}.new`);
  await fs.writeFile(base, old);
  await fs.writeFile(target, next);
  return { base, target, content: next };
}

describe('filesystems from snapshots served by vab snapuserd', () => {
  let rt: Runtime;
  const mounted: string[] = [];
  const loops: string[] = [];
  beforeAll(async () => {
    rt = await Runtime.start(['--daemon-timeout-ms', '4000']);
  });
  afterAll(async () => {
    for (const dir of mounted.reverse()) await sh(`umount ${dir} || umount -l ${dir}`);
    for (const loop of loops) await sh(`losetup -d ${loop}`);
    await rt?.dispose();
  });

  /** Two trees: OLD and NEW differ in files, so the mount proves the COW was applied. */
  async function trees(): Promise<{ oldDir: string; newDir: string; files: Record<string, Buffer> }> {
    const oldDir = path.join(rt.dir, 'old-tree');
    const newDir = path.join(rt.dir, 'new-tree');
    const files: Record<string, Buffer> = { 'hello.txt': Buffer.from('hello from the new slot\n'), 'bin/blob': randomBytes(700 * 1024) };
    for (const [dir, data] of [[oldDir, { 'hello.txt': Buffer.from('old slot\n'), 'bin/blob': randomBytes(500 * 1024) }], [newDir, files]] as const) {
      for (const [name, bytes] of Object.entries(data)) {
        await fs.mkdir(path.dirname(path.join(dir, name)), { recursive: true });
        await fs.writeFile(path.join(dir, name), bytes);
      }
      await fs.writeFile(path.join(dir, 'postinstall.sh'), `#!/bin/sh\necho "${dir === newDir ? 'new' : 'old'} program ran with $1"\n`, { mode: 0o755 });
    }
    return { oldDir, newDir, files };
  }

  async function check(root: string, files: Record<string, Buffer>): Promise<void> {
    for (const [name, data] of Object.entries(files)) {
      const copy = path.join(rt.dir, 'copy.out');
      await must(`cat ${path.join(root, name)} > ${copy}`);
      expect((await fs.readFile(copy)).equals(data)).toBe(true);
    }
    expect(await must(`${path.join(root, 'postinstall.sh')} vab`)).toBe('new program ran with vab\n');
  }

  it('erofs: mounts read-only from base + COW and runs a program from it', async () => {
    const { oldDir, newDir, files } = await trees();
    const base = path.join(rt.dir, 'erofs.old');
    const target = path.join(rt.dir, 'erofs.new');
    await must(`mkfs.erofs ${base} ${oldDir} && mkfs.erofs ${target} ${newDir}`);
    const size = Math.ceil(Math.max((await fs.stat(base)).size, (await fs.stat(target)).size) / 4096) * 4096;
    await fs.truncate(base, size);
    await fs.truncate(target, size);
    const snap = await prepareSnapshot(rt, 'vendor', base, target);
    await startSnapuserd(rt, [snap], 2);
    const dir = path.join(rt.dir, 'vendor-ro');
    await fs.mkdir(dir);
    await must(`mount -t erofs -o ro ${snap.block} ${dir}`);
    mounted.push(dir);
    await check(dir, files);
    // The whole block file is the NEW image, and the base is untouched.
    await must(`cmp ${snap.block} ${target}`);
    expect((await fs.stat(base)).size).toBe(size);
  });

  it('ext4: mounts read-only on a direct-IO loop device over the snapshot', async () => {
    const { oldDir, newDir, files } = await trees();
    const base = path.join(rt.dir, 'ext4.old');
    const target = path.join(rt.dir, 'ext4.new');
    await must(`mkfs.ext4 -q -F -b 4096 -d ${oldDir} ${base} ${16 * 1024} && mkfs.ext4 -q -F -b 4096 -d ${newDir} ${target} ${16 * 1024}`);
    const snap = await prepareSnapshot(rt, 'system', base, target);
    await startSnapuserd(rt, [snap], 4);
    const loop = (await must(`losetup --direct-io=on -r -f --show ${snap.block}`)).trim();
    loops.push(loop);
    const dir = path.join(rt.dir, 'system-ro');
    await fs.mkdir(dir);
    await must(`mount -t ext4 -o ro ${loop} ${dir}`);
    mounted.push(dir);
    await check(dir, files);
  });

  it('refuses a bad handler and starts nothing (exit 1, reason on stderr)', async () => {
    const r = await vab(['snapuserd', '--run', rt.run, '--no-socket', `bad,${path.join(rt.dir, 'nope.cow')},/x,/x`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/nope\.cow.*\[ENOTFOUND\]|\/x.*\[ENOTFOUND\]/);
    const missing = await vab(['snapuserd', '--run', rt.run, '--no-socket']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/--no-socket needs at least one misc,cow,backing,base handler/);
  });
});

/** Readers paused at half-way; the daemon is stopped holding their next reads, then killed. */
async function killWithReadsHeld(rt: Runtime, name: string, block: string, size: number, daemon: Awaited<ReturnType<typeof startSnapuserd>>) {
  const readers = 4;
  const blocksEach = size / BLOCK / readers;
  const outs = Array.from({ length: readers }, (_, i) => path.join(rt.dir, `${name}-${i}.out`));
  const children = outs.map((out, i) => pausedReader(block, out, BLOCK, i * blocksEach, blocksEach));
  await Promise.all(children.map((c) => c.waitForLine(/^half$/)));
  daemon.signal('SIGSTOP');
  for (const c of children) c.stdin.write('go\n');
  await rt.waitForTarget(name, (t) => t.held === readers, 'the stopped daemon to hold one read per reader');
  daemon.signal('SIGKILL');
  await daemon.exited;
  return { children, outs };
}

describe('daemon restart with IO in flight', () => {
  let rt: Runtime | undefined;
  afterEach(async () => {
    await rt?.dispose();
    rt = undefined;
  });

  it("Android mode (restart_grace_ms 0): held reads fail with EIO at once; a new daemon serves again, byte-identical", async () => {
    rt = await Runtime.start(['--daemon-timeout-ms', '4000']);
    const size = 8 * MiB;
    const { base, target, content } = await imagePair(rt.dir, 'a', size);
    const snap = await prepareSnapshot(rt, 'sys', base, target);
    const daemon = await startSnapuserd(rt, [snap]);
    const { children } = await killWithReadsHeld(rt, 'sys', snap.block, size, daemon);
    const exits = await Promise.all(children.map((c) => c.exited));
    expect(exits.every((e) => e.code !== 0)).toBe(true);
    children.forEach((c) => expect(c.stderr).toMatch(/Input\/output error/));
    // With no daemon, a new read fails at once (well before the 4 s first-daemon wait).
    const started = Date.now();
    const r = await sh(`dd if=${snap.block} of=/dev/null bs=4096 count=1 iflag=direct status=none`);
    expect(r.code).not.toBe(0);
    expect(Date.now() - started).toBeLessThan(3500);
    await startSnapuserd(rt, [snap]);
    const out = path.join(rt.dir, 'after.out');
    await must(`dd if=${snap.block} of=${out} bs=${BLOCK} iflag=direct status=none`);
    expect((await fs.readFile(out)).equals(content)).toBe(true);
  });

  it('supervised (restart_grace_ms > 0): a killed daemon costs no errors; data byte-identical', async () => {
    rt = await Runtime.start(['--restart-grace-ms', '10000', '--daemon-timeout-ms', '2000']);
    const size = 8 * MiB;
    const { base, target, content } = await imagePair(rt.dir, 's', size);
    const snap = await prepareSnapshot(rt, 'sys', base, target);
    const daemon = await startSnapuserd(rt, [snap]);
    const { children, outs } = await killWithReadsHeld(rt, 'sys', snap.block, size, daemon);
    await rt.waitForTarget('sys', (t) => t.channels === 0 && t.queued === children.length, 'the held reads to be queued again');
    await startSnapuserd(rt, [snap]);
    const exits = await Promise.all(children.map((c) => c.exited));
    children.forEach((c) => expect(c.stderr).toBe(''));
    expect(exits.every((e) => e.code === 0)).toBe(true);
    const got = Buffer.concat(await Promise.all(outs.map((o) => fs.readFile(o))));
    expect(got.equals(content)).toBe(true);
    const errors = (await rt.logLines()).filter((l) => l.level === 'error' && l.target === 'sys');
    expect(errors).toEqual([]);
  });
});
