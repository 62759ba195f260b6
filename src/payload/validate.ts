import { VabError } from '../util/errors';
import { checkPartitionLimits } from './limits';
import { DeltaArchiveManifest, Extent, InstallOperation, OpType, PartitionUpdate, blockSizeOf, isDelta } from './manifest';
import { FULL_MINOR_VERSION, MAX_MINOR_VERSION, MIN_DELTA_MINOR_VERSION } from './minor-version';
import { SOURCE_OPS, SUPPORTED_OPS, describeOp, unsupportedOpError } from './operations';

/**
 * Checks everything about the manifest that can be checked without running an operation, so
 * that a bad payload fails before the first byte of output is written: block size, versions,
 * partition sizes and hashes, extents inside their partitions, data where data belongs, and
 * operation types vab can apply.
 */
export function validateManifest(manifest: DeltaArchiveManifest, partitions: readonly PartitionUpdate[], file?: string): void {
  const blockSize = blockSizeOf(manifest);
  if (blockSize < 512 || blockSize > 1 << 20 || (blockSize & (blockSize - 1)) !== 0) {
    throw new VabError('ECORRUPT', `block size ${blockSize} is not a power of two between 512 and 1 MiB`, { file });
  }
  const minor = manifest.minor_version ?? FULL_MINOR_VERSION;
  if (isDelta(manifest) ? minor < MIN_DELTA_MINOR_VERSION || minor > MAX_MINOR_VERSION : minor !== FULL_MINOR_VERSION) {
    throw new VabError('EUNSUPPORTED', `minor version ${minor} is not valid for a ${isDelta(manifest) ? 'delta' : 'full'} payload`, { file });
  }
  checkPartitionLimits(partitions, file);
  for (const partition of partitions) validatePartition(partition, blockSize, file);
}

function validatePartition(partition: PartitionUpdate, blockSize: number, file?: string): void {
  const name = partition.partition_name;
  const info = partition.new_partition_info;
  if (!info || info.size === undefined || !info.hash || info.hash.length !== 32) {
    throw new VabError('ECORRUPT', `partition ${name}: new_partition_info needs a size and a SHA-256 hash`, { file });
  }
  const newBlocks = Math.ceil(info.size / blockSize);
  const oldBlocks = partition.old_partition_info?.size !== undefined ? Math.ceil(partition.old_partition_info.size / blockSize) : 0;
  partition.operations.forEach((op, index) => {
    const where = describeOp(name, index, op);
    if (!SUPPORTED_OPS.has(op.type)) throw unsupportedOpError(name, index, op, file);
    if (op.dst_extents.length === 0) throw new VabError('ECORRUPT', `${where}: no destination extents`, { file });
    checkExtents(op.dst_extents, newBlocks, `${where}: destination`, file);
    const hasData = (op.data_length ?? 0) > 0;
    const wantsData = op.type !== OpType.ZERO && op.type !== OpType.DISCARD && op.type !== OpType.SOURCE_COPY;
    if (hasData !== wantsData) {
      throw new VabError('ECORRUPT', `${where}: ${wantsData ? 'has no data' : 'carries data it cannot use'}`, { file });
    }
    if (SOURCE_OPS.has(op.type)) {
      if (partition.old_partition_info === undefined) throw new VabError('ECORRUPT', `${where}: reads the old image, but the partition has no old_partition_info`, { file });
      if (op.src_extents.length === 0) throw new VabError('ECORRUPT', `${where}: no source extents`, { file });
      checkExtents(op.src_extents, oldBlocks, `${where}: source`, file);
      checkCopyShape(op, where, file);
    }
  });
}

function checkExtents(extents: readonly Extent[], limitBlocks: number, what: string, file?: string): void {
  for (const extent of extents) {
    if (extent.num_blocks === 0) {
      throw new VabError('ECORRUPT', `${what} extent at block ${extent.start_block} is empty`, { file });
    }
    if (extent.start_block + extent.num_blocks > limitBlocks) {
      throw new VabError('ECORRUPT', `${what} extent [${extent.start_block}, +${extent.num_blocks}) runs past the end of the partition (${limitBlocks} blocks)`, { file });
    }
  }
}

function checkCopyShape(op: InstallOperation, where: string, file?: string): void {
  if (op.type !== OpType.SOURCE_COPY) return;
  const src = op.src_extents.reduce((n, e) => n + e.num_blocks, 0);
  const dst = op.dst_extents.reduce((n, e) => n + e.num_blocks, 0);
  if (src !== dst) throw new VabError('ECORRUPT', `${where}: copies ${src} source blocks into ${dst} destination blocks`, { file });
}
