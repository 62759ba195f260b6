import type { KeyObject } from 'node:crypto';
import { VabError } from '../util/errors';
import { blockSizeOf, isDelta, opTypeName } from './manifest';
import { DisallowedOp, describeMinorVersion, disallowedOps } from './minor-version';
import { PayloadFile } from './payload-file';
import { SignatureState, checkSignatures } from './verify';

export interface PartitionSummary {
  name: string;
  old_size?: number;
  old_hash?: string;
  new_size?: number;
  new_hash?: string;
  operations: number;
  op_counts: Record<string, number>;
  merge_operations: number;
  estimate_cow_size?: number;
  /** Present when the partition runs a post-install program. */
  postinstall?: { path: string; filesystem_type?: string; optional: boolean };
}

export interface SignatureSummary {
  /** Number of signatures in the blob (0 when the blob is absent). */
  count: number;
  size: number;
  /** Only when a key was given. */
  verified?: SignatureState;
}

export interface PayloadSummary {
  file: string;
  file_size: number;
  major_version: number;
  minor_version: number;
  /** What the minor version allows, in words. */
  minor_version_allows: string;
  /** Ops the minor version does not allow: Android's generator never writes them, its checker rejects them. */
  ops_not_allowed: DisallowedOp[];
  kind: 'full' | 'incremental';
  partial_update: boolean;
  block_size: number;
  manifest_size: number;
  metadata_signature_size: number;
  data_offset: number;
  max_timestamp?: number;
  security_patch_level?: string;
  vabc: {
    snapshot_enabled: boolean;
    vabc_enabled: boolean;
    vabc_compression_param?: string;
    cow_version?: number;
    compression_factor?: number;
  };
  partitions: PartitionSummary[];
  signatures: { metadata: SignatureSummary; payload: SignatureSummary };
}

/** Everything `vab payload inspect` shows; with a key, whether each signature verifies. */
export async function inspectPayload(file: string, publicKey?: KeyObject): Promise<PayloadSummary> {
  const payload = await PayloadFile.open(file);
  try {
    const { manifest, header } = payload;
    const report = publicKey ? await checkSignatures(payload, publicKey) : undefined;
    const dpm = manifest.dynamic_partition_metadata;
    const signatureSummary = (which: 'metadata' | 'payload'): SignatureSummary => ({
      count: payload.decodeSignatureBlob(which)?.signatures.length ?? 0,
      size: (which === 'metadata' ? payload.metadataSignature : payload.payloadSignature)?.length ?? 0,
      verified: report?.[which],
    });
    return {
      file,
      file_size: payload.size,
      major_version: header.major_version,
      minor_version: manifest.minor_version ?? 0,
      minor_version_allows: describeMinorVersion(manifest.minor_version ?? 0),
      ops_not_allowed: disallowedOps(manifest),
      kind: isDelta(manifest) ? 'incremental' : 'full',
      partial_update: manifest.partial_update ?? false,
      block_size: blockSizeOf(manifest),
      manifest_size: header.manifest_size,
      metadata_signature_size: header.metadata_signature_size,
      data_offset: payload.dataOffset,
      max_timestamp: manifest.max_timestamp,
      security_patch_level: manifest.security_patch_level,
      vabc: {
        snapshot_enabled: dpm?.snapshot_enabled ?? false,
        vabc_enabled: dpm?.vabc_enabled ?? false,
        vabc_compression_param: dpm?.vabc_compression_param,
        cow_version: dpm?.cow_version,
        compression_factor: dpm?.compression_factor,
      },
      partitions: manifest.partitions.map((p) => {
        const op_counts: Record<string, number> = {};
        for (const op of p.operations) op_counts[opTypeName(op.type)] = (op_counts[opTypeName(op.type)] ?? 0) + 1;
        return {
          name: p.partition_name,
          old_size: p.old_partition_info?.size,
          old_hash: p.old_partition_info?.hash?.toString('hex'),
          new_size: p.new_partition_info?.size,
          new_hash: p.new_partition_info?.hash?.toString('hex'),
          operations: p.operations.length,
          op_counts,
          merge_operations: p.merge_operations.length,
          estimate_cow_size: p.estimate_cow_size,
          postinstall: p.run_postinstall ? { path: p.postinstall_path || 'postinst', filesystem_type: p.filesystem_type || undefined, optional: p.postinstall_optional === true } : undefined,
        };
      }),
      signatures: { metadata: signatureSummary('metadata'), payload: signatureSummary('payload') },
    };
  } finally {
    await payload.close();
  }
}

/** The human-readable form of a summary, one fact per line. */
export function formatSummary(s: PayloadSummary): string {
  const lines = [
    `payload ${s.file}: ${s.file_size} bytes`,
    `  version ${s.major_version}.${s.minor_version} (${s.kind}${s.partial_update ? ', partial' : ''}), block size ${s.block_size}`,
    `  manifest ${s.manifest_size} bytes, metadata signature ${s.metadata_signature_size} bytes, data at ${s.data_offset}`,
    `  ${s.minor_version_allows}`,
  ];
  if (s.ops_not_allowed.length > 0) lines.push(`  NOT ALLOWED by minor version ${s.minor_version}: ${describeDisallowed(s.ops_not_allowed)}`);
  if (s.max_timestamp !== undefined) lines.push(`  max timestamp ${s.max_timestamp}`);
  if (s.security_patch_level) lines.push(`  security patch level ${s.security_patch_level}`);
  const v = s.vabc;
  lines.push(`  VABC: snapshots ${v.snapshot_enabled ? 'on' : 'off'}, vabc ${v.vabc_enabled ? 'on' : 'off'}` + (v.vabc_compression_param !== undefined ? `, compression ${v.vabc_compression_param || 'none'}` : '') + (v.cow_version !== undefined ? `, cow v${v.cow_version}` : '') + (v.compression_factor !== undefined ? `, compression factor ${v.compression_factor}` : ''));
  for (const which of ['metadata', 'payload'] as const) {
    const sig = s.signatures[which];
    const state = sig.verified === undefined ? '' : sig.verified === 'valid' ? ', verifies' : sig.verified === 'invalid' ? ', DOES NOT VERIFY' : '';
    lines.push(`  ${which} signature: ${sig.count === 0 ? 'none' : `${sig.count} (${sig.size} bytes)${state}`}`);
  }
  for (const p of s.partitions) {
    lines.push(`  partition ${p.name}`);
    if (p.old_size !== undefined) lines.push(`    old ${p.old_size} bytes sha256 ${p.old_hash ?? '-'}`);
    lines.push(`    new ${p.new_size ?? '?'} bytes sha256 ${p.new_hash ?? '-'}`);
    const flagged = new Set(s.ops_not_allowed.filter((op) => op.partition === p.name).map((op) => op.type));
    const counts = Object.entries(p.op_counts).map(([type, n]) => `${type} ${n}${flagged.has(type) ? ' (not allowed)' : ''}`).join(', ');
    lines.push(`    ${p.operations} operations${counts ? `: ${counts}` : ''}; ${p.merge_operations} merge operations`);
    const post = p.postinstall;
    if (post) lines.push(`    post-install: ${post.path}${post.filesystem_type ? ` (${post.filesystem_type})` : ''}${post.optional ? ', optional' : ''}`);
  }
  return lines.join('\n');
}

/** At most a few ops by name, then a count: a bad payload may hold millions. */
function describeDisallowed(ops: readonly DisallowedOp[]): string {
  const shown = ops.slice(0, 5).map((op) => `partition ${op.partition} op ${op.index} (${op.type})`);
  return shown.join(', ') + (ops.length > shown.length ? ` and ${ops.length - shown.length} more` : '') + ` (${ops.length} in all)`;
}

/** `inspect --strict`: a payload with ops its minor version does not allow is refused. */
export function requireAllowedOps(s: PayloadSummary): void {
  if (s.ops_not_allowed.length === 0) return;
  throw new VabError('ECORRUPT', `ops not allowed by minor version ${s.minor_version}: ${describeDisallowed(s.ops_not_allowed)}; Android's payload checker rejects this payload`, { file: s.file });
}
