import { createHash } from 'node:crypto';
import { Extent, InstallOperation, OpType, opTypeName } from '../../../src/payload/manifest';
import { layout, manifestOf } from './payloads';

/**
 * The rules of Android 14's python payload checker (update_engine scripts/update_payload/
 * checker.py), restated for an unsigned payload held in memory, so tests can hold vab's output to
 * them without python. Returns every rule broken, in words; an empty list means it passes.
 * Signature and partition-size checks are left out (the payloads under test are unsigned).
 */
export function androidCheckerProblems(bytes: Buffer): string[] {
  const manifest = manifestOf(bytes);
  const problems: string[] = [];
  const blockSize = manifest.block_size ?? 4096;
  const full = !manifest.partitions.some((p) => p.old_partition_info !== undefined);
  const minor = manifest.minor_version;
  // Minor versions it knows, and the payload type each one is for.
  if (minor === undefined) problems.push('minor version is not set');
  else if (full ? minor !== 0 : !(minor >= 2 && minor <= 7)) problems.push(`minor version ${minor} is not supported for a ${full ? 'full' : 'delta'} payload`);
  const dataStart = layout(bytes).dataStart;
  let expectedOffset = 0;
  for (const partition of manifest.partitions) {
    const newSize = partition.new_partition_info?.size ?? 0;
    const oldSize = partition.old_partition_info?.size ?? 0;
    const newBlocks = Math.ceil(newSize / blockSize);
    const written = new Uint16Array(newBlocks);
    partition.operations.forEach((op, index) => {
      const name = `${partition.partition_name} op ${index} (${opTypeName(op.type)})`;
      const fail = (what: string) => problems.push(`${name}: ${what}`);
      const src = countBlocks(op.src_extents);
      const dst = countBlocks(op.dst_extents);
      for (const e of op.dst_extents) for (let b = e.start_block; b < e.start_block + e.num_blocks && b < newBlocks; b++) written[b]++;
      if ([...op.src_extents, ...op.dst_extents].some((e) => e.num_blocks === 0)) fail('extent length is zero');
      // Extents must end within the partition's byte size: an image that is not a whole number
      // of blocks fails this at its last block (delta_generator refuses such images).
      for (const [extents, size, what] of [[op.src_extents, oldSize, 'src'], [op.dst_extents, newSize, 'dst']] as const) {
        for (const e of extents) if ((e.start_block + e.num_blocks) * blockSize > size) fail(`${what} extent [${e.start_block}, +${e.num_blocks}) exceeds the partition size ${size}`);
      }
      if (op.dst_extents.length === 0) fail('dst_extents is empty');
      if ((op.data_offset === undefined) !== (op.data_length === undefined)) fail('data_offset and data_length must come together');
      if (op.data_length !== undefined) {
        if (!op.data_sha256_hash) fail('unhashed operation not allowed');
        else {
          const blob = bytes.subarray(dataStart + op.data_offset!, dataStart + op.data_offset! + op.data_length);
          if (!createHash('sha256').update(blob).digest().equals(op.data_sha256_hash)) fail('data_sha256_hash does not match');
        }
        if (op.data_offset !== expectedOffset) fail(`data offset ${op.data_offset} is not ${expectedOffset}`);
        expectedOffset += op.data_length;
      }
      checkType(op, minor ?? 0, src, dst, blockSize, fail);
    });
    if (full && written.some((n) => n !== 1)) problems.push(`${partition.partition_name}: not all blocks written exactly once during full update`);
  }
  return problems;
}

function checkType(op: InstallOperation, minor: number, src: number, dst: number, blockSize: number, fail: (what: string) => void): void {
  const length = op.data_length;
  const diff = () => {
    if (length === undefined) fail('missing data');
    else if (length >= dst * blockSize) fail(`data_length ${length} must be smaller than the dst space ${dst * blockSize}`);
    if (op.type === OpType.SOURCE_BSDIFF && minor <= 3 ? op.src_length === undefined || op.dst_length === undefined : op.src_length !== undefined || op.dst_length !== undefined) {
      fail('src_length/dst_length present where not wanted, or missing where wanted');
    }
  };
  const source = () => {
    if (src === 0) fail('no src blocks in a source op');
    if (minor >= 3 && !op.src_sha256_hash) fail('source hash missing');
  };
  switch (op.type) {
    case OpType.REPLACE:
    case OpType.REPLACE_BZ:
    case OpType.REPLACE_XZ:
      if (op.src_extents.length > 0) fail('contains src_extents');
      if (length === undefined) return fail('missing data');
      if (op.type === OpType.REPLACE && (length > dst * blockSize || length <= (dst - 1) * blockSize)) fail(`data_length ${length} does not fill ${dst} dst blocks`);
      if (op.type !== OpType.REPLACE && length >= dst * blockSize) fail(`data_length ${length} must be less than the dst space ${dst * blockSize}`);
      return;
    case OpType.ZERO:
      if (minor < 4) break;
      if (op.src_extents.length > 0 || op.data_length || op.data_offset) fail('ZERO carries src_extents or data');
      return;
    case OpType.SOURCE_COPY:
      if (minor < 2) break;
      if (op.data_offset !== undefined) fail('contains data');
      if (src !== dst) fail(`total src blocks ${src} != total dst blocks ${dst}`);
      return source();
    case OpType.SOURCE_BSDIFF:
      if (minor < 2) break;
      diff();
      return source();
    case OpType.BROTLI_BSDIFF:
      if (minor < 4) break;
      diff();
      return source();
    case OpType.PUFFDIFF:
      if (minor < 5) break;
      diff();
      return source();
  }
  fail(`operation type ${op.type} not allowed in minor version ${minor}`);
}

function countBlocks(extents: readonly Extent[]): number {
  return extents.reduce((n, e) => n + e.num_blocks, 0);
}
