import { VabError } from '../util/errors';
import type { PartitionUpdate } from './manifest';

/**
 * Sizes a manifest may claim before vab writes anything. Android leaves them to the device (a
 * partition must fit its slot in super); off Android nothing else stops a 78-byte manifest from
 * claiming a partition of exabytes, so vab sets a ceiling well above any real partition (the
 * largest dynamic partitions of current devices are a few GiB).
 */
export const MAX_PARTITION_SIZE = 64 * 1024 ** 3;

/** Refuses partitions (new or old) larger than MAX_PARTITION_SIZE. Extents are checked against these sizes by validate.ts. */
export function checkPartitionLimits(partitions: readonly PartitionUpdate[], file?: string): void {
  for (const partition of partitions) {
    for (const [which, info] of [['new', partition.new_partition_info], ['old', partition.old_partition_info]] as const) {
      const size = info?.size;
      if (size !== undefined && size > MAX_PARTITION_SIZE) {
        throw new VabError('ECORRUPT', `partition ${partition.partition_name}: ${which} size ${size} is above vab's limit of ${MAX_PARTITION_SIZE} bytes (64 GiB)`, { file });
      }
    }
  }
}
