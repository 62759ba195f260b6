import path from 'node:path';
import { run } from '../../src/util/exec';
import { REPO } from '../support/cli';

/**
 * Starting `vab` loads only the command definitions; each command requires what it runs. The
 * crash runner and post-install start many short vab processes, so this is checked by what gets
 * loaded (timing would be noise on a shared machine).
 */
const HEAVY = ['winston', 'protobufjs', 'zstd-napi', 'lzma-native', 'lz4-napi', 'compressjs', '@foxglove/wasm-bz2', 'cli-progress'];

/** The exit code of `vab ARGS...` and the packages under node_modules it has loaded when main() returns. */
async function packagesLoadedBy(args: readonly string[]): Promise<{ code: number; names: string[] }> {
  const script = `
    const cli = require(${JSON.stringify(path.join(REPO, 'dist/src/cli/main.js'))});
    cli.main(['node', 'vab', ...${JSON.stringify(args)}]).then((code) => {
      const names = new Set();
      for (const file of Object.keys(require.cache)) {
        const m = /node_modules\\/((?:@[^/]+\\/)?[^/]+)\\//.exec(file);
        if (m) names.add(m[1]);
      }
      process.stderr.write(JSON.stringify({ code, names: [...names].sort() }));
    });`;
  const result = await run(process.execPath, ['-e', script], { timeoutMs: 30_000 });
  return JSON.parse(result.stderr.slice(result.stderr.lastIndexOf('{"code"'))) as { code: number; names: string[] };
}

describe('vab start-up', () => {
  it('loads no codec, protobuf, logging or progress package for --version or --help', async () => {
    for (const args of [['--version'], ['--help'], ['payload', '--help'], ['kernel', '--help']]) {
      const { code, names } = await packagesLoadedBy(args);
      expect(code).toBe(0);
      expect(names).toContain('commander');
      expect(names.filter((name) => HEAVY.includes(name))).toEqual([]);
    }
  });

  it('loads a command’s modules when that command runs', async () => {
    // The payload format needs protobufjs, loaded before the missing file is noticed.
    const { code, names } = await packagesLoadedBy(['payload', 'inspect', '/nonexistent.bin']);
    expect(code).toBe(1);
    expect(names).toContain('protobufjs');
  });
});
