import { promises as fsp } from 'fs';
import { VabError } from '../util/errors';
import { run } from '../util/exec';

/** Mounting, finding and tearing down FUSE mounts with util-linux tools (Node has no mount syscall). */

export const FUSECTL_DIR = '/sys/fs/fuse/connections';

export interface MountRequest {
  fd: number;
  mountpoint: string;
  source: string;
  maxRead: number;
}

/**
 * Attaches an open /dev/fuse to `mountpoint`. `-i` keeps mount from looking for a mount.fuse
 * helper; the kernel needs fd, rootmode, user_id and group_id. mount(2) returns before the kernel
 * has even queued INIT for reading, so this never waits on the server.
 */
export async function mountDevFuse(request: MountRequest): Promise<void> {
  // default_permissions: the kernel checks each access against the modes GETATTR reports (0600, or
  // 0640 for a reader group), as for a block device. allow_other lets a process of that group
  // through to the check at all; without it only the mounting uid (root) could reach the files.
  const options = `fd=3,rootmode=40000,user_id=0,group_id=0,default_permissions,allow_other,max_read=${request.maxRead}`;
  const result = await run('mount', ['-i', '-t', 'fuse.vab', '-o', options, request.source, request.mountpoint], {
    extraFds: [request.fd],
    timeoutMs: 30_000,
  });
  if (result.code !== 0) {
    throw new VabError('EIO', `mount of FUSE on ${request.mountpoint} failed: ${result.stderr.trim() || `exit ${result.code}`}`);
  }
}

export interface MountInfoEntry {
  mountpoint: string;
  fstype: string;
  /** The mount's source (the first field after the fstype). */
  source: string;
  /** Minor of the superblock's device: for FUSE, the fusectl connection number. */
  minor: number;
}

/** Undoes the octal escapes /proc/self/mountinfo uses for space, tab, newline and backslash. */
function unescapeMountPath(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

export async function readMountInfo(): Promise<MountInfoEntry[]> {
  const text = await fsp.readFile('/proc/self/mountinfo', 'utf8');
  const entries: MountInfoEntry[] = [];
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    const dash = fields.indexOf('-');
    if (fields.length < 10 || dash < 6) continue;
    const minor = Number(fields[2].split(':')[1]);
    entries.push({ mountpoint: unescapeMountPath(fields[4]), fstype: fields[dash + 1], source: fields[dash + 2], minor });
  }
  return entries;
}

/** FUSE mounts on exactly `mountpoint`, the topmost last. */
export async function fuseMountsAt(mountpoint: string): Promise<MountInfoEntry[]> {
  return (await readMountInfo()).filter((e) => e.mountpoint === mountpoint && (e.fstype === 'fuse' || e.fstype.startsWith('fuse.')));
}

export async function unmount(mountpoint: string, options: { lazy: boolean; timeoutMs: number }): Promise<{ ok: boolean; reason: string }> {
  const args = options.lazy ? ['-l', mountpoint] : [mountpoint];
  const result = await run('umount', args, { timeoutMs: options.timeoutMs }).catch((err: Error) => err);
  if (result instanceof Error) return { ok: false, reason: result.message };
  if (result.code === 0) return { ok: true, reason: '' };
  return { ok: false, reason: result.timedOut ? 'umount timed out' : result.stderr.trim() || `exit ${result.code}` };
}

/** fusectl is not mounted on every machine; the abort files only exist once it is. */
export async function ensureFusectl(): Promise<void> {
  const present = await fsp.readdir(FUSECTL_DIR).catch(() => null);
  if (present !== null && present.length > 0) return;
  const result = await run('mount', ['-t', 'fusectl', 'none', FUSECTL_DIR], { timeoutMs: 10_000 });
  // "already mounted" (with no connections yet) is fine; anything else leaves us unable to abort.
  if (result.code !== 0 && !/already mounted|busy/i.test(result.stderr)) {
    throw new VabError('EIO', `cannot mount fusectl on ${FUSECTL_DIR}: ${result.stderr.trim()}`);
  }
}

/**
 * Ends a connection from outside: every request in flight fails (ECONNABORTED for the caller),
 * every later one fails at once, and the server's reads return ENODEV. Returns false when the
 * connection no longer exists.
 */
export async function abortConnection(connection: number): Promise<boolean> {
  await ensureFusectl();
  try {
    await fsp.writeFile(`${FUSECTL_DIR}/${connection}/abort`, '1');
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}
