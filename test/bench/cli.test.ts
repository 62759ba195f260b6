import path from 'node:path';
import { run, RunResult } from '../../src/util/exec';
import { REPO } from '../support/cli';

/**
 * The benchmarks' shared command line: bad values are usage errors, and --json prints exactly one
 * object {"bench","ratios","figures"} on stdout with the ratio names issue 12 fixes. Run on tiny
 * inputs: the figures mean nothing here, only their shape does.
 */
function bench(name: string, args: readonly string[]): Promise<RunResult> {
  return run(process.execPath, [path.join(REPO, 'dist/bench', `${name}.js`), ...args], { timeoutMs: 180_000 });
}

function expectOneObject(result: RunResult, name: string, ratios: string[]): void {
  expect(result.code).toBe(0);
  const lines = result.stdout.split('\n').filter(Boolean);
  expect(lines).toHaveLength(1);
  const out = JSON.parse(lines[0]) as { bench: string; ratios: Record<string, number>; figures: Record<string, number> };
  expect(Object.keys(out).sort()).toEqual(['bench', 'figures', 'ratios']);
  expect(out.bench).toBe(name);
  expect(Object.keys(out.ratios).sort()).toEqual([...ratios].sort());
  for (const value of [...Object.values(out.ratios), ...Object.values(out.figures)]) expect(value).toBeGreaterThan(0);
  expect(Object.keys(out.figures).length).toBeGreaterThan(0);
  // The human report still shows, on stderr.
  expect(result.stderr).toMatch(new RegExp(`${name} benchmark`));
}

describe('benchmark command lines', () => {
  it.each([
    ['cow', ['--size-mib', 'abc'], /option '--size-mib <n>' argument 'abc' is invalid\. expected an integer >= 1/],
    ['cow', ['--codecs', 'zstd,lzma'], /"lzma": .*unknown compression/],
    ['cow', ['--runs', '0'], /option '--runs <n>' argument '0' is invalid/],
    ['payload', ['--image-mib', '1.5'], /option '--image-mib <n>' argument '1\.5' is invalid/],
    ['runtime', ['--random-reads', '-3'], /option '--random-reads <n>' argument '-3' is invalid/],
    ['runtime', ['--sizemib', '4'], /unknown option '--sizemib'/],
  ])('bench/%s %j is refused with a usage error', async (name, args, message) => {
    const result = await bench(name, args);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(message);
  });

  it('bench/cow --json', async () => {
    const result = await bench('cow', ['--size-mib', '4', '--codecs', 'zstd', '--index-ops', '1000', '--runs', '1', '--json']);
    expectOneObject(result, 'cow', ['cow_create_zstd_vs_bare', 'cow_apply_zstd_vs_bare', 'reader_seq_vs_floor']);
  });

  it('bench/payload --json', async () => {
    const result = await bench('payload', ['--image-mib', '16', '--files-mib', '4', '--runs', '1', '--json']);
    expectOneObject(result, 'payload', ['extract_full_zstd_vs_bare', 'extract_incremental_vs_full', 'extract_full_zstd_vs_dumper', 'extract_incremental_vs_dumper']);
  });

  it('bench/runtime --json', async () => {
    const result = await bench('runtime', ['--size-mib', '4', '--random-reads', '50', '--json']);
    expectOneObject(result, 'runtime', ['daemon_vs_nohop_seq', 'daemon_vs_nohop_rand4k']);
  });

  it('bench/snapuserd --json', async () => {
    const result = await bench('snapuserd', ['--size-mib', '4', '--random-reads', '50', '--init-ops', '1000', '--json']);
    expectOneObject(result, 'snapuserd', ['snapuserd_vs_nohop_seq', 'snapuserd_vs_nohop_rand4k']);
  });
});
