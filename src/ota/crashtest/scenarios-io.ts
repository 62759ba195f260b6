import { Reader } from './world';
import { Figures, Scenario, ScenarioContext, check, sleep } from './scenario';

const MiB = 1024 * 1024;
/** How much later than its bound an IO may fail on a loaded machine before it counts as a hang. */
const LATE_MARGIN_MS = 250;

function readyAt(reader: Reader): number {
  return reader.events('ready')[0]?.at ?? Number.NaN;
}

/** Seed test 1: the daemon is SIGKILLed with reads in flight; each fails with EIO within 1 s, none hangs. */
export const killDuringIo: Scenario = {
  name: 'kill-during-io',
  description: 'SIGKILL snapuserd with reads in flight: every reader gets EIO within 1 s',
  async run({ world, rng, note }: ScenarioContext): Promise<Figures> {
    await world.startKernel({ daemonTimeoutMs: 2000, restartGraceMs: 0 });
    const snap = await world.makeSnapshot(8 * MiB);
    const file = await world.createTarget('system', 8 * MiB);
    const daemon = await world.startDaemon('system', snap);
    const readers = [0, 1, 2].map(() => world.startReader(file, snap.target, { mode: 'random', count: 0, stopOnError: true }));
    const killAfter = rng.int(16, 256);
    await readers[0].waitForReads(killAfter, 30_000);
    const killedAt = Date.now();
    daemon.signal('SIGKILL');
    note(`killed snapuserd after ${killAfter} good reads`);
    await Promise.all(readers.map((r) => world.readerEnds(r, 10_000, 'after the kill')));
    let slowest = 0;
    for (const [i, reader] of readers.entries()) {
      check(reader.mismatches() === 0, `reader ${i} read wrong bytes before the kill`);
      const error = reader.firstError();
      check(error !== undefined, `reader ${i} ended without an IO error`);
      check(error.code === 'EIO', `reader ${i} failed with ${error.code}, not EIO`);
      check(error.at >= killedAt - 50, `reader ${i} failed ${killedAt - error.at} ms before the daemon was killed`);
      slowest = Math.max(slowest, error.at - killedAt);
    }
    check(slowest <= 1000, `a reader took ${slowest} ms to get EIO after the kill (bound 1000 ms)`);
    return { kill_after_reads: killAfter, eio_after_kill_ms: slowest };
  },
};

/** Seed test 2: IO issued before any daemon waits; a daemon that attaches within the timeout serves it. */
export const lateDaemon: Scenario = {
  name: 'late-daemon',
  description: 'reads issued before snapuserd starts wait for it and succeed when it attaches in time',
  async run({ world, rng, note }: ScenarioContext): Promise<Figures> {
    // Room for the daemon's own start-up (a node process) on a loaded machine, after the delay.
    const timeout = 8000;
    await world.startKernel({ daemonTimeoutMs: timeout });
    const snap = await world.makeSnapshot(4 * MiB);
    const file = await world.createTarget('system', 4 * MiB);
    const readers = [0, 1].map(() => world.startReader(file, snap.target, { mode: 'random', count: 64, stopOnError: true }));
    await Promise.all(readers.map((r) => r.child.waitForLine(/^ready /, 10_000)));
    const delay = rng.int(200, 1200);
    await sleep(delay);
    const startedAt = Date.now();
    await world.startDaemon('system', snap);
    note(`started snapuserd ${Date.now() - Math.min(...readers.map(readyAt))} ms after the first read`);
    await Promise.all(readers.map((r) => world.readerEnds(r, 15_000, 'after the daemon attached')));
    for (const [i, reader] of readers.entries()) {
      check(reader.firstError() === undefined, `reader ${i} failed with ${reader.firstError()?.code} although the daemon attached within daemon_timeout_ms`);
      check(reader.mismatches() === 0, `reader ${i} read wrong bytes`);
      check(reader.goodReads === 64, `reader ${i} finished ${reader.goodReads} of 64 reads`);
    }
    return { daemon_started_after_ms: startedAt - Math.min(...readers.map(readyAt)), timeout_ms: timeout };
  },
};

/**
 * Seed test 3: a target that never had a daemon fails IO after daemon_timeout_ms, never earlier and
 * not much later; one whose daemon died fails at once.
 */
export const noDaemon: Scenario = {
  name: 'no-daemon',
  description: 'no daemon: IO fails after daemon_timeout_ms (new target) or at once (terminated daemon)',
  async run({ world, note }: ScenarioContext): Promise<Figures> {
    const timeout = 1000;
    await world.startKernel({ daemonTimeoutMs: timeout, restartGraceMs: 0 });
    const snap = await world.makeSnapshot(2 * MiB);
    const file = await world.createTarget('system', 2 * MiB);
    const waiting = world.startReader(file, snap.target, { mode: 'seq', count: 1, stopOnError: true });
    await world.readerEnds(waiting, timeout + 10_000, 'with no daemon');
    const error = waiting.firstError();
    check(error !== undefined && error.code === 'EIO', `a read with no daemon ended with ${error?.code ?? 'success'}, not EIO`);
    const failedAfter = error.at - readyAt(waiting);
    note(`new target: EIO after ${failedAfter} ms (daemon_timeout_ms ${timeout})`);
    check(failedAfter >= timeout - 5, `IO failed after ${failedAfter} ms, before daemon_timeout_ms=${timeout}`);
    check(failedAfter <= timeout + LATE_MARGIN_MS, `IO failed after ${failedAfter} ms, more than ${LATE_MARGIN_MS} ms past daemon_timeout_ms=${timeout}`);

    const daemon = await world.startDaemon('system', snap);
    const served = world.startReader(file, snap.target, { mode: 'seq', count: 16, stopOnError: true });
    await world.readerEnds(served, 15_000, 'with a daemon');
    check(served.firstError() === undefined && served.goodReads === 16, 'reads failed while a daemon served the target');
    daemon.signal('SIGKILL');
    await daemon.exited;
    const orphan = world.startReader(file, snap.target, { mode: 'seq', count: 1, stopOnError: true });
    await world.readerEnds(orphan, 10_000, 'after the daemon died');
    const late = orphan.firstError();
    check(late !== undefined && late.code === 'EIO', `a read after the daemon died ended with ${late?.code ?? 'success'}, not EIO`);
    const terminatedAfter = late.at - readyAt(orphan);
    check(terminatedAfter <= LATE_MARGIN_MS, `after the daemon died, IO took ${terminatedAfter} ms to fail (it should fail at once)`);
    return { timeout_ms: timeout, new_target_eio_ms: failedAfter, terminated_eio_ms: terminatedAfter };
  },
};
