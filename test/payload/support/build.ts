import { createHash } from 'node:crypto';
import { encodeHeader } from '../../../src/payload/header';
import { DEFAULT_BLOCK_SIZE, DeltaArchiveManifest, Extent, InstallOperation, OpType, PartitionUpdate, encodeManifest } from '../../../src/payload/manifest';

/**
 * Builds payloads with whatever manifest a test wants, including ones vab's generator would never
 * write (bad names, duplicates, ops a minor version does not allow, odd extents). Blob offsets,
 * lengths and hashes are filled in from the blobs given, unless the op spells them out itself, so
 * a test breaks exactly the one thing it is about.
 */

export interface OpSpec extends Partial<Omit<InstallOperation, 'type'>> {
  type: OpType;
  /** The op's blob; appended to the data area in op order. */
  data?: Buffer;
}

export interface PartitionSpec extends Partial<Omit<PartitionUpdate, 'operations'>> {
  partition_name: string;
  /** The new image: sets new_partition_info, and without `ops` becomes one REPLACE op. */
  image?: Buffer;
  ops?: OpSpec[];
}

export interface PayloadSpec extends Partial<Omit<DeltaArchiveManifest, 'partitions'>> {
  partitions: PartitionSpec[];
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest();

export function blocksOf(bytes: number, blockSize = DEFAULT_BLOCK_SIZE): number {
  return Math.ceil(bytes / blockSize);
}

export function extent(start_block: number, num_blocks: number): Extent {
  return { start_block, num_blocks };
}

/** An unsigned payload.bin: header, manifest, blobs. */
export function buildPayload(spec: PayloadSpec): Buffer {
  const { partitions: partitionSpecs, ...rest } = spec;
  const blockSize = rest.block_size ?? DEFAULT_BLOCK_SIZE;
  const blobs: Buffer[] = [];
  let offset = 0;
  const partitions = partitionSpecs.map((p): PartitionUpdate => {
    const { image, ops, ...fields } = p;
    const opSpecs = ops ?? (image ? [{ type: OpType.REPLACE, data: padToBlocks(image, blockSize), dst_extents: [extent(0, blocksOf(image.length, blockSize))] }] : []);
    const operations = opSpecs.map(({ data, ...op }): InstallOperation => {
      const out: InstallOperation = { src_extents: [], dst_extents: [], ...op };
      if (data && data.length > 0) {
        out.data_offset ??= offset;
        out.data_length ??= data.length;
        out.data_sha256_hash ??= sha256(data);
        blobs.push(data);
        offset += data.length;
      }
      return out;
    });
    const update: PartitionUpdate = { merge_operations: [], ...fields, operations };
    if (image && !update.new_partition_info) update.new_partition_info = { size: image.length, hash: sha256(image) };
    return update;
  });
  const manifest: DeltaArchiveManifest = { block_size: blockSize, minor_version: 0, ...rest, partitions };
  const encoded = encodeManifest(manifest);
  const header = encodeHeader({ major_version: 2, manifest_size: encoded.length, metadata_signature_size: 0 });
  return Buffer.concat([header, encoded, ...blobs]);
}

/** A full payload holding one small valid partition per name: the usual start for a bad-name case. */
export function payloadNamed(names: readonly string[], imageFor: (index: number) => Buffer = (i) => Buffer.alloc(4096, i + 1)): Buffer {
  return buildPayload({ partitions: names.map((partition_name, i) => ({ partition_name, image: imageFor(i) })) });
}

function padToBlocks(data: Buffer, blockSize: number): Buffer {
  const size = blocksOf(data.length, blockSize) * blockSize;
  return size === data.length ? data : Buffer.concat([data, Buffer.alloc(size - data.length)]);
}
