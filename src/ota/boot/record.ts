import { promises as fs } from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from '../../util/atomic';
import { VabError, errnoCode } from '../../util/errors';

/** One block file of a booted device. */
export interface BootedTarget {
  name: string;
  kind: 'linear' | 'snapshot';
  /** The dm-user misc name its daemon serves (snapshots only; the target name unless handed off). */
  misc: string;
  image: string;
  size: number;
  block_file: string;
}

/**
 * What `vab boot` left running, in `<run>/boot.json`, for the commands that act on a booted device
 * (`vab merge`, `vab postinstall`): where its block files are and which daemon serves them.
 */
export interface BootRecord {
  device: string;
  mount: string;
  run: string;
  /** The `vab boot` process: SIGHUP hands snapuserd off, SIGTERM stops the boot. */
  boot_pid: number;
  kernel_pid: number;
  snapuserd_pid: number;
  targets: BootedTarget[];
}

export function bootRecordPath(run: string): string {
  return path.join(run, 'boot.json');
}

/** boot.json, plus boot.pid, kernel.pid and snapuserd.pid for scripts that only want a pid. */
export async function writeBootRecord(record: BootRecord): Promise<void> {
  await writeFileAtomic(bootRecordPath(record.run), Buffer.from(JSON.stringify(record, null, 2) + '\n'));
  await writeFileAtomic(path.join(record.run, 'boot.pid'), Buffer.from(`${record.boot_pid}\n`));
  await writeFileAtomic(path.join(record.run, 'kernel.pid'), Buffer.from(`${record.kernel_pid}\n`));
  if (record.snapuserd_pid > 0) await writeFileAtomic(path.join(record.run, 'snapuserd.pid'), Buffer.from(`${record.snapuserd_pid}\n`));
}

/** The record of the boot running on `run`; a clear error when there is none. */
export async function readBootRecord(run: string): Promise<BootRecord> {
  const file = bootRecordPath(path.resolve(run));
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') throw new VabError('ESTATE', `no device is booted on ${run} (no ${file}); run vab boot first`, { file });
    throw err;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new VabError('ECORRUPT', 'boot record is not JSON', { file });
  }
  const r = value as Partial<BootRecord>;
  if (typeof r.device !== 'string' || typeof r.mount !== 'string' || typeof r.run !== 'string' || !Array.isArray(r.targets)) {
    throw new VabError('ECORRUPT', 'boot record lacks device, mount, run or targets', { file });
  }
  return r as BootRecord;
}
