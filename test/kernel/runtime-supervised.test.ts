import { promises as fs } from 'node:fs';
import path from 'node:path';
import { ChildHandle, start } from '../../src/util/exec';
import { Runtime, ddRead, sh } from './support/runtime';

jest.setTimeout(60_000);

/** --restart-grace-ms: a supervised daemon restart costs no read errors; held writes still fail. */
const KiB = 1024;
const MiB = 1024 * KiB;
const BLOCK = 64 * KiB;

let rt: Runtime;
beforeAll(async () => {
  rt = await Runtime.start(['--restart-grace-ms', '10000', '--daemon-timeout-ms', '2000']);
});
afterAll(async () => {
  await rt?.dispose();
});

/**
 * A sequential reader of `blocks` blocks from `first`, in two halves: it reports "half" and waits
 * for a line on stdin before the second half, so the test can stop the daemon at a known point.
 */
function pausedReader(file: string, out: string, first: number, blocks: number): ChildHandle {
  const half = blocks / 2;
  const dd = (skip: number, seek: number): string =>
    `dd if=${file} of=${out} bs=${BLOCK} skip=${skip} seek=${seek} count=${half} iflag=direct conv=notrunc status=none`;
  const script = `${dd(first, 0)} && echo half && read go && ${dd(first + half, half)} && echo done`;
  return start('sh', ['-c', script], { stdin: 'pipe' });
}

it('(4) killing and restarting the daemon during long sequential reads: no errors, identical data', async () => {
  const size = 16 * MiB;
  const { image, file, content } = await rt.createTarget('system', size);
  const daemon = await rt.passthrough('system', image, 4);
  const readers = 4;
  const blocksEach = size / BLOCK / readers;
  const outs = Array.from({ length: readers }, (_, i) => path.join(rt.dir, `system-${i}.out`));
  const children = outs.map((out, i) => pausedReader(file, out, i * blocksEach, blocksEach));
  await Promise.all(children.map((c) => c.waitForLine(/^half$/)));

  // Stop the daemon, let every reader issue its next read, and make sure the daemon holds them.
  daemon.signal('SIGSTOP');
  for (const c of children) c.stdin.write('go\n');
  await rt.waitForTarget('system', (t) => t.held === readers, 'the stopped daemon to hold one read per reader');
  daemon.signal('SIGKILL');
  await daemon.exited;
  // The reads it held wait in the queue for the next daemon instead of failing.
  await rt.waitForTarget('system', (t) => t.channels === 0 && t.queued === readers, 'the held reads to be queued again');
  await rt.passthrough('system', image, 4);

  const exits = await Promise.all(children.map((c) => c.exited));
  children.forEach((c) => expect(c.stderr).toBe(''));
  expect(exits.every((e) => e.code === 0)).toBe(true);
  const got = Buffer.concat(await Promise.all(outs.map((o) => fs.readFile(o))));
  expect(got.equals(content)).toBe(true);
  const errors = (await rt.logLines()).filter((l) => l.level === 'error' && l.target === 'system');
  expect(errors).toEqual([]);
});

it('(4) repeated SIGKILL and restart while a reader streams: no errors, identical data', async () => {
  const size = 16 * MiB;
  const { image, file, content } = await rt.createTarget('product', size);
  let daemon = await rt.passthrough('product', image, 2);
  const out = path.join(rt.dir, 'product.out');
  // Small blocks keep the daemon busy nearly all the time, so kills land mid-answer.
  const reader = ddRead(file, { bs: 4096, out });
  let finished = false;
  void reader.then(() => (finished = true));
  let restarts = 0;
  while (!finished && restarts < 3) {
    await new Promise((resolve) => setTimeout(resolve, 150));
    daemon.signal('SIGKILL');
    await daemon.exited;
    daemon = await rt.passthrough('product', image, 2);
    restarts++;
  }
  const r = await reader;
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  expect(restarts).toBeGreaterThan(0);
  expect((await fs.readFile(out)).equals(content)).toBe(true);
  // The reader never stops between reads, so the kills found reads held and queued them again.
  const requeued = (await rt.logLines()).filter((l) => l.target === 'product').reduce((n, l) => n + (Number(l.requeued) || 0), 0);
  expect(requeued).toBeGreaterThan(0);
});

it('a write held by a killed daemon still fails with EIO (it could be applied twice) and reads go on', async () => {
  const { image, file, content } = await rt.createTarget('vendor', 1 * MiB);
  const daemon = await rt.passthrough('vendor', image, 1);
  daemon.signal('SIGSTOP');
  const patch = path.join(rt.dir, 'patch');
  await fs.writeFile(patch, Buffer.alloc(4096, 0x42));
  const writer = sh(`dd if=${patch} of=${file} bs=4096 seek=3 oflag=direct conv=notrunc status=none`);
  await rt.waitForTarget('vendor', (t) => t.held === 1, 'the write to be held');
  daemon.signal('SIGKILL');
  const w = await writer;
  expect(w.code).not.toBe(0);
  expect(w.stderr).toMatch(/Input\/output error/);
  await rt.passthrough('vendor', image, 1);
  const out = path.join(rt.dir, 'vendor.out');
  expect((await ddRead(file, { bs: 64 * KiB, out })).code).toBe(0);
  expect((await fs.readFile(out)).equals(content)).toBe(true);
});
