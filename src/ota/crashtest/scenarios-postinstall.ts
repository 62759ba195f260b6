import { DeviceRound } from './device-world';
import { Figures, Scenario, ScenarioContext, check, waitUntil } from './scenario';

/** How long past daemon_timeout_ms post-install may take to fail when its daemon is gone for good. */
const FAIL_MARGIN_MS = 5_000;

/**
 * Starts post-install on a booted device, does `act` once the program is part way through (the
 * point comes from the seed), and returns how it ended.
 */
async function postinstallThrough(round: DeviceRound, ctx: ScenarioContext, act: () => Promise<void>): Promise<{ code: number | null; stderr: string; actedAt: number; endedAt: number; at: number }> {
  const run = round.startPostinstall();
  const at = ctx.rng.int(10, 70) / 100;
  await waitUntil(() => run.progress() >= at || !run.child.running, 60_000, `post-install to reach ${at * 100}%`);
  check(run.child.running, `post-install ended before ${at * 100}% (exit ${run.child.stderr.trim()})`);
  const actedAt = Date.now();
  await act();
  const exit = await run.child.exited;
  return { code: exit.code, stderr: run.child.stderr, actedAt, endedAt: Date.now(), at };
}

/** Android mode: the daemon dies under post-install; its reads fail fast, and after a restart it passes. */
export const postinstallAndroid: Scenario = {
  name: 'postinstall-android',
  description: 'restart_grace_ms 0: SIGKILL snapuserd during post-install; it fails fast with EIO; after the restart it passes',
  async run(ctx): Promise<Figures> {
    const round = await DeviceRound.create(ctx.world);
    await round.apply();
    const daemonTimeoutMs = 4000;
    const boot = await round.startBoot({ supervise: true, restartGraceMs: 0, daemonTimeoutMs });
    const killed = await postinstallThrough(round, ctx, async () => void process.kill(await round.daemonPid(), 'SIGKILL'));
    check(killed.code === 1, `post-install exited ${killed.code} although its daemon was killed under it`);
    check(/IO error/.test(killed.stderr) && /system/.test(killed.stderr), `post-install did not report an IO error on system: ${killed.stderr.trim()}`);
    const failMs = killed.endedAt - killed.actedAt;
    check(failMs < daemonTimeoutMs, `post-install took ${failMs} ms to fail after the kill (daemon_timeout_ms ${daemonTimeoutMs})`);
    check((await round.state()) === 'unverified', 'a failed post-install changed the update state');
    await boot.waitForLine(/restart 1/, 30_000);
    const again = round.startPostinstall();
    const exit = await again.child.exited;
    check(exit.code === 0, `post-install after the restart failed: ${again.child.stderr.trim()}`);
    return { killed_at_percent: killed.at * 100, fail_after_kill_ms: failMs };
  },
};

/** Android's way to restart snapuserd on purpose: a handoff under post-install costs no error. */
export const postinstallHandoff: Scenario = {
  name: 'postinstall-handoff',
  description: 'snapuserd handed off (dm table reloaded to a new misc, old daemon stopped) during post-install: no error',
  async run(ctx): Promise<Figures> {
    const round = await DeviceRound.create(ctx.world);
    await round.apply();
    const boot = await round.startBoot({ restartGraceMs: 0, daemonTimeoutMs: 4000 });
    const before = await round.daemonPid();
    const handed = await postinstallThrough(round, ctx, async () => void boot.signal('SIGHUP'));
    check(handed.code === 0, `post-install failed across a handoff: ${handed.stderr.trim()}`);
    await boot.waitForLine(/handed off/, 30_000);
    check((await round.daemonPid()) !== before, 'the daemon was not replaced');
    return { handoff_at_percent: handed.at * 100, postinstall_after_handoff_ms: handed.endedAt - handed.actedAt };
  },
};

/** Supervised mode: a restarted daemon within restart_grace_ms costs no error. */
export const postinstallSupervised: Scenario = {
  name: 'postinstall-supervised',
  description: 'restart_grace_ms > 0 with --supervise: SIGKILL snapuserd during post-install; no error',
  async run(ctx): Promise<Figures> {
    const round = await DeviceRound.create(ctx.world);
    await round.apply();
    const boot = await round.startBoot({ supervise: true, restartGraceMs: 8000, daemonTimeoutMs: 4000 });
    const killed = await postinstallThrough(round, ctx, async () => void process.kill(await round.daemonPid(), 'SIGKILL'));
    check(killed.code === 0, `post-install failed although the daemon was restarted within the grace: ${killed.stderr.trim()}`);
    await boot.waitForLine(/restart 1/, 30_000);
    return { killed_at_percent: killed.at * 100, postinstall_after_kill_ms: killed.endedAt - killed.actedAt };
  },
};

/** The daemon never comes back: post-install fails within the timeout plus a few seconds, never later. */
export const postinstallNoDaemon: Scenario = {
  name: 'postinstall-no-daemon',
  description: 'snapuserd killed for good during post-install: it fails within daemon_timeout_ms + a few seconds',
  async run(ctx): Promise<Figures> {
    const round = await DeviceRound.create(ctx.world);
    await round.apply();
    const daemonTimeoutMs = 2000;
    await round.startBoot({ restartGraceMs: 0, daemonTimeoutMs });
    const killed = await postinstallThrough(round, ctx, async () => void process.kill(await round.daemonPid(), 'SIGKILL'));
    check(killed.code === 1, `post-install exited ${killed.code} with no daemon`);
    const failMs = killed.endedAt - killed.actedAt;
    check(failMs <= daemonTimeoutMs + FAIL_MARGIN_MS, `post-install took ${failMs} ms to fail (bound ${daemonTimeoutMs} + ${FAIL_MARGIN_MS} ms)`);
    return { fail_after_kill_ms: failMs };
  },
};
