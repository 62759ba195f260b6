import { performance } from 'node:perf_hooks';
import { openChannel } from '../../src/dmuser/socket-channel';
import { ctx, fileOf, openChannels, outcome, patterned, serveFromMemory, settledWithin, sleep, startKernel, waitFor } from './helpers';

/**
 * The seed patch's delayed-failure queue, measured inside the kernel process through the provider
 * (no mount, no scheduling of other processes in the measurement). Margins: never early; late by
 * at most 750 ms on a loaded 2-core machine.
 */
describe('kernel: delayed failure without a daemon', () => {
  let env: Awaited<ReturnType<typeof startKernel>>;
  afterEach(() => env.stop());

  it('fails IO on a target that never had a daemon after daemon_timeout_ms, never earlier', async () => {
    env = await startKernel({ daemon_timeout_ms: 1000 });
    await env.kernel.createTarget('sys', 65536);
    const file = fileOf(env.kernel, 'sys');
    const started = performance.now();
    const ios = [0, 4096, 8192].map((offset) => outcome(env.kernel.read(file, offset, 4096, ctx)).then((r) => ({ r, at: performance.now() - started })));
    for (const { r, at } of await Promise.all(ios)) {
      expect(r).toMatchObject({ ok: false, errno: 5 });
      expect(at).toBeGreaterThanOrEqual(1000);
      expect(at).toBeLessThan(1750);
    }
    expect(env.kernel.target('sys')!.info().queued).toBe(0);
  });

  it('uses the timeout in force when the IO arrives (settable at run time)', async () => {
    env = await startKernel({ daemon_timeout_ms: 4000 });
    await env.kernel.createTarget('sys', 65536);
    env.kernel.setParam('daemon_timeout_ms', 300);
    const started = performance.now();
    const r = await outcome(env.kernel.read(fileOf(env.kernel, 'sys'), 0, 512, ctx));
    const elapsed = performance.now() - started;
    expect(r).toMatchObject({ ok: false, errno: 5 });
    expect(elapsed).toBeGreaterThanOrEqual(300);
    expect(elapsed).toBeLessThan(1050);
    expect(() => env.kernel.setParam('daemon_timeout_ms', -1)).toThrow(/daemon_timeout_ms/);
    expect(() => env.kernel.setParam('no_such_param', 1)).toThrow(/unknown kernel parameter/);
  });

  it('lets a daemon that attaches in time take the queued IO and cancels the timers', async () => {
    env = await startKernel({ daemon_timeout_ms: 600 });
    await env.kernel.createTarget('sys', 65536);
    const store = patterned(65536, 5);
    const file = fileOf(env.kernel, 'sys');
    const ios = [0, 4096, 12288].map((offset) => env.kernel.read(file, offset, 4096, ctx));
    await sleep(200);
    const channel = await openChannel(env.runDir, 'sys');
    const served = serveFromMemory(channel, store);
    const results = await Promise.all(ios);
    expect(results.map((b, i) => b.equals(store.subarray([0, 4096, 12288][i], [0, 4096, 12288][i] + 4096)))).toEqual([true, true, true]);
    // Well past the original deadline the channel must still be serving, undisturbed by old timers.
    await sleep(600);
    const late = await env.kernel.read(file, 0, 512, ctx);
    expect(late.equals(store.subarray(0, 512))).toBe(true);
    await channel.close();
    await served;
  });

  it('fails queued and new IO at once after the daemon terminated', async () => {
    env = await startKernel({ daemon_timeout_ms: 4000 });
    await env.kernel.createTarget('sys', 65536);
    const file = fileOf(env.kernel, 'sys');
    const channels = await openChannels(env.runDir, 'sys', 2);
    await Promise.all(channels.map((c) => c.close()));
    await waitFor(() => env.kernel.target('sys')!.info().channels === 0, 'both channels to close');
    for (let i = 0; i < 5; i++) {
      const started = performance.now();
      const r = await outcome(env.kernel.read(file, 0, 4096, ctx));
      expect(r).toMatchObject({ ok: false, errno: 5 });
      expect(performance.now() - started).toBeLessThan(100);
    }
  });

  it('fails every queued message when the last channel closes, even ones whose wait began while a channel was open', async () => {
    // The seed's latent hang: messages that waited behind a channel that never reads, then the
    // channel closes. Here the channel holds its window's worth and the rest stay queued.
    env = await startKernel({ daemon_timeout_ms: 200, channel_window: 1, io_timeout_ms: 60_000 });
    await env.kernel.createTarget('sys', 65536);
    const file = fileOf(env.kernel, 'sys');
    const silent = await openChannel(env.runDir, 'sys');
    const ios = [0, 1, 2, 3].map((i) => outcome(env.kernel.read(file, i * 4096, 4096, ctx)));
    await sleep(400); // past daemon_timeout_ms: a channel is open, so nothing may fail yet
    expect(await settledWithin(Promise.race(ios), 10)).toBe(false);
    expect(env.kernel.target('sys')!.info()).toMatchObject({ held: 1, queued: 3 });
    const closedAt = performance.now();
    await silent.close();
    const results = await Promise.all(ios);
    expect(results.every((r) => !r.ok && r.errno === 5)).toBe(true);
    expect(performance.now() - closedAt).toBeLessThan(500);
  });

  it('fails queued IO at once when the target is removed, and later IO too', async () => {
    env = await startKernel({ daemon_timeout_ms: 4000 });
    await env.kernel.createTarget('sys', 65536);
    const file = fileOf(env.kernel, 'sys');
    const ios = [0, 1, 2].map((i) => outcome(env.kernel.read(file, i * 512, 512, ctx)));
    await sleep(50);
    const started = performance.now();
    await env.kernel.removeTarget('sys');
    for (const r of await Promise.all(ios)) expect(r).toMatchObject({ ok: false, errno: 5 });
    expect(performance.now() - started).toBeLessThan(200);
    expect(await outcome(env.kernel.read(file, 0, 512, ctx))).toMatchObject({ ok: false, errno: 5 });
  });

  it('bounds IO held by a channel that never answers with io_timeout_ms', async () => {
    env = await startKernel({ daemon_timeout_ms: 100, io_timeout_ms: 700, channel_window: 1 });
    await env.kernel.createTarget('sys', 65536);
    const file = fileOf(env.kernel, 'sys');
    const silent = await openChannel(env.runDir, 'sys');
    const started = performance.now();
    const ios = [0, 1, 2].map((i) => outcome(env.kernel.read(file, i * 512, 512, ctx)).then((r) => ({ r, at: performance.now() - started })));
    for (const { r, at } of await Promise.all(ios)) {
      expect(r).toMatchObject({ ok: false, errno: 5 });
      expect(at).toBeGreaterThanOrEqual(700);
      expect(at).toBeLessThan(1450);
    }
    // A late answer to a timed-out message is taken and dropped; it does not poison the channel.
    const stale = (await silent.next())!;
    await silent.respond({ ...stale.header, type: 0 }, Buffer.alloc(512));
    await sleep(20);
    expect(env.kernel.target('sys')!.info().channels).toBe(1);
    const fresh = env.kernel.read(file, 0, 512, ctx);
    const next = (await silent.next())!;
    expect(next.header.seq).toBe(3);
    await silent.respond({ ...next.header, type: 0 }, Buffer.alloc(512, 4));
    expect((await fresh)[0]).toBe(4);
    await silent.close();
  });
});
