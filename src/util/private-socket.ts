import { promises as fs } from 'node:fs';
import type net from 'node:net';
import { VabError } from './errors';

/**
 * What keeps other local users away from vab's sockets: Node cannot read a peer's credentials
 * (SO_PEERCRED), so the only gate is the file system. Every socket is 0600 and lives in a run
 * directory only its owner may write to: another user can neither connect nor put a socket of
 * their own in its place.
 */

/** Socket files are root-only, like /dev/dm-user/* and init's sockets. */
export const SOCKET_MODE = 0o600;
/** Directories vab creates for sockets and mount points. */
export const PRIVATE_DIR_MODE = 0o700;

/**
 * Listens on a unix socket at `file` with mode 0600. The umask is tightened around listen(),
 * which binds synchronously for a path, so the socket never exists with wider bits (the umask is
 * process-wide for that instant: a file a worker thread creates meanwhile comes out narrower,
 * never wider). The chmod after it is belt and braces. A path left by a dead process is the
 * caller's to remove first.
 */
export async function listenPrivate(server: net.Server, file: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    const previous = process.umask(0o177);
    try {
      server.listen(file, () => {
        server.off('error', reject);
        resolve();
      });
    } finally {
      process.umask(previous);
    }
  });
  await fs.chmod(file, SOCKET_MODE);
}

/**
 * Makes sure `dir` can hold vab's sockets: created 0700 when missing; refused when it is not a
 * real directory, belongs to another user, or others may write to it (they could swap in a
 * socket of their own and pose as the kernel or the daemon).
 */
export async function ensurePrivateRunDir(dir: string, what = 'run directory'): Promise<void> {
  try {
    await fs.mkdir(dir, { mode: PRIVATE_DIR_MODE });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      await fs.mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
    }
  }
  const stat = await fs.lstat(dir);
  const uid = process.getuid?.() ?? 0;
  if (!stat.isDirectory()) throw new VabError('EINVAL_INPUT', `${what} ${dir} is not a directory (a symbolic link or a file is refused)`);
  if (stat.uid !== uid) throw new VabError('EINVAL_INPUT', `${what} ${dir} belongs to uid ${stat.uid}, not to this user (uid ${uid}): another user could replace its sockets`);
  if (stat.mode & 0o022) {
    const mode = (stat.mode & 0o7777).toString(8).padStart(4, '0');
    throw new VabError('EINVAL_INPUT', `${what} ${dir} is writable by ${stat.mode & 0o002 ? 'every user' : 'its group'} (mode ${mode}): another user could replace its sockets; use a directory only you may write to (chmod go-w)`);
  }
}

/** Creates `dir` (and missing parents) 0700 when it does not exist; an existing one is left as it is. */
export async function makePrivateDir(dir: string): Promise<void> {
  await fs.mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
}
