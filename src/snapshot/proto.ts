import { promises as fs } from 'node:fs';
import path from 'node:path';
import protobuf from 'protobufjs';
import { VabError } from '../util/errors';

/**
 * libsnapshot's persisted messages (proto/snapshot.proto, package android.snapshot). Field names
 * keep Android's snake_case so they can be grepped against snapshot.cpp. The schema is read
 * asynchronously: the snapuserd daemon reads status files too, and it serves a mount.
 */

export enum SnapshotState {
  NONE = 0,
  CREATED = 1,
  MERGING = 2,
  MERGE_COMPLETED = 3,
}

export enum MergePhase {
  NO_MERGE = 0,
  FIRST_PHASE = 1,
  SECOND_PHASE = 2,
}

export enum UpdateState {
  None = 0,
  Initiated = 1,
  Unverified = 2,
  Merging = 3,
  MergeNeedsReboot = 4,
  MergeCompleted = 5,
  MergeFailed = 6,
  Cancelled = 7,
}

export enum MergeFailureCode {
  Ok = 0,
  ReadStatus = 1,
  GetTableInfo = 2,
  UnknownTable = 3,
  GetTableParams = 4,
  ActivateNewTable = 5,
  AcquireLock = 6,
  ListSnapshots = 7,
  WriteStatus = 8,
  UnknownTargetType = 9,
  QuerySnapshotStatus = 10,
  ExpectedMergeTarget = 11,
  UnmergedSectorsAfterCompletion = 12,
  UnexpectedMergeState = 13,
  GetCowPathConsistencyCheck = 14,
  OpenCowConsistencyCheck = 15,
  ParseCowConsistencyCheck = 16,
  OpenCowDirectConsistencyCheck = 17,
  MemAlignConsistencyCheck = 18,
  DirectReadConsistencyCheck = 19,
  WrongMergeCountConsistencyCheck = 20,
}

export interface SnapshotStatus {
  name: string;
  state: SnapshotState;
  device_size: number;
  snapshot_size: number;
  cow_partition_size: number;
  cow_file_size: number;
  sectors_allocated: number;
  metadata_sectors: number;
  using_snapuserd: boolean;
  old_partition_size: number;
  compression_algorithm: string;
  estimated_cow_size: number;
  enable_threading: boolean;
  batched_writes: boolean;
  estimated_ops_buffer_size: number;
  compression_factor: number;
  read_ahead_size: number;
  verify_block_size: number;
  num_verify_threads: number;
}

export interface SnapshotUpdateStatus {
  state: UpdateState;
  sectors_allocated: number;
  total_sectors: number;
  metadata_sectors: number;
  using_snapuserd: boolean;
  merge_phase: MergePhase;
  merge_failure_code: MergeFailureCode;
  source_build_fingerprint: string;
  userspace_snapshots: boolean;
  io_uring_enabled: boolean;
  legacy_snapuserd: boolean;
  o_direct: boolean;
  cow_op_merge_size: number;
  num_worker_threads: number;
}

/** Every field at its proto3 default: what an absent or empty file decodes to. */
export function emptySnapshotStatus(name: string): SnapshotStatus {
  return {
    name, state: SnapshotState.NONE, device_size: 0, snapshot_size: 0, cow_partition_size: 0, cow_file_size: 0,
    sectors_allocated: 0, metadata_sectors: 0, using_snapuserd: false, old_partition_size: 0, compression_algorithm: '',
    estimated_cow_size: 0, enable_threading: false, batched_writes: false, estimated_ops_buffer_size: 0,
    compression_factor: 0, read_ahead_size: 0, verify_block_size: 0, num_verify_threads: 0,
  };
}

export function emptyUpdateStatus(state: UpdateState = UpdateState.None): SnapshotUpdateStatus {
  return {
    state, sectors_allocated: 0, total_sectors: 0, metadata_sectors: 0, using_snapuserd: false,
    merge_phase: MergePhase.NO_MERGE, merge_failure_code: MergeFailureCode.Ok, source_build_fingerprint: '',
    userspace_snapshots: false, io_uring_enabled: false, legacy_snapuserd: false, o_direct: false,
    cow_op_merge_size: 0, num_worker_threads: 0,
  };
}

interface Schema {
  status: protobuf.Type;
  update: protobuf.Type;
}

let schema: Promise<Schema> | undefined;

/**
 * The same module runs from src/ (ts-jest) and dist/src/ (the CLI), so the .proto is found by
 * looking upwards; VAB_PROTO_DIR names it for code compiled elsewhere (test children in /tmp).
 */
async function findProto(): Promise<string> {
  const override = process.env.VAB_PROTO_DIR;
  if (override) return path.join(override, 'snapshot.proto');
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'proto', 'snapshot.proto');
    if (await fs.access(candidate).then(() => true, () => false)) return candidate;
    if (path.dirname(dir) === dir) throw new VabError('ENOTFOUND', `proto/snapshot.proto not found above ${__dirname}`);
  }
}

function loadSchema(): Promise<Schema> {
  schema ??= (async () => {
    const file = await findProto();
    const { root } = protobuf.parse(await fs.readFile(file, 'utf8'), { keepCase: true });
    return { status: root.lookupType('android.snapshot.SnapshotStatus'), update: root.lookupType('android.snapshot.SnapshotUpdateStatus') };
  })();
  return schema;
}

function decode(type: protobuf.Type, bytes: Uint8Array, file: string): Record<string, unknown> {
  let message: protobuf.Message;
  try {
    message = type.decode(bytes);
  } catch (err) {
    throw new VabError('ECORRUPT', `not a ${type.name}: ${(err as Error).message}`, { file, cause: err });
  }
  const plain = type.toObject(message, { longs: BigInt, enums: Number, defaults: true }) as Record<string, unknown>;
  for (const [key, value] of Object.entries(plain)) {
    if (typeof value !== 'bigint') continue;
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new VabError('ECORRUPT', `${type.name}.${key} = ${value} is beyond 2^53`, { file });
    plain[key] = Number(value);
  }
  return plain;
}

function checkEnum(value: unknown, values: object, what: string, file: string): void {
  if (typeof value !== 'number' || !(value in values)) throw new VabError('ECORRUPT', `unknown ${what} ${String(value)}`, { file });
}

export async function decodeSnapshotStatus(bytes: Uint8Array, file: string): Promise<SnapshotStatus> {
  const status = decode((await loadSchema()).status, bytes, file) as unknown as SnapshotStatus;
  checkEnum(status.state, SnapshotState, 'SnapshotState', file);
  return status;
}

export async function decodeUpdateStatus(bytes: Uint8Array, file: string): Promise<SnapshotUpdateStatus> {
  const status = decode((await loadSchema()).update, bytes, file) as unknown as SnapshotUpdateStatus;
  checkEnum(status.state, UpdateState, 'UpdateState', file);
  checkEnum(status.merge_phase, MergePhase, 'MergePhase', file);
  checkEnum(status.merge_failure_code, MergeFailureCode, 'MergeFailureCode', file);
  return status;
}

function encode(type: protobuf.Type, value: object): Buffer {
  const problem = type.verify(value);
  if (problem) throw new VabError('EINVAL_INPUT', `cannot encode ${type.name}: ${problem}`);
  return Buffer.from(type.encode(type.fromObject(value)).finish());
}

export async function encodeSnapshotStatus(status: SnapshotStatus): Promise<Buffer> {
  return encode((await loadSchema()).status, status);
}

export async function encodeUpdateStatus(status: SnapshotUpdateStatus): Promise<Buffer> {
  return encode((await loadSchema()).update, status);
}

const UPDATE_STATE_TEXT: Readonly<Record<UpdateState, string>> = {
  [UpdateState.None]: 'none',
  [UpdateState.Initiated]: 'initiated',
  [UpdateState.Unverified]: 'unverified',
  [UpdateState.Merging]: 'merging',
  [UpdateState.MergeNeedsReboot]: 'merge-needs-reboot',
  [UpdateState.MergeCompleted]: 'merge-completed',
  [UpdateState.MergeFailed]: 'merge-failed',
  [UpdateState.Cancelled]: 'cancelled',
};

/** The text snapshot.cpp's operator<< prints for an UpdateState (and its legacy state files held). */
export function updateStateText(state: UpdateState): string {
  return UPDATE_STATE_TEXT[state];
}

/** The legacy text form of a state file (before it was a protobuf), or undefined. */
export function updateStateFromText(text: string): UpdateState | undefined {
  for (const [value, name] of Object.entries(UPDATE_STATE_TEXT)) if (name === text) return Number(value) as UpdateState;
  return undefined;
}

export function snapshotStateText(state: SnapshotState): string {
  return SnapshotState[state];
}

export function mergeFailureText(code: MergeFailureCode): string {
  return MergeFailureCode[code];
}
