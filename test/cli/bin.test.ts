import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { run } from '../../src/util/exec';
import { REPO, VAB_BIN, vab } from '../support/cli';

/** The package's `vab` command (package.json "bin") must run the CLI, not just load it. */
describe('bin/vab', () => {
  it('is the package bin entry', async () => {
    const pkg = JSON.parse(await fs.readFile(path.join(REPO, 'package.json'), 'utf8')) as { bin: Record<string, string> };
    expect(pkg.bin).toEqual({ vab: 'bin/vab' });
  });

  it('prints the package version', async () => {
    const { version } = JSON.parse(await fs.readFile(path.join(REPO, 'package.json'), 'utf8')) as { version: string };
    const result = await vab(['--version']);
    expect(result).toMatchObject({ code: 0, stdout: `${version}\n`, stderr: '' });
  });

  it('runs through a symlink, as `npm install -g` and the Docker image install it', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vab-bin-'));
    try {
      await fs.symlink(VAB_BIN, path.join(dir, 'vab'));
      const result = await run(path.join(dir, 'vab'), ['--version'], { timeoutMs: 60_000 });
      expect(result).toMatchObject({ code: 0, stderr: '' });
      expect(result.stdout).toMatch(/^\d+\.\d+\.\d+\n$/);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('says to build first when dist/ is missing', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vab-unbuilt-'));
    try {
      await fs.mkdir(path.join(dir, 'bin'));
      await fs.copyFile(VAB_BIN, path.join(dir, 'bin/vab'));
      const result = await run(process.execPath, [path.join(dir, 'bin/vab'), '--version'], { timeoutMs: 60_000 });
      expect(result.code).toBe(1);
      expect(result.stderr).toBe(`vab: ${path.join(dir, 'dist/src/cli/main.js')} is missing: run "npm run build" first\n`);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('prints help naming the commands', async () => {
    const result = await vab(['--help']);
    expect(result.code).toBe(0);
    for (const command of ['kernel', 'dmctl', 'passthrough', 'cow', 'payload', 'demo']) expect(result.stdout).toMatch(new RegExp(`^  ${command}\\b`, 'm'));
  });

  it('exits non-zero with an error on stderr when the command fails', async () => {
    const result = await vab(['cow', 'inspect', '/nonexistent']);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(/^vab: .*\/nonexistent/);
  });

  it('exits non-zero on a usage error', async () => {
    const result = await vab(['no-such-command']);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/unknown command 'no-such-command'/);
  });
});
