import { VabError } from '../util/errors';
import type { Compression } from './codecs';
import { DeltaArchiveManifest, OpType, opTypeName } from './manifest';

export type PayloadCompression = Exclude<Compression, 'brotli'>;

/**
 * Which operations a payload's minor version allows, as update_engine's generator decides it
 * (PayloadVersion::OperationAllowed in payload_generation_config.cc) and its python checker
 * enforces. A device does not check ops against the minor version, only the minor version
 * against its own range; the generator and the checker are what keep old devices safe.
 */

export const FULL_MINOR_VERSION = 0;
/** kSourceMinorPayloadVersion: the oldest delta minor version update_engine still accepts. */
export const MIN_DELTA_MINOR_VERSION = 2;
/** Android 17 adds REPLACE_ZSTD with minor version 10; vab reads up to that. */
export const MAX_MINOR_VERSION = 10;
/** kMaxSupportedMinorPayloadVersion of Android 14 and 15 (LZ4DIFF): what a generated delta targets by default. */
export const DEFAULT_DELTA_MINOR_VERSION = 9;

/**
 * The first delta minor version that allows each op. REPLACE and REPLACE_BZ were in the
 * original format; REPLACE_XZ came with minor version 3 for the old major version 1 but is
 * allowed at every minor version with major version 2, the only major version left. MOVE and
 * BSDIFF belonged to the in-place minor version 1, which no device accepts any more.
 */
const FIRST_MINOR: Partial<Record<OpType, number>> = {
  [OpType.REPLACE]: MIN_DELTA_MINOR_VERSION,
  [OpType.REPLACE_BZ]: MIN_DELTA_MINOR_VERSION,
  [OpType.REPLACE_XZ]: MIN_DELTA_MINOR_VERSION,
  [OpType.SOURCE_COPY]: 2,
  [OpType.SOURCE_BSDIFF]: 2,
  [OpType.ZERO]: 4,
  [OpType.DISCARD]: 4,
  [OpType.BROTLI_BSDIFF]: 4,
  [OpType.PUFFDIFF]: 5,
  [OpType.ZUCCHINI]: 8,
  [OpType.LZ4DIFF_BSDIFF]: 9,
  [OpType.LZ4DIFF_PUFFDIFF]: 9,
  [OpType.REPLACE_ZSTD]: 10,
};

/** Full payloads (minor 0): update_engine keeps ZERO and DISCARD out of them because older clients applied those wrongly. */
const FULL_OPS: ReadonlySet<OpType> = new Set([OpType.REPLACE, OpType.REPLACE_BZ, OpType.REPLACE_XZ]);

export function opAllowed(type: OpType, minor: number): boolean {
  if (minor === FULL_MINOR_VERSION) return FULL_OPS.has(type);
  // A version nobody defined allows nothing: its rules are unknown.
  if (minor < MIN_DELTA_MINOR_VERSION || minor > MAX_MINOR_VERSION) return false;
  const first = FIRST_MINOR[type];
  return first !== undefined && minor >= first;
}

/** The op types a minor version allows, in type order (for messages). */
export function allowedOps(minor: number): OpType[] {
  return (Object.values(OpType).filter((v) => typeof v === 'number') as OpType[]).filter((type) => opAllowed(type, minor));
}

export interface DisallowedOp {
  partition: string;
  index: number;
  type: string;
}

/** Every op the payload's own minor version does not allow. */
export function disallowedOps(manifest: DeltaArchiveManifest): DisallowedOp[] {
  const minor = manifest.minor_version ?? FULL_MINOR_VERSION;
  const found: DisallowedOp[] = [];
  for (const partition of manifest.partitions) {
    partition.operations.forEach((op, index) => {
      if (!opAllowed(op.type, minor)) found.push({ partition: partition.partition_name, index, type: opTypeName(op.type) });
    });
  }
  return found;
}

/** What a minor version means, for `inspect`. */
export function describeMinorVersion(minor: number): string {
  const ops = allowedOps(minor);
  if (ops.length === 0) return `minor version ${minor}: not a version update_engine accepts (0 for full payloads, ${MIN_DELTA_MINOR_VERSION}..${MAX_MINOR_VERSION} for deltas)`;
  const kind = minor === FULL_MINOR_VERSION ? 'full payload' : 'delta';
  const newer = minor > DEFAULT_DELTA_MINOR_VERSION ? `; newer than Android 14 and 15 accept (${DEFAULT_DELTA_MINOR_VERSION})` : '';
  return `minor version ${minor} (${kind}${newer}) allows ${ops.map(opTypeName).join(', ')}`;
}

const CODEC_OP: Record<PayloadCompression, OpType> = { zstd: OpType.REPLACE_ZSTD, xz: OpType.REPLACE_XZ, bz2: OpType.REPLACE_BZ };

export interface GeneratorVersionRequest {
  incremental: boolean;
  minorVersion?: number;
  compression?: PayloadCompression;
  /** Let `compression` pick a codec the minor version does not allow (see GenerateOptions). */
  codecBeyondMinorVersion?: boolean;
}

export interface GeneratorVersion {
  minor: number;
  compression: PayloadCompression;
  /** Whether the generator may write ZERO ops (otherwise zeros are compressed replace data). */
  zero: boolean;
  /** Whether it may write BROTLI_BSDIFF (otherwise changed blocks are replaced). */
  brotliBsdiff: boolean;
}

/**
 * The minor version and codec a generated payload uses. Full payloads are minor 0 (the only
 * value update_engine accepts for them) with REPLACE_XZ by default; deltas default to minor 9 so
 * that they install on Android 14 and 15 as they are. The codec defaults to the best one the
 * minor version allows; a codec it does not allow is an error naming both.
 */
export function chooseGeneratorVersion(request: GeneratorVersionRequest): GeneratorVersion {
  const { incremental } = request;
  const minor = request.minorVersion ?? (incremental ? DEFAULT_DELTA_MINOR_VERSION : FULL_MINOR_VERSION);
  if (!Number.isInteger(minor) || (minor !== FULL_MINOR_VERSION && (minor < MIN_DELTA_MINOR_VERSION || minor > MAX_MINOR_VERSION))) {
    throw new VabError('EINVAL_INPUT', `minor version ${minor} cannot be generated: use 0 for a full payload or ${MIN_DELTA_MINOR_VERSION}..${MAX_MINOR_VERSION} for an incremental one`);
  }
  if (incremental && minor === FULL_MINOR_VERSION) {
    throw new VabError('EINVAL_INPUT', 'minor version 0 is a full payload, but old images were given with --source: leave out --source, or pick a delta minor version');
  }
  if (!incremental && minor !== FULL_MINOR_VERSION) {
    throw new VabError('EINVAL_INPUT', `minor version ${minor} is for incremental payloads, and no partition has an old image (--source): a full payload is minor version 0`);
  }
  const compression = request.compression ?? (opAllowed(OpType.REPLACE_ZSTD, minor) ? 'zstd' : 'xz');
  const replace = CODEC_OP[compression];
  if (!opAllowed(replace, minor) && !request.codecBeyondMinorVersion) {
    const first = FIRST_MINOR[replace];
    const needs = first !== undefined ? `, which needs minor version ${first}` : '';
    throw new VabError('EINVAL_INPUT', `--compression ${compression} writes ${opTypeName(replace)}${needs}; minor version ${minor} ${minor === FULL_MINOR_VERSION ? '(a full payload) ' : ''}does not allow it (it allows ${allowedOps(minor).map(opTypeName).join(', ')})`);
  }
  return { minor, compression, zero: opAllowed(OpType.ZERO, minor), brotliBsdiff: opAllowed(OpType.BROTLI_BSDIFF, minor) };
}
