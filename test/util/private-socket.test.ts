import { promises as fs } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { ensurePrivateRunDir, listenPrivate } from '../../src/util/private-socket';

let dir: string;
beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vab-private-'));
});
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

it('listens with mode 0600 even under an empty umask, and restores the umask', async () => {
  const previous = process.umask(0);
  const server = net.createServer();
  try {
    await listenPrivate(server, path.join(dir, 's.sock'));
    expect(process.umask()).toBe(0);
    expect((await fs.stat(path.join(dir, 's.sock'))).mode & 0o777).toBe(0o600);
  } finally {
    process.umask(previous);
    server.close();
  }
});

it('creates a missing run directory 0700 and accepts it again', async () => {
  const run = path.join(dir, 'a', 'run');
  await ensurePrivateRunDir(run);
  expect((await fs.stat(run)).mode & 0o777).toBe(0o700);
  await expect(ensurePrivateRunDir(run)).resolves.toBeUndefined();
});

it('refuses a symbolic link, a file, and a directory others may write to', async () => {
  const real = path.join(dir, 'real');
  await fs.mkdir(real, { mode: 0o700 });
  await fs.symlink(real, path.join(dir, 'link'));
  await expect(ensurePrivateRunDir(path.join(dir, 'link'))).rejects.toMatchObject({ code: 'EINVAL_INPUT', message: expect.stringMatching(/not a directory/) });
  await fs.writeFile(path.join(dir, 'file'), '');
  await expect(ensurePrivateRunDir(path.join(dir, 'file'))).rejects.toMatchObject({ message: expect.stringMatching(/not a directory/) });
  await fs.chmod(real, 0o1777);
  await expect(ensurePrivateRunDir(real)).rejects.toMatchObject({ message: expect.stringMatching(/writable by every user \(mode 1777\)/) });
});
