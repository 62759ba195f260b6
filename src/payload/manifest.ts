import fs from 'node:fs';
import path from 'node:path';
import protobuf from 'protobufjs';
import { VabError } from '../util/errors';

/**
 * The payload's protobuf messages, loaded from proto/update_metadata.proto with protobufjs.
 * Field names keep Android's snake_case so they can be grepped against update_engine. 64-bit
 * integers become JS numbers; a value beyond 2^53 is refused, never rounded (the only such value
 * in the format is the historic sparse-hole marker, which modern payloads do not use).
 */

export enum OpType {
  REPLACE = 0,
  REPLACE_BZ = 1,
  MOVE = 2,
  BSDIFF = 3,
  SOURCE_COPY = 4,
  SOURCE_BSDIFF = 5,
  ZERO = 6,
  DISCARD = 7,
  REPLACE_XZ = 8,
  PUFFDIFF = 9,
  BROTLI_BSDIFF = 10,
  ZUCCHINI = 11,
  LZ4DIFF_BSDIFF = 12,
  LZ4DIFF_PUFFDIFF = 13,
  REPLACE_ZSTD = 14,
}

export enum CowMergeType {
  COW_COPY = 0,
  COW_XOR = 1,
  COW_REPLACE = 2,
}

export function opTypeName(type: number): string {
  return OpType[type] ?? `TYPE_${type}`;
}

export interface Extent {
  start_block: number;
  num_blocks: number;
}

export interface Signature {
  version?: number;
  data: Buffer;
  unpadded_signature_size?: number;
}

export interface Signatures {
  signatures: Signature[];
}

export interface PartitionInfo {
  size?: number;
  hash?: Buffer;
}

export interface InstallOperation {
  type: OpType;
  data_offset?: number;
  data_length?: number;
  src_extents: Extent[];
  src_length?: number;
  dst_extents: Extent[];
  dst_length?: number;
  data_sha256_hash?: Buffer;
  src_sha256_hash?: Buffer;
}

export interface CowMergeOperation {
  type?: CowMergeType;
  src_extent?: Extent;
  dst_extent?: Extent;
  src_offset?: number;
}

export interface PartitionUpdate {
  partition_name: string;
  run_postinstall?: boolean;
  postinstall_path?: string;
  filesystem_type?: string;
  new_partition_signature?: Signature[];
  old_partition_info?: PartitionInfo;
  new_partition_info?: PartitionInfo;
  operations: InstallOperation[];
  postinstall_optional?: boolean;
  version?: string;
  merge_operations: CowMergeOperation[];
  estimate_cow_size?: number;
  estimate_op_count_max?: number;
}

export interface DynamicPartitionGroup {
  name: string;
  size?: number;
  partition_names: string[];
}

export interface DynamicPartitionMetadata {
  groups: DynamicPartitionGroup[];
  snapshot_enabled?: boolean;
  vabc_enabled?: boolean;
  vabc_compression_param?: string;
  cow_version?: number;
  vabc_feature_set?: { threaded?: boolean; batch_writes?: boolean };
  compression_factor?: number;
  disable_ublk?: boolean;
}

export interface DeltaArchiveManifest {
  block_size?: number;
  signatures_offset?: number;
  signatures_size?: number;
  minor_version?: number;
  partitions: PartitionUpdate[];
  max_timestamp?: number;
  dynamic_partition_metadata?: DynamicPartitionMetadata;
  partial_update?: boolean;
  apex_info?: Array<{ package_name?: string; version?: number; is_compressed?: boolean; decompressed_size?: number }>;
  security_patch_level?: string;
}

export const DEFAULT_BLOCK_SIZE = 4096;

let root: protobuf.Root | undefined;

function protoRoot(): protobuf.Root {
  if (root) return root;
  // The same module runs from src/ (ts-jest) and from dist/src/ (built CLI): look upwards.
  let dir = __dirname;
  for (;;) {
    const candidate = path.join(dir, 'proto', 'update_metadata.proto');
    if (fs.existsSync(candidate)) {
      root = new protobuf.Root().loadSync(candidate, { keepCase: true });
      return root;
    }
    const parent = path.dirname(dir);
    if (parent === dir) throw new VabError('ENOTFOUND', `proto/update_metadata.proto not found above ${__dirname}`);
    dir = parent;
  }
}

function messageType(name: string): protobuf.Type {
  return protoRoot().lookupType(`chromeos_update_engine.${name}`);
}

/** Turns protobufjs's plain object into ours: bigints become checked numbers. */
function normalize(value: unknown, field: string): unknown {
  if (typeof value === 'bigint') {
    if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) {
      throw new VabError('EUNSUPPORTED', `manifest field ${field} = ${value} is beyond 2^53`);
    }
    return Number(value);
  }
  if (Array.isArray(value)) return value.map((item, i) => normalize(item, `${field}[${i}]`));
  if (value !== null && typeof value === 'object' && !Buffer.isBuffer(value) && !(value instanceof Uint8Array)) {
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) out[key] = normalize(item, field ? `${field}.${key}` : key);
    return out;
  }
  if (value instanceof Uint8Array && !Buffer.isBuffer(value)) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  return value;
}

function decodeMessage<T>(name: string, bytes: Uint8Array, what: string): T {
  const type = messageType(name);
  let message: protobuf.Message;
  try {
    message = type.decode(bytes);
  } catch (err) {
    throw new VabError('ECORRUPT', `cannot parse ${what}: ${(err as Error).message}`, { cause: err });
  }
  const plain = type.toObject(message, { longs: BigInt, enums: Number, arrays: true });
  return normalize(plain, '') as T;
}

function encodeMessage(name: string, value: object): Buffer {
  const type = messageType(name);
  const problem = type.verify(value);
  if (problem) throw new VabError('EINVAL_INPUT', `cannot encode ${name}: ${problem}`);
  return Buffer.from(type.encode(type.fromObject(value)).finish());
}

export function decodeManifest(bytes: Uint8Array): DeltaArchiveManifest {
  const manifest = decodeMessage<DeltaArchiveManifest>('DeltaArchiveManifest', bytes, 'payload manifest');
  // proto2 leaves a field that holds its default off the wire; extents are used as plain numbers.
  for (const partition of manifest.partitions) {
    for (const op of partition.operations) {
      op.src_extents = op.src_extents.map(withExtentDefaults);
      op.dst_extents = op.dst_extents.map(withExtentDefaults);
    }
  }
  return manifest;
}

function withExtentDefaults(extent: Partial<Extent>): Extent {
  return { start_block: extent.start_block ?? 0, num_blocks: extent.num_blocks ?? 0 };
}

export function encodeManifest(manifest: DeltaArchiveManifest): Buffer {
  return encodeMessage('DeltaArchiveManifest', manifest);
}

export function decodeSignatures(bytes: Uint8Array, what = 'signature blob'): Signatures {
  return decodeMessage<Signatures>('Signatures', bytes, what);
}

export function encodeSignatures(signatures: Signatures): Buffer {
  return encodeMessage('Signatures', signatures);
}

export function encodePartitionUpdate(update: PartitionUpdate): Buffer {
  return encodeMessage('PartitionUpdate', update);
}

export function blockSizeOf(manifest: DeltaArchiveManifest): number {
  return manifest.block_size ?? DEFAULT_BLOCK_SIZE;
}

/** A payload is a delta when any partition names an old image, or when it is partial. */
export function isDelta(manifest: DeltaArchiveManifest): boolean {
  return manifest.partial_update === true || manifest.partitions.some((p) => p.old_partition_info !== undefined);
}
