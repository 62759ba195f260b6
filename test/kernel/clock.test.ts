import { DmUserRequest, DmUserResponse } from '../../src/dmuser/constants';
import { openMemoryChannel } from '../../src/dmuser/testing/memory-channel';
import { ManualClock } from '../../src/kernel/deadline';
import { KernelParams, resolveParams } from '../../src/kernel/params';
import { Target } from '../../src/kernel/target';
import { nullLogger } from '../../src/util/log';

/**
 * The delayed-failure rules checked to the millisecond with a clock moved by hand: a timer fires
 * exactly at its bound, never a millisecond before, and is cancelled by what cancels it.
 */
const turns = (): Promise<void> => new Promise((resolve) => setImmediate(() => setImmediate(resolve)));

function track(p: Promise<unknown>): { state: () => string } {
  let state = 'pending';
  p.then(
    () => (state = 'ok'),
    (err: Error) => (state = /I\/O error/.test(err.message) ? 'EIO' : err.message),
  );
  return { state: () => state };
}

function setUp(params: Partial<KernelParams>): { clock: ManualClock; target: Target; read: () => { state: () => string } } {
  const clock = new ManualClock();
  const target = new Target('sys', 64, resolveParams(params), nullLogger, clock);
  return { clock, target, read: () => track(target.submit({ type: DmUserRequest.Read, flags: 0, sector: 0, len: 512 })) };
}

describe('kernel deadlines on an injected clock', () => {
  it('no daemon ever: a read fails exactly at daemon_timeout_ms', async () => {
    const { clock, read } = setUp({ daemon_timeout_ms: 4000, io_timeout_ms: 30_000 });
    const r = read();
    clock.advance(3999);
    await turns();
    expect(r.state()).toBe('pending');
    clock.advance(1);
    await turns();
    expect(r.state()).toBe('EIO');
  });

  it('a daemon attaching in time cancels the timer and serves the read', async () => {
    const { clock, target, read } = setUp({ daemon_timeout_ms: 4000, io_timeout_ms: 30_000 });
    const r = read();
    clock.advance(3000);
    const channel = openMemoryChannel(target, 'sys');
    const m = (await channel.next())!;
    clock.advance(5000);
    await turns();
    expect(r.state()).toBe('pending');
    await channel.respond({ ...m.header, type: DmUserResponse.Success }, Buffer.alloc(512));
    await turns();
    expect(r.state()).toBe('ok');
    await channel.close();
  });

  it('after the daemon left (Android, restart_grace_ms 0): a new read fails at once', async () => {
    const { clock, target, read } = setUp({ daemon_timeout_ms: 4000, restart_grace_ms: 0 });
    const channel = openMemoryChannel(target, 'sys');
    await channel.close();
    await turns();
    const r = read();
    clock.advance(0);
    await turns();
    expect(r.state()).toBe('EIO');
  });

  it('supervised (restart_grace_ms 500): a read waits exactly the rest of the grace, or is served by a new daemon', async () => {
    const { clock, target, read } = setUp({ daemon_timeout_ms: 4000, restart_grace_ms: 500, io_timeout_ms: 30_000 });
    await openMemoryChannel(target, 'sys').close();
    await turns();
    clock.advance(100);
    const late = read();
    clock.advance(399);
    await turns();
    expect(late.state()).toBe('pending');
    clock.advance(1);
    await turns();
    expect(late.state()).toBe('EIO');

    const again = setUp({ daemon_timeout_ms: 4000, restart_grace_ms: 500, io_timeout_ms: 30_000 });
    await openMemoryChannel(again.target, 'sys').close();
    await turns();
    const waiting = again.read();
    again.clock.advance(499);
    const next = openMemoryChannel(again.target, 'sys');
    const m = (await next.next())!;
    again.clock.advance(10_000);
    await next.respond({ ...m.header, type: DmUserResponse.Success }, Buffer.alloc(512));
    await turns();
    expect(waiting.state()).toBe('ok');
    await next.close();
  });

  it('io_timeout_ms bounds a read a daemon holds and never answers', async () => {
    const { clock, target, read } = setUp({ daemon_timeout_ms: 4000, io_timeout_ms: 2000 });
    const channel = openMemoryChannel(target, 'sys');
    const r = read();
    await channel.next();
    clock.advance(1999);
    await turns();
    expect(r.state()).toBe('pending');
    clock.advance(1);
    await turns();
    expect(r.state()).toBe('EIO');
    await channel.close();
  });

  it('the timers of reads queued while no daemon is present all re-arm when the daemon leaves', async () => {
    const { clock, target, read } = setUp({ daemon_timeout_ms: 4000, restart_grace_ms: 300, io_timeout_ms: 30_000, channel_window: 1 });
    const channel = openMemoryChannel(target, 'sys');
    const held = read();
    const queued = [read(), read()];
    await channel.next();
    await channel.close();
    await turns();
    // Supervised: the held read is queued again; all three wait for the rest of the grace.
    clock.advance(299);
    await turns();
    expect([held.state(), ...queued.map((q) => q.state())]).toEqual(['pending', 'pending', 'pending']);
    clock.advance(1);
    await turns();
    expect([held.state(), ...queued.map((q) => q.state())]).toEqual(['EIO', 'EIO', 'EIO']);
  });
});
