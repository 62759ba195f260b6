import path from 'node:path';
import { VabError } from '../util/errors';
import { partitionNameProblem } from '../util/names';

/**
 * Where a device's files live (off Android, everything under one directory):
 *
 *   super/<p>.img                    base image: old content, new content once merged
 *   data/ota/<p>.cow                 the partition's COW (v3)
 *   metadata/ota/state               SnapshotUpdateStatus
 *   metadata/ota/snapshots/<p>       SnapshotStatus of each snapshotted partition
 *   metadata/ota/snapshot-boot       written by finishedSnapshotWrites: the slot the update left
 *   metadata/ota/rollback-indicator  written when the source is booted while an update is pending
 *   metadata/ota/lock                held by the vab command that is changing the state
 *
 * Every partition path goes through one check, so no name read from a payload or a status file
 * can reach outside its directory.
 */
export class DeviceLayout {
  readonly root: string;
  readonly superDir: string;
  readonly cowDir: string;
  readonly metadataDir: string;
  readonly snapshotsDir: string;
  readonly stateFile: string;
  readonly bootIndicator: string;
  readonly rollbackIndicator: string;
  readonly lockFile: string;

  constructor(root: string) {
    this.root = path.resolve(root);
    this.superDir = path.join(this.root, 'super');
    this.cowDir = path.join(this.root, 'data', 'ota');
    this.metadataDir = path.join(this.root, 'metadata', 'ota');
    this.snapshotsDir = path.join(this.metadataDir, 'snapshots');
    this.stateFile = path.join(this.metadataDir, 'state');
    this.bootIndicator = path.join(this.metadataDir, 'snapshot-boot');
    this.rollbackIndicator = path.join(this.metadataDir, 'rollback-indicator');
    this.lockFile = path.join(this.metadataDir, 'lock');
  }

  image(partition: string): string {
    return path.join(this.superDir, `${checkPartitionName(partition)}.img`);
  }

  cow(partition: string): string {
    return path.join(this.cowDir, `${checkPartitionName(partition)}.cow`);
  }

  snapshotStatus(partition: string): string {
    return path.join(this.snapshotsDir, checkPartitionName(partition));
  }
}

/** Returns `name` when it is a valid partition name, else throws EINVAL_INPUT saying which rule it broke. */
export function checkPartitionName(name: string, where?: { file?: string }): string {
  const problem = partitionNameProblem(name);
  if (problem !== undefined) throw new VabError('EINVAL_INPUT', `partition name ${JSON.stringify(name)} ${problem}`, where);
  return name;
}
