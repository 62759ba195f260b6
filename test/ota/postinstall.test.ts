import { promises as fs } from 'node:fs';
import path from 'node:path';
import { PostinstallError, PostinstallPartition, runPostinstall } from '../../src/ota/postinstall';
import type { PostinstallEvent } from '../../src/ota/postinstall-progress';
import { alive, forceCleanup, loopsFor, makeImage, mountsUnder, tempDir, waitFor } from './support/postinstall';

jest.setTimeout(120_000);

/**
 * The post-install runner on real erofs and ext4 images, really mounted read-only, running real
 * programs from them. After every test nothing may stay mounted or attached.
 */
let dir: string;
let mountRoot: string;
let out: string;
const images: Record<string, string> = {};

/** A program that checks its argv, reports progress on fd 3 in awkward pieces, and succeeds. */
function progressScript(tag: string): string {
  return `#!/bin/sh
echo "$0|$1|$2" > ${out}/${tag}.args
touch "$(dirname "$0")/written" 2>/dev/null && echo writable > ${out}/${tag}.rw
printf 'global_progress 0.25\\n' >&$2
printf 'not a progress line\\nglobal_progress 2\\nglobal_pro' >&$2
sleep 0.2
printf 'gress 0.5\\nglobal_progress nan\\nglobal_progress 0.75' >&$2
echo "done on stdout"
`;
}

beforeAll(async () => {
  dir = await tempDir('vab-postinstall-');
  mountRoot = path.join(dir, 'mnt');
  out = path.join(dir, 'out');
  await fs.mkdir(out);
  const common = {
    postinst: { text: progressScript('postinst'), exec: true },
    'bin/fail': { text: '#!/bin/sh\necho "it went wrong" >&2\nexit 1\n', exec: true },
    'bin/slow': { text: `#!/bin/sh\ntrap '' TERM\nsleep 60 &\necho $! > ${out}/grandchild\nprintf 'global_progress 0.1\\n' >&3\nsleep 60\n`, exec: true },
    'bin/inner': { link: '../postinst' },
    'escape-abs': { link: '/bin/sh' },
    'escape-rel': { link: '../../../../../../bin/sh' },
    'data.txt': { text: 'not a program\n' },
  };
  images.erofs = await makeImage(dir, 'system', 'erofs', common);
  images.ext4 = await makeImage(dir, 'vendor', 'ext4', { ...common, postinst: { text: progressScript('vendor'), exec: true } });
  images.raw = path.join(dir, 'raw.img');
  await fs.writeFile(images.raw, Buffer.alloc(64 * 1024));
});

afterEach(async () => {
  // The runner's promise: every test, however it ended, leaves nothing mounted or attached.
  expect(await mountsUnder(mountRoot)).toEqual([]);
  for (const image of Object.values(images)) expect(await loopsFor(image)).toEqual([]);
  expect(await fs.readdir(mountRoot).catch(() => [])).toEqual([]);
  for (const file of await fs.readdir(out)) await fs.rm(path.join(out, file));
});

afterAll(async () => {
  if (!dir) return;
  await forceCleanup(mountRoot, Object.values(images));
  await fs.rm(dir, { recursive: true, force: true });
});

const system = (extra: Partial<PostinstallPartition> = {}): PostinstallPartition => ({ name: 'system', blockFile: images.erofs, filesystemType: '', ...extra });
const vendor = (extra: Partial<PostinstallPartition> = {}): PostinstallPartition => ({ name: 'vendor', blockFile: images.ext4, filesystemType: '', ...extra });

function options(events: PostinstallEvent[] = [], extra: { timeoutMs?: number; signal?: AbortSignal; killGraceMs?: number } = {}) {
  return { targetSlot: 1, timeoutMs: 30_000, mountRoot, onProgress: (e: PostinstallEvent) => events.push(e), ...extra };
}

async function exists(file: string): Promise<boolean> {
  return fs.stat(file).then(() => true, () => false);
}

it('probes erofs and ext4, mounts them read-only (erofs file-backed, ext4 on a loop device) and runs postinst with [path, slot, "3"]', async () => {
  const events: PostinstallEvent[] = [];
  const results = await runPostinstall([system(), vendor()], options(events));
  expect(results.map((r) => [r.name, r.ok, r.exit.code])).toEqual([['system', true, 0], ['vendor', true, 0]]);

  const [program, slot, fd] = (await fs.readFile(path.join(out, 'postinst.args'), 'utf8')).trim().split('|');
  expect(path.dirname(program)).toMatch(new RegExp(`^${mountRoot}/system-`));
  expect([path.basename(program), slot, fd]).toEqual(['postinst', '1', '3']);
  expect(await fs.readFile(path.join(out, 'vendor.args'), 'utf8')).toMatch(/\/vendor-[^/]+\/postinst\|1\|3\n$/);
  expect(await exists(path.join(out, 'postinst.rw'))).toBe(false);
  expect(await exists(path.join(out, 'vendor.rw'))).toBe(false);

  const starts = events.filter((e) => e.event === 'start');
  expect(starts).toEqual([
    expect.objectContaining({ partition: 'system', fstype: 'erofs', mountedVia: 'file', index: 0, count: 2, overall: 0 }),
    expect.objectContaining({ partition: 'vendor', fstype: 'ext4', mountedVia: 'loop', index: 1, count: 2, overall: 0.5 }),
  ]);
  // 2 clamps to 1; a line split across writes still counts; NaN and garbage are dropped; the
  // last line counts without its newline. Each partition weighs one half.
  const progress = events.filter((e) => e.event === 'progress').map((e) => [e.partition, e.event === 'progress' && e.fraction, e.overall]);
  expect(progress).toEqual([
    ['system', 0.25, 0.125], ['system', 1, 0.5], ['system', 0.5, 0.25], ['system', 0.75, 0.375],
    ['vendor', 0.25, 0.625], ['vendor', 1, 1], ['vendor', 0.5, 0.75], ['vendor', 0.75, 0.875],
  ]);
  expect(events.filter((e) => e.event === 'done')).toEqual([
    expect.objectContaining({ partition: 'system', status: 'ok', code: 0, overall: 0.5 }),
    expect.objectContaining({ partition: 'vendor', status: 'ok', code: 0, overall: 1 }),
  ]);
});

it('takes filesystem_type when given, and follows a symlink that stays inside the partition', async () => {
  const results = await runPostinstall([vendor({ filesystemType: 'ext4', postinstallPath: 'bin/inner' })], options());
  expect(results[0]).toMatchObject({ name: 'vendor', ok: true });
  expect(await fs.readFile(path.join(out, 'vendor.args'), 'utf8')).toMatch(/\/bin\/inner\|1\|3\n$/);
});

it('fails on a non-zero exit, naming the partition and the status, and runs nothing after it', async () => {
  const events: PostinstallEvent[] = [];
  const failing = runPostinstall([vendor({ postinstallPath: 'bin/fail' }), system()], options(events));
  await expect(failing).rejects.toBeInstanceOf(PostinstallError);
  await expect(failing).rejects.toMatchObject({
    code: 'ESTATE',
    partition: 'vendor',
    message: expect.stringMatching(/^post-install of vendor: .*bin\/fail exited with 1: it went wrong$/),
    details: expect.objectContaining({ exit: { code: 1, signal: null }, ioError: false }),
  });
  expect(events.at(-1)).toMatchObject({ event: 'done', partition: 'vendor', status: 'failed', code: 1 });
  expect(await exists(path.join(out, 'postinst.args'))).toBe(false);
});

it('logs and ignores the failure of an optional post-install, then goes on', async () => {
  const events: PostinstallEvent[] = [];
  const results = await runPostinstall([vendor({ postinstallPath: 'bin/fail', optional: true }), system()], options(events));
  expect(results.map((r) => [r.name, r.ok, r.optional, r.exit.code])).toEqual([['vendor', false, true, 1], ['system', true, false, 0]]);
  expect(events.filter((e) => e.event === 'done').map((e) => e.event === 'done' && e.status)).toEqual(['failed-optional', 'ok']);
  expect(await exists(path.join(out, 'postinst.args'))).toBe(true);
});

it('kills a program that outlives the timeout together with its process group, even when it ignores SIGTERM', async () => {
  const began = performance.now();
  const slow = runPostinstall([system({ postinstallPath: 'bin/slow' })], options([], { timeoutMs: 1_000, killGraceMs: 500 }));
  await expect(slow).rejects.toMatchObject({ code: 'ETIMEDOUT', partition: 'system', message: expect.stringMatching(/still ran after 1000 ms/) });
  const elapsed = performance.now() - began;
  expect(elapsed).toBeGreaterThanOrEqual(1_000);
  expect(elapsed).toBeLessThan(30_000);
  const grandchild = Number(await fs.readFile(path.join(out, 'grandchild'), 'utf8'));
  expect(grandchild).toBeGreaterThan(0);
  await waitFor(async () => !(await alive(grandchild)));
});

it('unmounts and rejects when the AbortSignal fires mid-run', async () => {
  const controller = new AbortController();
  const events: PostinstallEvent[] = [];
  const onProgress = (e: PostinstallEvent): void => {
    events.push(e);
    if (e.event === 'progress') controller.abort();
  };
  const began = performance.now();
  const run = runPostinstall([vendor({ postinstallPath: 'bin/slow' }), system()], { ...options(), onProgress, signal: controller.signal, killGraceMs: 500 });
  await expect(run).rejects.toMatchObject({ partition: 'vendor', message: 'post-install of vendor: aborted', details: expect.objectContaining({ fatal: true }) });
  expect(performance.now() - began).toBeLessThan(30_000);
  expect(events.some((e) => e.partition === 'system')).toBe(false);
  const grandchild = Number(await fs.readFile(path.join(out, 'grandchild'), 'utf8'));
  await waitFor(async () => !(await alive(grandchild)));
  // Aborted before it starts: nothing is mounted at all.
  await expect(runPostinstall([system()], { ...options(), signal: controller.signal })).rejects.toMatchObject({ message: 'post-install of system: aborted' });
});

it.each([
  ['../x', /leads outside/],
  ['/bin/sh', /must be relative/],
  ['escape-abs', /escape-abs leads to \/(usr\/)?bin\/(da|ba|busybox)?sh, outside the partition/],
  ['escape-rel', /escape-rel leads to .*, outside the partition/],
])('refuses postinstall_path %s even for an optional partition', async (postinstallPath, why) => {
  for (const partition of [system({ postinstallPath, optional: true }), vendor({ postinstallPath, optional: true })]) {
    await expect(runPostinstall([partition], options())).rejects.toMatchObject({
      code: 'EINVAL_INPUT',
      partition: partition.name,
      message: expect.stringMatching(why),
    });
  }
});

it('reports a missing or unrunnable program, and an unknown filesystem with the file and offset', async () => {
  await expect(runPostinstall([system({ postinstallPath: 'missing' })], options())).rejects.toMatchObject({
    code: 'ESTATE',
    message: expect.stringMatching(/post-install of system: cannot resolve missing: .*ENOENT/),
  });
  await expect(runPostinstall([vendor({ postinstallPath: 'data.txt' })], options())).rejects.toMatchObject({
    code: 'ESTATE',
    message: expect.stringMatching(/cannot start .*data.txt: .*EACCES/),
  });
  await expect(runPostinstall([{ name: 'odm', blockFile: images.raw }], options())).rejects.toMatchObject({
    code: 'EUNSUPPORTED',
    message: `post-install of odm: ${images.raw} at offset 1024: no erofs or ext2/3/4 superblock (set filesystem_type)`,
  });
  await expect(runPostinstall([{ name: 'odm', blockFile: images.raw, filesystemType: 'ext4' }], options())).rejects.toMatchObject({
    code: 'ESTATE',
    message: expect.stringMatching(/post-install of odm: .*raw.img: cannot mount read-only as ext4: mount of \/dev\/loop\d+ failed/),
  });
  await expect(runPostinstall([system()], { ...options(), targetSlot: -1 })).rejects.toMatchObject({ code: 'EINVAL_INPUT' });
  await expect(runPostinstall([system({ name: '../up' })], options())).rejects.toMatchObject({ code: 'EINVAL_INPUT' });
});
