import path from 'path';
import { VabError } from '../util/errors';
import { abortConnection, fuseMountsAt, readMountInfo, unmount } from './mount';

/**
 * Tears down FUSE mounts whatever state their server is in (alive, hung, or killed), from any
 * process but the server's. Meant for tests' afterAll and for crash recovery.
 *
 * The connection is aborted first: until then any access to the mount, even the path lookups
 * umount itself does, can wait forever on a server that no longer answers. The path is used as
 * given (made absolute) and never resolved, for the same reason.
 * Returns how many mounts were removed.
 */
export async function forceUnmount(mountpoint: string): Promise<number> {
  const target = path.resolve(mountpoint);
  let removed = 0;
  for (;;) {
    const mounts = await fuseMountsAt(target);
    const top = mounts[mounts.length - 1];
    if (!top) return removed;
    await abortConnection(top.minor);
    const result = await unmount(target, { lazy: true, timeoutMs: 10_000 });
    if (!result.ok) throw new VabError('EIO', `umount -l ${target} failed: ${result.reason}; the connection is aborted, so the mount only holds stale entries: retry, or check who has it open (fuser -m)`);
    removed++;
  }
}

/** forceUnmount for every FUSE mount at or below `directory` (deepest first). */
export async function forceUnmountUnder(directory: string): Promise<number> {
  const root = path.resolve(directory);
  const inside = (await readMountInfo())
    .filter((e) => (e.fstype === 'fuse' || e.fstype.startsWith('fuse.')) && (e.mountpoint === root || e.mountpoint.startsWith(root + '/')))
    .map((e) => e.mountpoint)
    .sort((a, b) => b.length - a.length);
  let removed = 0;
  for (const mountpoint of new Set(inside)) removed += await forceUnmount(mountpoint);
  return removed;
}
