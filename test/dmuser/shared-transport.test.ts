import { promises as fs } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { encodeHeader } from '../../src/dmuser/codec';
import { DmUserRequest, DmUserResponse } from '../../src/dmuser/constants';
import { SharedHello, SharedMessage, SharedRequestDecoder, encodeHello, encodePlacement, encodeReady } from '../../src/dmuser/shared-frame';
import { CHANNEL_MEMORY_BYTES, nativeSharedMemory } from '../../src/dmuser/shared-memory';
import { openChannel } from '../../src/dmuser/socket-channel';
import { miscEndpointPath, sharedEndpointPath } from '../../src/dmuser/socket-endpoint';
import { PRIVATE_DIR_MODE } from '../../src/util/private-socket';
import { ctx, fileOf, outcome, patterned, serveFromMemory, sleep, startKernel, tempDir, waitFor } from '../kernel/helpers';

jest.setTimeout(20_000);

const MiB = 1 << 20;

/** A raw open of the shared endpoint that maps the kernel's memory itself and writes anything it likes. */
async function rawShared(runDir: string, name: string) {
  const socket = net.createConnection({ path: sharedEndpointPath(runDir, name), allowHalfOpen: true });
  await new Promise((resolve) => socket.once('connect', resolve));
  const hellos: SharedHello[] = [];
  const decoder = new SharedRequestDecoder((h) => hellos.push(h));
  const inbox: SharedMessage[] = [];
  let closed = false;
  socket.on('data', (chunk: Buffer) => inbox.push(...decoder.push(chunk)));
  socket.on('end', () => (closed = true));
  socket.on('close', () => (closed = true));
  socket.on('error', () => undefined);
  await waitFor(() => hellos.length === 1, 'the hello');
  const handle = await fs.open(`/proc/${process.pid}/fd/${hellos[0].memoryFd}`, 'r+');
  const memory = Buffer.from(nativeSharedMemory()!.mapSealed(handle.fd));
  await handle.close();
  socket.write(encodeReady());
  return {
    socket,
    memory,
    get closed() {
      return closed;
    },
    async next(): Promise<SharedMessage> {
      await waitFor(() => inbox.length > 0, 'a request');
      return inbox.shift()!;
    },
    answer(message: SharedMessage, inline?: Buffer): void {
      const head = encodeHeader({ ...message.header, type: DmUserResponse.Success });
      socket.write(inline ? Buffer.concat([head, inline]) : head);
    },
  };
}

describe('dm-user shared-memory transport against the kernel', () => {
  let env: Awaited<ReturnType<typeof startKernel>>;
  beforeEach(async () => {
    env = await startKernel({ daemon_timeout_ms: 3000, channel_window: 2, io_timeout_ms: 10_000 });
    await env.kernel.createTarget('sys', 16 * MiB);
    await env.kernel.createTarget('vendor', 16 * MiB);
  });
  afterEach(() => env.stop());

  it('serves reads of every size through the memory, from a private endpoint', async () => {
    expect((await fs.stat(path.dirname(sharedEndpointPath(env.runDir, 'sys')))).mode & 0o777).toBe(PRIVATE_DIR_MODE);
    expect((await fs.stat(sharedEndpointPath(env.runDir, 'sys'))).mode & 0o777).toBe(0o600);
    const store = patterned(16 * MiB, 3);
    const channel = await openChannel(env.runDir, 'sys', 'shared');
    const served = serveFromMemory(channel, store);
    const file = fileOf(env.kernel, 'sys');
    for (const [offset, length] of [[3 * MiB, MiB], [4096, 4096], [512, 1000], [5 * MiB, 3 * MiB]]) {
      const got = await env.kernel.read(file, offset, length, ctx);
      expect(got.equals(store.subarray(offset, offset + length))).toBe(true);
      env.kernel.recycle(got);
    }
    await channel.close();
    await served;
  });

  it('lends a region up with the answer and takes it back only when the reply has been written', async () => {
    const raw = await rawShared(env.runDir, 'sys');
    const file = fileOf(env.kernel, 'sys');
    const first = env.kernel.read(file, 0, MiB, ctx);
    const a = await raw.next();
    expect(a.placement).toEqual({ offset: 0, length: MiB });
    raw.memory.fill(0xab, a.placement.offset, a.placement.offset + MiB);
    raw.answer(a);
    const answer = await first;
    expect(answer.equals(Buffer.alloc(MiB, 0xab))).toBe(true);
    // The answer IS the region: no copy into the IO's buffer.
    expect(answer.buffer.byteLength).toBe(CHANNEL_MEMORY_BYTES);

    // Still lent (its FUSE reply not written): the next read gets another region.
    const second = env.kernel.read(file, MiB, MiB, ctx);
    const b = await raw.next();
    expect(b.placement.offset).not.toBe(a.placement.offset);
    raw.memory.fill(0xcd, b.placement.offset, b.placement.offset + MiB);
    raw.answer(b);
    const secondAnswer = await second;
    expect(answer.equals(Buffer.alloc(MiB, 0xab))).toBe(true);
    env.kernel.recycle(answer);
    env.kernel.recycle(secondAnswer);
    // Given back: the next read reuses the first region.
    const third = env.kernel.read(file, 2 * MiB, MiB, ctx);
    const c = await raw.next();
    expect([a.placement.offset, b.placement.offset]).toContain(c.placement.offset);
    raw.answer(c);
    env.kernel.recycle(await third);
    raw.socket.destroy();
  });

  it('answers inline when the memory is all lent, and a split IO copies each piece out at once', async () => {
    const raw = await rawShared(env.runDir, 'sys');
    const file = fileOf(env.kernel, 'sys');
    const held: Buffer[] = [];
    // Four 1 MiB answers fill the channel's 4 MiB; none is given back.
    for (let i = 0; i < CHANNEL_MEMORY_BYTES / MiB; i++) {
      const read = env.kernel.read(file, i * MiB, MiB, ctx);
      const m = await raw.next();
      expect(m.placement.length).toBe(MiB);
      raw.memory.fill(i + 1, m.placement.offset, m.placement.offset + MiB);
      raw.answer(m);
      held.push(await read);
    }
    const full = env.kernel.read(file, 8 * MiB, MiB, ctx);
    const inline = await raw.next();
    expect(inline.placement).toEqual({ offset: 0, length: 0 });
    raw.answer(inline, Buffer.alloc(MiB, 0x77));
    expect((await full).equals(Buffer.alloc(MiB, 0x77))).toBe(true);
    held.forEach((b, i) => expect(b.equals(Buffer.alloc(MiB, i + 1))).toBe(true));
    held.forEach((b) => env.kernel.recycle(b));

    // Split at 256 KiB: each piece is copied into the IO's buffer and its region freed at once.
    env.kernel.setParam('max_io_bytes', 256 * 1024);
    const split = env.kernel.read(file, 0, MiB, ctx);
    const offsets = new Set<number>();
    for (let piece = 0; piece < 4; piece++) {
      const m = await raw.next();
      expect(m.placement.length).toBe(256 * 1024);
      offsets.add(m.placement.offset);
      raw.memory.fill(0x10 + piece, m.placement.offset, m.placement.offset + m.placement.length);
      raw.answer(m);
    }
    const whole = await split;
    expect(whole.buffer.byteLength).not.toBe(CHANNEL_MEMORY_BYTES);
    for (let piece = 0; piece < 4; piece++) expect(whole.subarray(piece * 256 * 1024, (piece + 1) * 256 * 1024).every((x) => x === 0x10 + piece)).toBe(true);
    raw.socket.destroy();
  });

  it('a daemon scribbling over the memory garbles only its own answers; another target is unaffected', async () => {
    const vendorStore = patterned(16 * MiB, 9);
    const good = await openChannel(env.runDir, 'vendor', 'shared');
    const served = serveFromMemory(good, vendorStore);
    const rogue = await rawShared(env.runDir, 'sys');
    const sysRead = env.kernel.read(fileOf(env.kernel, 'sys'), 0, MiB, ctx);
    const request = await rogue.next();
    rogue.memory.fill(0xee);
    rogue.answer(request);
    expect((await sysRead).equals(Buffer.alloc(MiB, 0xee))).toBe(true);
    const vendorRead = await env.kernel.read(fileOf(env.kernel, 'vendor'), 2 * MiB, MiB, ctx);
    expect(vendorRead.equals(vendorStore.subarray(2 * MiB, 3 * MiB))).toBe(true);
    // The rogue's memory is not the vendor channel's: its scribbles never reached that answer.
    expect(vendorRead.buffer).not.toBe(rogue.memory.buffer);
    rogue.socket.destroy();
    await good.close();
    await served;
  });

  it('a shared open joins its target only after the ready message: before it, IO waits for a real daemon', async () => {
    const file = fileOf(env.kernel, 'sys');
    // Connected, hello seen, never ready (a daemon that cannot map and goes to the plain endpoint).
    const silent = net.createConnection({ path: sharedEndpointPath(env.runDir, 'sys'), allowHalfOpen: true });
    silent.on('error', () => undefined);
    await new Promise((resolve) => silent.once('data', resolve));
    const read = env.kernel.read(file, 0, MiB, ctx);
    await sleep(50);
    expect(env.kernel.target('sys')!.info()).toMatchObject({ channels: 0, queued: 1 });
    const store = patterned(16 * MiB, 5);
    const channel = await openChannel(env.runDir, 'sys', 'plain');
    const served = serveFromMemory(channel, store);
    // The queued READ went to the daemon that was ready, not to the silent open.
    expect((await read).equals(store.subarray(0, MiB))).toBe(true);
    silent.destroy();
    // A wrong ready message drops the open; the target keeps its daemon.
    const liar = net.createConnection({ path: sharedEndpointPath(env.runDir, 'sys'), allowHalfOpen: true });
    liar.on('error', () => undefined);
    const dropped = new Promise((resolve) => liar.once('end', resolve));
    await new Promise((resolve) => liar.once('data', resolve));
    liar.write(Buffer.alloc(16, 1));
    await dropped;
    expect((await env.kernel.read(file, MiB, 4096, ctx)).equals(store.subarray(MiB, MiB + 4096))).toBe(true);
    await channel.close();
    await served;
  });

  it('a late answer to a timed-out placed READ goes nowhere, and the channel keeps serving', async () => {
    env.kernel.setParam('io_timeout_ms', 300);
    const raw = await rawShared(env.runDir, 'sys');
    const file = fileOf(env.kernel, 'sys');
    const late = outcome(env.kernel.read(file, 0, MiB, ctx));
    const first = await raw.next();
    expect(await late).toMatchObject({ ok: false, errno: 5 });
    raw.answer(first);
    env.kernel.setParam('io_timeout_ms', 10_000);
    const next = env.kernel.read(file, MiB, MiB, ctx);
    const second = await raw.next();
    expect(second.header.type).toBe(DmUserRequest.Read);
    raw.memory.fill(0x5a, second.placement.offset, second.placement.offset + MiB);
    raw.answer(second);
    expect((await next).equals(Buffer.alloc(MiB, 0x5a))).toBe(true);
    raw.socket.destroy();
  });
});

/** A fake kernel on both endpoints of one target: what a daemon does with a lying shared side. */
async function fakeKernel(onShared: (socket: net.Socket) => void) {
  const runDir = await tempDir('fake-kernel');
  const plain = miscEndpointPath(runDir, 't');
  const shared = sharedEndpointPath(runDir, 't');
  await fs.mkdir(path.dirname(plain), { recursive: true });
  await fs.mkdir(path.dirname(shared), { recursive: true });
  const plainOpens: net.Socket[] = [];
  const servers = [net.createServer((s) => plainOpens.push(s)), net.createServer(onShared)];
  await new Promise<void>((resolve) => servers[0].listen(plain, resolve));
  await new Promise<void>((resolve) => servers[1].listen(shared, resolve));
  return {
    runDir,
    plainOpens,
    async stop() {
      for (const s of plainOpens) s.destroy();
      for (const s of servers) s.close();
      await fs.rm(runDir, { recursive: true, force: true });
    },
  };
}

describe('the daemon side of the shared-memory transport against a lying kernel', () => {
  it('a hello naming something that is not a sealed memfd: auto falls back to the plain endpoint, shared refuses', async () => {
    // A plain file the kernel process has open: mapping it would let the kernel aim our writes at it.
    const plainFile = await fs.open(path.join(await tempDir('not-memory'), 'image'), 'w+');
    await plainFile.truncate(MiB);
    const kernel = await fakeKernel((socket) => socket.write(encodeHello({ memoryFd: plainFile.fd })));
    try {
      await expect(openChannel(kernel.runDir, 't', 'shared')).rejects.toMatchObject({ code: 'EUNSUPPORTED', message: expect.stringMatching(/cannot map the kernel's shared memory/) });
      const channel = await openChannel(kernel.runDir, 't', 'auto');
      await waitFor(() => kernel.plainOpens.length === 1, 'the plain open');
      await channel.close();
    } finally {
      await plainFile.close();
      await kernel.stop();
    }
  });

  it('a placement outside the memory drops the channel before any byte is written', async () => {
    const api = nativeSharedMemory()!;
    const memoryFd = api.createSealed(64 * 1024);
    const memory = Buffer.from(api.mapSealed(memoryFd));
    let kernelSide: net.Socket | undefined;
    const kernel = await fakeKernel((socket) => {
      kernelSide = socket;
      socket.on('error', () => undefined);
      // The daemon's ready is echoed (it is attached); later bytes are dropped, so its close is seen.
      socket.once('data', () => socket.write(encodeReady()));
      socket.write(encodeHello({ memoryFd }));
    });
    try {
      const channel = await openChannel(kernel.runDir, 't', 'shared');
      const closed = new Promise((resolve) => kernelSide!.once('close', resolve));
      const header = encodeHeader({ seq: 1, type: DmUserRequest.Read, flags: 0, sector: 0, len: 4096 });
      kernelSide!.write(Buffer.concat([header, encodePlacement({ offset: 64 * 1024, length: 4096 })]));
      const message = await channel.next();
      expect(message?.header.seq).toBe(1);
      expect(() => channel.answerBuffer!(message!.header)).toThrow(/placed at 65536\+4096, outside the 65536-byte shared memory/);
      await closed;
      expect(memory.every((x) => x === 0)).toBe(true);
      await channel.close();
    } finally {
      await kernel.stop();
    }
  });
});
