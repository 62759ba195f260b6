import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { openChannel } from '../../src/dmuser/socket-channel';
import { miscEndpointPath } from '../../src/dmuser/socket-endpoint';
import { ctx, fileOf, openChannels, outcome, patterned, serveFromMemory, sleep, startKernel, waitFor } from './helpers';

jest.setTimeout(15_000);

/** restart_grace_ms > 0: a daemon restart within the grace window costs no read errors. */
describe('kernel: supervised restart (restart_grace_ms)', () => {
  let env: Awaited<ReturnType<typeof startKernel>>;
  afterEach(() => env.stop());

  it('queues the reads a dead channel held again and fails its writes', async () => {
    env = await startKernel({ daemon_timeout_ms: 4000, restart_grace_ms: 2000, channel_window: 4 });
    await env.kernel.createTarget('sys', 1 << 20);
    const file = fileOf(env.kernel, 'sys');
    const store = patterned(1 << 20, 9);
    const dying = await openChannel(env.runDir, 'sys');
    const reads = [0, 1, 2].map((i) => outcome(env.kernel.read(file, i * 4096, 4096, ctx)));
    const write = outcome(env.kernel.write(file, 65536, Buffer.alloc(4096, 1), ctx));
    await waitFor(() => dying.outstanding === 4, 'the channel to hold all four');
    await dying.close();
    await sleep(300); // inside the grace window: nothing may fail but the write
    expect(await write).toMatchObject({ ok: false, errno: 5 });
    expect(env.kernel.target('sys')!.info()).toMatchObject({ queued: 3, channels: 0 });
    const later = outcome(env.kernel.read(file, 8192, 4096, ctx)); // arrives during the window
    const [fresh] = await openChannels(env.runDir, 'sys', 1);
    const served = serveFromMemory(fresh, store);
    const results = await Promise.all([...reads, later]);
    results.forEach((r, i) => {
      const at = i < 3 ? i * 4096 : 8192;
      expect(r.ok && r.value.equals(store.subarray(at, at + 4096))).toBe(true);
    });
    // The write the dead channel held was failed, not sent again.
    expect(store.subarray(65536, 65536 + 4096).equals(patterned(1 << 20, 9).subarray(65536, 65536 + 4096))).toBe(true);
    await fresh.close();
    await served;
  });

  it('fails queued IO when the grace runs out, and new IO at once after that', async () => {
    env = await startKernel({ daemon_timeout_ms: 4000, restart_grace_ms: 800 });
    await env.kernel.createTarget('sys', 1 << 20);
    const file = fileOf(env.kernel, 'sys');
    const dying = await openChannel(env.runDir, 'sys');
    const held = outcome(env.kernel.read(file, 0, 4096, ctx));
    await waitFor(() => dying.outstanding === 1, 'the channel to take the read');
    const closedAt = performance.now(); // before the kernel can see the close: never early
    await dying.close();
    await waitFor(() => env.kernel.target('sys')!.info().channels === 0, 'the close');
    await sleep(300);
    const during = outcome(env.kernel.read(file, 4096, 4096, ctx)).then((r) => ({ r, at: performance.now() - closedAt }));
    const first = await held;
    const heldAt = performance.now() - closedAt;
    expect(first).toMatchObject({ ok: false, errno: 5 });
    expect(heldAt).toBeGreaterThanOrEqual(800);
    expect(heldAt).toBeLessThan(800 + 750);
    const { r, at } = await during;
    expect(r).toMatchObject({ ok: false, errno: 5 });
    expect(at).toBeLessThan(800 + 750);
    const startedAfter = performance.now();
    expect(await outcome(env.kernel.read(file, 0, 512, ctx))).toMatchObject({ ok: false, errno: 5 });
    expect(performance.now() - startedAfter).toBeLessThan(100);
  });

  it('does not queue again the reads of a channel that broke the protocol', async () => {
    env = await startKernel({ daemon_timeout_ms: 4000, restart_grace_ms: 5000 });
    await env.kernel.createTarget('sys', 1 << 20);
    const file = fileOf(env.kernel, 'sys');
    const rogue = net.createConnection({ path: miscEndpointPath(env.runDir, 'sys'), allowHalfOpen: true });
    await new Promise((resolve) => rogue.once('connect', resolve));
    const ended = new Promise((resolve) => rogue.once('end', resolve));
    const io = outcome(env.kernel.read(file, 0, 4096, ctx));
    await new Promise((resolve) => rogue.once('data', resolve));
    rogue.write(Buffer.alloc(40, 0x5a));
    await ended;
    rogue.destroy();
    const started = performance.now();
    expect(await io).toMatchObject({ ok: false, errno: 5 });
    expect(performance.now() - started).toBeLessThan(1000);
  });
});
