import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { vab } from '../support/cli';

/** The runner end to end through bin/vab: real kernels, daemons and readers, killed for real. */
describe('vab crashtest', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vab-crashtest-test-'));
  });
  afterAll(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('lists its scenarios', async () => {
    const listed = await vab(['crashtest', '--list']);
    expect(listed.code).toBe(0);
    expect(listed.stdout.split('\n').filter(Boolean).map((l) => l.split('\t')[0])).toEqual(expect.arrayContaining(['kill-during-io', 'late-daemon', 'no-daemon', 'postinstall-android', 'postinstall-handoff', 'postinstall-supervised', 'merge-kill', 'merge-powercut', 'apply-kill']));
  });

  it('passes every scenario and writes the report', async () => {
    const json = path.join(dir, 'report.json');
    const result = await vab(['crashtest', '--seed', '11', '--json', json], { timeoutMs: 280_000 });
    expect(result.stderr).toBe('');
    expect({ code: result.code, stdout: result.stdout }).toMatchObject({ code: 0 });
    expect(result.stdout).toMatch(/^kill-during-io +1 +1 +0 +kill_after_reads=\d+ eio_after_kill_ms=\d+/m);
    const report = JSON.parse(await fs.readFile(json, 'utf8')) as { ok: boolean; seed: number; rounds: Array<{ scenario: string; ok: boolean; figures: Record<string, number> }> };
    expect(report).toMatchObject({ ok: true, seed: 11 });
    const noDaemon = report.rounds.find((r) => r.scenario === 'no-daemon')!;
    expect(noDaemon.figures.new_target_eio_ms).toBeGreaterThanOrEqual(995);
    expect(report.rounds.map((r) => r.scenario)).toEqual(['kill-during-io', 'late-daemon', 'no-daemon', 'postinstall-android', 'postinstall-handoff', 'postinstall-supervised', 'postinstall-no-daemon', 'merge-kill', 'merge-powercut', 'apply-kill']);
  }, 300_000);

  it('fails loudly, with the seed to replay, when the kernel never fails queued IO', async () => {
    // A kernel whose no-daemon timer is ten minutes: queued IO effectively waits for ever.
    const result = await vab(['crashtest', '--scenario', 'no-daemon', '--seed', '5'], { timeoutMs: 120_000, env: { ...process.env, VAB_CRASHTEST_KERNEL_ARGS: '--daemon-timeout-ms 600000' } });
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(/FAILED no-daemon round 1: .*IO hangs/);
    expect(result.stdout).toContain('replay: vab crashtest --scenario no-daemon --seed 5');
  }, 150_000);

  it('refuses an unknown scenario', async () => {
    const result = await vab(['crashtest', '--scenario', 'nope']);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/unknown scenario "nope"; scenarios: kill-during-io/);
  });
});
