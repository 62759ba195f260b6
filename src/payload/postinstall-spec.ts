import { VabError } from '../util/errors';
import type { PartitionUpdate } from './manifest';

/** The post-install fields of one partition, as `payload generate --postinstall` writes them. */
export interface PostinstallSpec {
  partition: string;
  /** Relative to the partition's filesystem root, as update_engine runs it. */
  path: string;
  /** mount(2) type; absent: the device probes the superblock. */
  filesystemType?: string;
  optional: boolean;
}

const FILESYSTEM_TYPE = /^[a-z0-9]{1,16}$/;

/**
 * Parses `PART:PATH[:FSTYPE][:optional]`. The path must be relative and must not climb out of the
 * partition: update_engine refuses such a path on the device, so a payload carrying one is useless.
 */
export function parsePostinstallSpec(text: string): PostinstallSpec {
  const fail = (why: string): never => {
    throw new VabError('EINVAL_INPUT', `--postinstall ${JSON.stringify(text)}: ${why} (expected PART:PATH[:FSTYPE][:optional])`);
  };
  const parts = text.split(':');
  let optional = false;
  if (parts.length > 2 && parts[parts.length - 1] === 'optional') {
    optional = true;
    parts.pop();
  }
  if (parts.length < 2 || parts.length > 3) fail('wrong number of fields');
  const [partition, path, filesystemType] = parts;
  if (partition === '') fail('the partition name is empty');
  if (path === '') fail('the program path is empty');
  if (path.startsWith('/')) fail('the program path must be relative to the partition root');
  if (path.split('/').includes('..')) fail('the program path must not contain ".."');
  if (filesystemType && !FILESYSTEM_TYPE.test(filesystemType)) fail(`"${filesystemType}" is not a filesystem type`);
  return { partition, path, filesystemType: filesystemType || undefined, optional };
}

/** Every spec must name a partition of the payload, once: checked before any image is read. */
export function checkPostinstallSpecs(names: readonly string[], specs: readonly PostinstallSpec[]): void {
  const seen = new Set<string>();
  for (const spec of specs) {
    if (seen.has(spec.partition)) throw new VabError('EINVAL_INPUT', `--postinstall given twice for partition ${spec.partition}`);
    seen.add(spec.partition);
    if (!names.includes(spec.partition)) throw new VabError('EINVAL_INPUT', `--postinstall names partition ${spec.partition}, which is not in the payload (${names.join(', ')})`);
  }
}

/** Sets the manifest fields of the partitions the (checked) specs name. */
export function applyPostinstallSpecs(partitions: PartitionUpdate[], specs: readonly PostinstallSpec[]): void {
  for (const spec of specs) {
    const update = partitions.find((p) => p.partition_name === spec.partition);
    if (!update) continue;
    update.run_postinstall = true;
    update.postinstall_path = spec.path;
    if (spec.filesystemType) update.filesystem_type = spec.filesystemType;
    if (spec.optional) update.postinstall_optional = true;
  }
}
