import { promises as fs } from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from '../util/atomic';
import { errnoCode, VabError } from '../util/errors';
import { partitionNameProblem } from '../util/names';
import { checkPartitionName, DeviceLayout } from './layout';
import {
  decodeSnapshotStatus,
  decodeUpdateStatus,
  emptyUpdateStatus,
  encodeSnapshotStatus,
  encodeUpdateStatus,
  SnapshotStatus,
  SnapshotUpdateStatus,
  updateStateFromText,
} from './proto';

/** Replaces a file atomically and durably; a seam so crash tests can stop between the steps. */
export type AtomicWriter = (file: string, data: Uint8Array) => Promise<void>;

/** Reads and writes the files under metadata/ota. It takes no lock: SnapshotManager does. */
export class SnapshotStore {
  constructor(
    readonly layout: DeviceLayout,
    private readonly write: AtomicWriter = writeFileAtomic,
  ) {}

  /** A missing state file is None, as on Android; so is a legacy text state file's text. */
  async readUpdateStatus(): Promise<SnapshotUpdateStatus> {
    const file = this.layout.stateFile;
    const bytes = await readIfExists(file);
    if (bytes === undefined) return emptyUpdateStatus();
    try {
      return await decodeUpdateStatus(bytes, file);
    } catch (err) {
      const legacy = updateStateFromText(bytes.toString('latin1'));
      if (legacy !== undefined) return emptyUpdateStatus(legacy);
      throw err;
    }
  }

  async writeUpdateStatus(status: SnapshotUpdateStatus): Promise<void> {
    await fs.mkdir(this.layout.metadataDir, { recursive: true });
    await this.write(this.layout.stateFile, await encodeUpdateStatus(status));
  }

  /**
   * Names of the partitions with a status file, system and product first (libsnapshot merges
   * those first). Hidden files are the atomic writer's leftovers from a crash and are skipped;
   * any other name that is not a partition name means the directory was tampered with.
   */
  async listSnapshots(): Promise<string[]> {
    let entries: string[];
    try {
      entries = await fs.readdir(this.layout.snapshotsDir);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return [];
      throw new VabError('EIO', `cannot list snapshots: ${(err as Error).message}`, { file: this.layout.snapshotsDir, cause: err });
    }
    const names = entries.filter((name) => !name.startsWith('.')).sort();
    for (const name of names) {
      const problem = partitionNameProblem(name);
      if (problem) throw new VabError('ECORRUPT', `status file name ${JSON.stringify(name)} is not a partition name: ${problem}`, { file: path.join(this.layout.snapshotsDir, name) });
    }
    const first: string[] = names.filter((name) => name === 'system' || name === 'product');
    return [...first, ...names.filter((name) => !first.includes(name))];
  }

  /** A status whose recorded name is not its file name is corrupt (Android only warns). */
  async readSnapshotStatus(name: string): Promise<SnapshotStatus> {
    const file = this.layout.snapshotStatus(name);
    const bytes = await readIfExists(file);
    if (bytes === undefined) throw new VabError('ENOTFOUND', `no snapshot status for partition ${name}`, { file });
    const status = await decodeSnapshotStatus(bytes, file);
    if (status.name !== name) {
      throw new VabError('ECORRUPT', `status names partition ${JSON.stringify(status.name)}, but its file is for ${name}`, { file });
    }
    return status;
  }

  /** Any other metadata file (snapshot-boot), through the same atomic writer. */
  async writeFile(file: string, data: Uint8Array): Promise<void> {
    await fs.mkdir(path.dirname(file), { recursive: true });
    await this.write(file, data);
  }

  async writeSnapshotStatus(status: SnapshotStatus): Promise<void> {
    const file = this.layout.snapshotStatus(checkPartitionName(status.name));
    await fs.mkdir(this.layout.snapshotsDir, { recursive: true });
    await this.write(file, await encodeSnapshotStatus(status));
  }

  /**
   * The COW goes before its status: a crash in between leaves a status that the next cleanup
   * lists and finishes, where the other order could leave a large COW that nothing lists.
   */
  async deleteSnapshot(name: string): Promise<void> {
    await fs.rm(this.layout.cow(name), { force: true });
    await fs.rm(this.layout.snapshotStatus(name), { force: true });
  }
}

export async function readIfExists(file: string): Promise<Buffer | undefined> {
  try {
    return await fs.readFile(file);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw new VabError('EIO', `cannot read: ${(err as Error).message}`, { file, cause: err });
  }
}
