import { promises as fs } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { DmUserDecoder, DmUserMessage, encodeHeader, encodeMessage } from '../../src/dmuser/codec';
import { DmUserRequest } from '../../src/dmuser/constants';
import { miscEndpointPath } from '../../src/dmuser/socket-endpoint';
import type { RunResult } from '../../src/util/exec';
import { Runtime, ddRead } from './support/runtime';

jest.setTimeout(60_000);

/**
 * The failure rules end to end: `vab kernel` and `vab passthrough` as processes, IO from dd child
 * processes, daemons killed with SIGKILL. Wall-clock bounds here are generous (a dd process is
 * spawned inside the measurement); the tight ones are measured in-process in delayed-failure.test.ts.
 */
const EIO_TEXT = /Input\/output error/;
const DAEMON_TIMEOUT_MS = 1000;
const KiB = 1024;
const MiB = 1024 * KiB;

let rt: Runtime;
beforeAll(async () => {
  rt = await Runtime.start(['--daemon-timeout-ms', String(DAEMON_TIMEOUT_MS)]);
});
afterAll(async () => {
  await rt?.dispose();
});

function timed(promise: Promise<RunResult>, from: () => number): Promise<RunResult & { at: number }> {
  return promise.then((r) => ({ ...r, at: performance.now() - from() }));
}

async function setParam(name: string, value: number): Promise<void> {
  const r = await rt.dmctl(['set', name, String(value)]);
  expect(r.code).toBe(0);
}

it('(1) SIGKILL of the daemon fails every read it held or that was queued with EIO, at once', async () => {
  const { image, file } = await rt.createTarget('killed', 4 * MiB);
  const daemon = await rt.passthrough('killed', image, 4);
  daemon.signal('SIGSTOP'); // its channels stay open and keep taking messages it never answers
  const readers = Array.from({ length: 10 }, (_, i) => ddRead(file, { bs: 4096, skip: i * 16, count: 1 }));
  await rt.waitForTarget('killed', (t) => t.held === 8 && t.queued === 2, '8 reads held (4 channels x window 2) and 2 queued');
  let killedAt = 0;
  const results = readers.map((r) => timed(r, () => killedAt));
  killedAt = performance.now();
  daemon.signal('SIGKILL');
  for (const r of await Promise.all(results)) {
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(EIO_TEXT);
    expect(r.at).toBeLessThan(DAEMON_TIMEOUT_MS + 1000);
  }
  expect(await daemon.exited).toMatchObject({ signal: 'SIGKILL' });
  // The kernel logs each failed IO with its sector and target, as the driver does.
  const failed = (await rt.logLines()).filter((l) => l.level === 'error' && l.target === 'killed').map((l) => l.sector);
  expect([...failed].sort((a, b) => Number(a) - Number(b))).toEqual(Array.from({ length: 10 }, (_, i) => i * 16 * 8));
});

it('(2) a daemon that attaches before the timeout serves the queued IO', async () => {
  await setParam('daemon_timeout_ms', 8000);
  try {
    const { image, file, content } = await rt.createTarget('late', 1 * MiB);
    const out = path.join(rt.dir, 'late.out');
    const reader = ddRead(file, { bs: 64 * KiB, out });
    await rt.waitForTarget('late', (t) => t.queued === 1, 'the first read to queue');
    await rt.passthrough('late', image, 2);
    const r = await reader;
    expect(r.code).toBe(0);
    expect((await fs.readFile(out)).equals(content)).toBe(true);
  } finally {
    await setParam('daemon_timeout_ms', DAEMON_TIMEOUT_MS);
  }
});

it('(3) without a daemon IO fails after daemon_timeout_ms, never earlier; after the daemon died, at once', async () => {
  const { image, file } = await rt.createTarget('orphan', 1 * MiB);
  const started = performance.now();
  const first = await ddRead(file, { bs: 4096, count: 1 });
  const elapsed = performance.now() - started;
  expect(first.stderr).toMatch(EIO_TEXT);
  expect(elapsed).toBeGreaterThanOrEqual(DAEMON_TIMEOUT_MS);
  expect(elapsed).toBeLessThan(DAEMON_TIMEOUT_MS + 1500);

  const daemon = await rt.passthrough('orphan', image, 1);
  expect((await ddRead(file, { bs: 4096, count: 1 })).code).toBe(0);
  daemon.signal('SIGKILL');
  await daemon.exited;
  await rt.waitForTarget('orphan', (t) => t.channels === 0, 'the channel to close');
  const again = performance.now();
  const after = await ddRead(file, { bs: 4096, count: 1 });
  expect(after.stderr).toMatch(EIO_TEXT);
  // Includes spawning dd; the kernel's own delay (0) is checked in-process.
  expect(performance.now() - again).toBeLessThan(DAEMON_TIMEOUT_MS);
});

it('(5) removing a target fails its queued IO; a daemon may still answer what it holds, then exits 0', async () => {
  await setParam('daemon_timeout_ms', 20_000);
  try {
    const { file } = await rt.createTarget('doomed', 1 * MiB);
    const readers = [0, 1, 2].map((i) => ddRead(file, { bs: 4096, skip: i, count: 1 }));
    await rt.waitForTarget('doomed', (t) => t.queued === 3, 'three queued reads');
    const removedAt = performance.now();
    expect((await rt.dmctl(['remove', 'doomed'])).code).toBe(0);
    for (const r of await Promise.all(readers)) {
      expect(r.stderr).toMatch(EIO_TEXT);
      expect(performance.now() - removedAt).toBeLessThan(5000);
    }

    const held = await rt.createTarget('drained', 1 * MiB);
    const daemon = await rt.passthrough('drained', held.image, 1);
    daemon.signal('SIGSTOP');
    const out = path.join(rt.dir, 'drained.out');
    const reader = ddRead(held.file, { bs: 4096, count: 1, out });
    await rt.waitForTarget('drained', (t) => t.held === 1, 'the read to be held');
    expect((await rt.dmctl(['remove', 'drained'])).code).toBe(0);
    daemon.signal('SIGCONT');
    const r = await reader;
    expect(r.code).toBe(0);
    expect((await fs.readFile(out)).equals(held.content.subarray(0, 4096))).toBe(true);
    expect(await daemon.exited).toEqual({ code: 0, signal: null });
  } finally {
    await setParam('daemon_timeout_ms', DAEMON_TIMEOUT_MS);
  }
});

/** A daemon in this process speaking raw bytes: it gets one request, then misbehaves. */
async function rogue(name: string): Promise<{ socket: net.Socket; first: Promise<DmUserMessage> }> {
  const socket = net.createConnection({ path: miscEndpointPath(rt.run, name), allowHalfOpen: true });
  await new Promise((resolve) => socket.once('connect', resolve));
  socket.on('error', () => undefined);
  const decoder = new DmUserDecoder((h) => (h.type === DmUserRequest.Write ? h.len : 0));
  const first = new Promise<DmUserMessage>((resolve) => socket.on('data', (chunk: Buffer) => decoder.push(chunk).forEach(resolve)));
  return { socket, first };
}

describe('(7) a rogue daemon fails its own IO with EIO and the kernel keeps serving', () => {
  let good: Awaited<ReturnType<Runtime['createTarget']>>;
  beforeAll(async () => {
    good = await rt.createTarget('honest', 2 * MiB);
    await rt.passthrough('honest', good.image, 2);
    await setParam('io_timeout_ms', 1500);
  });
  afterAll(async () => {
    await setParam('io_timeout_ms', 30_000);
  });

  const cases: Array<[string, (m: DmUserMessage) => Buffer]> = [
    ['bad seq', (m) => encodeHeader({ ...m.header, seq: m.header.seq + 7, type: 0 })],
    ['payload too long', (m) => encodeMessage({ ...m.header, type: 0 }, Buffer.alloc(m.header.len + 512, 0xff))],
    ['payload too short, then close', (m) => encodeMessage({ ...m.header, type: 0 }, Buffer.alloc(m.header.len - 512))],
    ['garbage', () => Buffer.from('GARBAGE! '.repeat(20))],
    ['zero-length write', () => Buffer.alloc(0)],
  ];
  it.each(cases)('%s', async (what, answer) => {
    const name = `rogue-${what.replace(/[^a-z]+/g, '-')}`;
    const { file, image, content } = await rt.createTarget(name, 1 * MiB);
    const { socket, first } = await rogue(name);
    // Two reads: with a window of 2 the rogue holds both; the second proves a poisoned channel
    // fails everything it held, not just the message it garbled.
    const readers = [0, 1].map((i) => ddRead(file, { bs: 4096, skip: i, count: 1 }));
    const m = await first;
    await rt.waitForTarget(name, (t) => t.held === 2, 'the rogue to hold both reads');
    socket.write(answer(m));
    if (what.includes('close')) socket.end();
    const results = await Promise.all(readers);
    if (what === 'payload too long') {
      // The answer itself was complete; the excess 512 bytes are a garbage header that poisons.
      expect(results.map((r) => r.code).sort()).toEqual([0, 1]);
    } else {
      for (const r of results) expect(r.stderr).toMatch(EIO_TEXT);
    }
    socket.destroy();
    // Other targets and new channels on this one are served as before.
    const out = path.join(rt.dir, `${name}.out`);
    expect((await ddRead(good.file, { bs: 64 * KiB, out })).code).toBe(0);
    expect((await fs.readFile(out)).equals(good.content)).toBe(true);
    const daemon = await rt.passthrough(name, image, 1);
    expect((await ddRead(file, { bs: 64 * KiB, out })).code).toBe(0);
    expect((await fs.readFile(out)).equals(content)).toBe(true);
    expect((await rt.dmctl(['remove', name])).code).toBe(0);
    expect(await daemon.exited).toEqual({ code: 0, signal: null });
  });
});
