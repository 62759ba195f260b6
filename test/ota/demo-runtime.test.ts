import { vab } from '../support/cli';

/**
 * `npm start` runs this demo; it must keep working end to end. It runs as a child process (the
 * demo spawns vab kernel, which serves the mount; this process only reads the narration).
 */
describe('vab demo runtime', () => {
  it('serves, mounts and runs a filesystem, fails IO within its bound, and survives a supervised restart', async () => {
    const result = await vab(['demo', 'runtime', '--daemon-timeout-ms', '1500'], { timeoutMs: 120_000 });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const out = result.stdout;
    expect(out).toContain('hello from vab demo system 1.0 (served through vab)');
    expect(out).toMatch(/pattern\.bin read through the daemon is byte-identical/);
    expect(out).toMatch(/killed the daemon \(SIGKILL\); a read of the block file then failed: .*Input\/output error/);
    const waited = Number(/the read waited (\d+) ms \(daemon_timeout_ms 1500\), then failed: .*Input\/output error/.exec(out)?.[1]);
    expect(waited).toBeGreaterThanOrEqual(1500);
    expect(waited).toBeLessThan(1500 + 2000);
    expect(out).toMatch(/dd finished with no error; the data it read is byte-identical/);
    expect(out).toContain('demo complete');
  });
});
