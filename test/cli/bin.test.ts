import { promises as fs } from 'node:fs';
import path from 'node:path';
import { REPO, vab } from '../support/cli';

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
