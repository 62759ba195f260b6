import { createHash } from 'node:crypto';
import { encodeHeader } from '../../../src/payload/header';
import { encodeManifest, InstallOperation, OpType, PartitionUpdate } from '../../../src/payload/manifest';

const BLOCK = 4096;
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest();

export interface BombOptions {
  /** Blocks of the partition and of the op's destination (default 1). */
  blocks?: number;
  /** For BSDIFF ops: the old image the op reads (its first `blocks` blocks). */
  old?: Buffer;
  /** The op's destination (default: all blocks in one extent). */
  extents?: Array<{ start_block: number; num_blocks: number }>;
  /** What the partition holds afterwards, for its hash (default: zeros). */
  image?: Buffer;
}

/**
 * An unsigned payload with one partition, "system", written by one op carrying `blob`. Its data
 * hash is right, so extract gets as far as decoding the blob; the partition hash is that of zeros.
 */
export function bombPayload(type: OpType, blob: Buffer, options: BombOptions = {}): Buffer {
  const blocks = options.blocks ?? 1;
  const extents = options.extents ?? [{ start_block: 0, num_blocks: blocks }];
  const op: InstallOperation = { type, data_offset: 0, data_length: blob.length, src_extents: [], dst_extents: extents, data_sha256_hash: sha256(blob) };
  const partition: PartitionUpdate = {
    partition_name: 'system',
    new_partition_info: { size: blocks * BLOCK, hash: sha256(options.image ?? Buffer.alloc(blocks * BLOCK)) },
    operations: [op],
    merge_operations: [],
  };
  if (options.old) {
    op.src_extents = [{ start_block: 0, num_blocks: blocks }];
    partition.old_partition_info = { size: options.old.length, hash: sha256(options.old) };
  }
  const manifest = encodeManifest({ block_size: BLOCK, minor_version: options.old ? 4 : 0, partitions: [partition] });
  const header = encodeHeader({ major_version: 2, manifest_size: manifest.length, metadata_signature_size: 0 });
  return Buffer.concat([header, manifest, blob]);
}
