import { promises as fs } from 'node:fs';
import path from 'node:path';
import { errnoCode, VabError } from '../util/errors';

/**
 * The lock that keeps two vab commands from changing a device's update state at once.
 *
 * Android takes flock(2) on /metadata/ota. Node has no flock, and holding one through a helper
 * process would tie every command to util-linux. So the lock is a file, `metadata/ota/lock`,
 * holding the owner's pid and its start time from /proc: it is made complete in a temporary file
 * and link(2)ed into place, which fails if a lock exists, so a lock file is never seen half
 * written. A lock whose owner is gone (SIGKILL, power cut) is stale and is taken over; the start
 * time catches a pid that was reused by an unrelated process. Taking over is itself guarded by
 * `lock.break` (same scheme) so that two commands finding the same stale lock do not both win.
 * What remains unguarded: two commands that both find a *breaker* that died mid-takeover.
 */

/** The lock is held by a live process: nothing was changed. */
export class LockBusyError extends VabError {
  constructor(message: string, file: string) {
    super('ESTATE', message, { file });
  }
}

export interface LockOwner {
  pid: number;
  /** Field 22 of /proc/<pid>/stat (clock ticks since boot): tells a reused pid apart. */
  start: string;
  command: string;
}

export class MetadataLock {
  private constructor(
    private readonly file: string,
    private readonly owner: LockOwner,
  ) {}

  /** Takes the lock or throws ESTATE naming the command that holds it; nothing else is touched. */
  static async acquire(file: string, command: string): Promise<MetadataLock> {
    await fs.mkdir(path.dirname(file), { recursive: true });
    const owner: LockOwner = { pid: process.pid, start: await startTime(process.pid) ?? '', command };
    if (await tryLink(file, owner)) return new MetadataLock(file, owner);
    const holder = await readOwner(file);
    if (holder && (await isAlive(holder))) throw busy(file, holder);
    await breakStale(file, holder, owner);
    return new MetadataLock(file, owner);
  }

  async release(): Promise<void> {
    const holder = await readOwner(this.file);
    if (holder && holder.pid === this.owner.pid && holder.start === this.owner.start) await fs.rm(this.file, { force: true });
  }
}

async function breakStale(file: string, stale: LockOwner | undefined, owner: LockOwner): Promise<void> {
  const breakFile = `${file}.break`;
  if (!(await tryLink(breakFile, owner))) {
    const breaker = await readOwner(breakFile);
    if (breaker && (await isAlive(breaker))) throw busy(file, breaker);
    await fs.rm(breakFile, { force: true });
    if (!(await tryLink(breakFile, owner))) throw busy(file, await readOwner(breakFile));
  }
  try {
    const now = await readOwner(file);
    if (now && (await isAlive(now))) throw busy(file, now);
    if (JSON.stringify(now) === JSON.stringify(stale)) await fs.rm(file, { force: true });
    if (!(await tryLink(file, owner))) throw busy(file, await readOwner(file));
  } finally {
    await fs.rm(breakFile, { force: true });
  }
}

/** Writes the owner into a private temporary file and links it to `file`; false if `file` exists. */
async function tryLink(file: string, owner: LockOwner): Promise<boolean> {
  const temporary = `${file}.${process.pid}.${Date.now()}.tmp`;
  const handle = await fs.open(temporary, 'wx', 0o644);
  try {
    await handle.writeFile(JSON.stringify(owner));
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await fs.link(temporary, file);
    return true;
  } catch (err) {
    if (errnoCode(err) === 'EEXIST') return false;
    throw new VabError('EIO', `cannot create lock ${file}: ${(err as Error).message}`, { cause: err });
  } finally {
    await fs.rm(temporary, { force: true });
  }
}

async function readOwner(file: string): Promise<LockOwner | undefined> {
  try {
    const parsed = JSON.parse(await fs.readFile(file, 'utf8')) as Partial<LockOwner>;
    if (typeof parsed.pid === 'number' && typeof parsed.start === 'string') {
      return { pid: parsed.pid, start: parsed.start, command: String(parsed.command ?? '?') };
    }
  } catch {
    // A missing, empty or garbled lock owns nothing: treated as stale.
  }
  return undefined;
}

async function isAlive(owner: LockOwner): Promise<boolean> {
  const start = await startTime(owner.pid);
  return start !== undefined && start === owner.start;
}

/** The start time of a live (non-zombie) process, or undefined when there is none. */
async function startTime(pid: number): Promise<string | undefined> {
  let stat: string;
  try {
    stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may hold spaces and parentheses: count fields after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  if (fields[0] === 'Z' || fields[0] === 'X') return undefined;
  return fields[19];
}

function busy(file: string, holder: LockOwner | undefined): LockBusyError {
  const who = holder ? `vab process ${holder.pid} (${holder.command})` : 'another vab process';
  return new LockBusyError(`the update state is locked by ${who}; try again when it has finished`, file);
}
