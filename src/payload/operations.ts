import { createHash } from 'node:crypto';
import { VabError, VabErrorCode } from '../util/errors';
import { bspatch } from './bsdiff-format';
import { Compression } from './codecs';
import { DecodePool, dataHashMismatch, verifyAndDecompressHere } from './codec-pool';
import { Extent, InstallOperation, OpType, opTypeName } from './manifest';
import { STREAM_MIN_BYTES, StreamedCodec, bspatchToExtents, extentByteReader, streamDecodeToExtents } from './stream-decode';
import { CopyRun, PartitionWriter, SourceReader, pairRuns, readExtents, totalBlocks, writeExtents } from './partition-io';

/** Everything an operation needs; `blob` is its data, already read from the payload. */
export interface OperationContext {
  partition: string;
  /** Index of the op within its partition. */
  index: number;
  op: InstallOperation;
  blob?: Buffer;
  writer: PartitionWriter;
  source?: SourceReader;
  /** For error messages: the payload file and the absolute offset of the op's blob. */
  file?: string;
  blobOffset?: number;
  /** Decodes large blobs off the main thread; without one they decode in place. */
  decoders?: DecodePool;
}

/** The codec of each compressed REPLACE op type. */
export const REPLACE_CODEC: Partial<Record<OpType, Compression>> = {
  [OpType.REPLACE_BZ]: 'bz2',
  [OpType.REPLACE_XZ]: 'xz',
  [OpType.REPLACE_ZSTD]: 'zstd',
};

export const SOURCE_OPS: ReadonlySet<OpType> = new Set([OpType.SOURCE_COPY, OpType.SOURCE_BSDIFF, OpType.BROTLI_BSDIFF]);
export const SUPPORTED_OPS: ReadonlySet<OpType> = new Set([
  OpType.REPLACE,
  OpType.REPLACE_BZ,
  OpType.REPLACE_XZ,
  OpType.REPLACE_ZSTD,
  OpType.ZERO,
  OpType.DISCARD,
  ...SOURCE_OPS,
]);

export function describeOp(partition: string, index: number, op: InstallOperation): string {
  return `partition ${partition}, op ${index} (${opTypeName(op.type)})`;
}

export function opError(ctx: Pick<OperationContext, 'partition' | 'index' | 'op' | 'file' | 'blobOffset'>, code: VabErrorCode, what: string, cause?: unknown): VabError {
  return new VabError(code, `${describeOp(ctx.partition, ctx.index, ctx.op)}: ${what}`, { file: ctx.file, offset: ctx.blobOffset, cause });
}

export function unsupportedOpError(partition: string, index: number, op: InstallOperation, file?: string): VabError {
  return new VabError('EUNSUPPORTED', `unsupported operation ${opTypeName(op.type)} in partition ${partition}, op ${index}`, { file });
}

/**
 * What an operation does to the partition, computed but not yet written. Preparing is the
 * expensive part (hash checks, decompression, patching, source reads) and may run for several
 * ops at once; committing hands the result to the writer, strictly in op order. A large
 * REPLACE_XZ/ZSTD/BZ op ('stream') is only hash-checked when prepared: it decodes as it is committed,
 * so its output never sits whole in memory.
 */
export type PreparedOperation =
  | { kind: 'write'; extents: Extent[]; data: Buffer }
  | { kind: 'stream'; ctx: PrepareContext; codec: StreamedCodec; blob: Buffer; bytes: number }
  | { kind: 'patch-stream'; ctx: PrepareContext; blob: Buffer; bytes: number }
  | { kind: 'copy-stream'; ctx: PrepareContext; runs: CopyRun[] }
  | { kind: 'zero'; extents: Extent[] }
  | { kind: 'copy'; runs: CopyRun[]; data: Buffer };

export type PrepareContext = Omit<OperationContext, 'writer'> & { blockSize: number };

/** Checks the op's hashes, runs it and sends its output to the writer. */
export async function applyOperation(ctx: OperationContext): Promise<void> {
  await commitOperation(ctx.writer, await prepareOperation({ ...ctx, blockSize: ctx.writer.blockSize }));
}

export async function prepareOperation(ctx: PrepareContext): Promise<PreparedOperation> {
  const { op, blockSize } = ctx;
  if (!SUPPORTED_OPS.has(op.type)) throw unsupportedOpError(ctx.partition, ctx.index, op, ctx.file);
  const dstBytes = totalBlocks(op.dst_extents) * blockSize;
  const codec = REPLACE_CODEC[op.type];
  if ((codec === 'xz' || codec === 'zstd' || codec === 'bz2') && dstBytes >= STREAM_MIN_BYTES) {
    return { kind: 'stream', ctx, codec, blob: checkedBlob(ctx), bytes: dstBytes };
  }
  if (codec) {
    // The decoder checks the data hash itself, so both can happen off the main thread.
    const decode = ctx.decoders ? ctx.decoders.verifyAndDecompress.bind(ctx.decoders) : verifyAndDecompressHere;
    const data = await guarded(ctx, () => decode(codec, requireBlob(ctx), dstBytes, expectedDataHash(op)));
    return { kind: 'write', extents: op.dst_extents, data };
  }
  const blob = checkedBlob(ctx);
  switch (op.type) {
    case OpType.REPLACE:
      return { kind: 'write', extents: op.dst_extents, data: padReplace(ctx, blob, dstBytes) };
    case OpType.ZERO:
    case OpType.DISCARD:
      return { kind: 'zero', extents: op.dst_extents };
    case OpType.SOURCE_COPY:
      if (dstBytes >= STREAM_MIN_BYTES) {
        // Copied a chunk at a time when committed: an op may move a whole partition.
        await checkSourceHashStreaming(ctx);
        return { kind: 'copy-stream', ctx, runs: pairRuns(op.src_extents, op.dst_extents) };
      }
      return { kind: 'copy', runs: pairRuns(op.src_extents, op.dst_extents), data: await checkedSource(ctx) };
    case OpType.SOURCE_BSDIFF:
    case OpType.BROTLI_BSDIFF: {
      if (dstBytes >= STREAM_MIN_BYTES) {
        // Patched as it is committed: the old blocks are hash-checked here, read again then.
        await checkSourceHashStreaming(ctx);
        return { kind: 'patch-stream', ctx, blob, bytes: dstBytes };
      }
      const source = await checkedSource(ctx);
      // Both op types carry either container; the patch's magic decides, as in update_engine.
      const data = await guarded(ctx, () => bspatch(source, blob, dstBytes));
      if (data.length !== dstBytes) throw opError(ctx, 'ECORRUPT', `patch produces ${data.length} bytes, the destination holds ${dstBytes}`);
      return { kind: 'write', extents: op.dst_extents, data };
    }
  }
  throw unsupportedOpError(ctx.partition, ctx.index, op, ctx.file);
}

export async function commitOperation(writer: PartitionWriter, prepared: PreparedOperation): Promise<void> {
  switch (prepared.kind) {
    case 'write':
      return writeExtents(writer, prepared.extents, prepared.data);
    case 'stream': {
      const { ctx, codec, blob, bytes } = prepared;
      return guarded(ctx, () => streamDecodeToExtents(codec, blob, bytes, writer, ctx.op.dst_extents));
    }
    case 'copy-stream': {
      const { ctx, runs } = prepared;
      const chunk = Math.max(1, Math.floor(COPY_CHUNK_BYTES / writer.blockSize));
      for (const run of runs) {
        for (let done = 0; done < run.blocks; done += chunk) {
          const n = Math.min(chunk, run.blocks - done);
          await writer.copy(run.src + done, run.dst + done, n, await ctx.source!.read(run.src + done, n));
        }
      }
      return;
    }
    case 'patch-stream': {
      const { ctx, blob, bytes } = prepared;
      const readOld = extentByteReader(ctx.source!, ctx.op.src_extents, ctx.blockSize);
      return guarded(ctx, () => bspatchToExtents(blob, bytes, totalBlocks(ctx.op.src_extents) * ctx.blockSize, readOld, writer, ctx.op.dst_extents));
    }
    case 'zero':
      for (const extent of prepared.extents) await writer.zero(extent.start_block, extent.num_blocks);
      return;
    case 'copy': {
      let at = 0;
      for (const run of prepared.runs) {
        const length = run.blocks * writer.blockSize;
        await writer.copy(run.src, run.dst, run.blocks, prepared.data.subarray(at, at + length));
        at += length;
      }
    }
  }
}

function requireBlob(ctx: PrepareContext): Buffer {
  if (!ctx.blob) throw opError(ctx, 'ECORRUPT', 'the operation has no data');
  return ctx.blob;
}

function expectedDataHash(op: InstallOperation): Buffer | undefined {
  return op.data_sha256_hash && op.data_sha256_hash.length > 0 ? op.data_sha256_hash : undefined;
}

function checkedBlob(ctx: PrepareContext): Buffer {
  const { op } = ctx;
  const needsData = op.type !== OpType.ZERO && op.type !== OpType.DISCARD && op.type !== OpType.SOURCE_COPY;
  if (!needsData) return Buffer.alloc(0);
  const blob = requireBlob(ctx);
  const expected = expectedDataHash(op);
  if (expected) {
    const actual = createHash('sha256').update(blob).digest();
    if (!actual.equals(expected)) throw opError(ctx, 'EHASH', dataHashMismatch(actual, expected).message);
  }
  return blob;
}

async function checkedSource(ctx: PrepareContext): Promise<Buffer> {
  const { op, source, blockSize } = ctx;
  if (!source) throw opError(ctx, 'ESTATE', 'the operation reads the old image, but no source image was given');
  const expected = expectedSourceHash(op);
  const read = await readExtents(source, op.src_extents, blockSize);
  if (!expected) return read;
  // Hashed on a decoder thread when there is one: the bytes go there and come back uncopied.
  const { digest, data } = ctx.decoders ? await ctx.decoders.sha256Lending(read) : { digest: createHash('sha256').update(read).digest(), data: read };
  if (!digest.equals(expected)) throw sourceHashMismatch(ctx, digest);
  return data;
}

/** The op's source hash, when the manifest gives one. */
export function expectedSourceHash(op: InstallOperation): Buffer | undefined {
  return op.src_sha256_hash && op.src_sha256_hash.length > 0 ? op.src_sha256_hash : undefined;
}

function sourceHashOffThread(ctx: PrepareContext): Promise<Buffer> | undefined {
  const file = ctx.source?.file;
  if (!file || !ctx.decoders) return undefined;
  const ranges = ctx.op.src_extents.map((e) => [e.start_block * ctx.blockSize, e.num_blocks * ctx.blockSize] as const);
  return ctx.decoders.sha256OfFileRanges(file, ranges).catch((err: unknown) => {
    throw opError(ctx, 'EIO', `cannot read the old image ${file} to check its hash: ${(err as Error).message}`, err);
  });
}

/** A streamed SOURCE_COPY moves this much at a time. */
const COPY_CHUNK_BYTES = 1 << 20;

function sourceHashMismatch(ctx: PrepareContext, actual: Buffer): VabError {
  return opError(ctx, 'EHASH', `source hash mismatch: old blocks hash to ${actual.toString('hex')}, manifest says ${ctx.op.src_sha256_hash!.toString('hex')} (wrong or modified source image?)`);
}

/** The source hash of an op whose old blocks are too many to hold: hashed a chunk at a time. */
async function checkSourceHashStreaming(ctx: PrepareContext): Promise<void> {
  const { op, source, blockSize } = ctx;
  if (!source) throw opError(ctx, 'ESTATE', 'the operation reads the old image, but no source image was given');
  const expected = expectedSourceHash(op);
  if (!expected) return;
  let actual = await sourceHashOffThread(ctx);
  if (!actual) {
    const hash = createHash('sha256');
    const chunkBlocks = Math.max(1, Math.floor(STREAM_MIN_BYTES / 4 / blockSize));
    for (const extent of op.src_extents) {
      for (let done = 0; done < extent.num_blocks; done += chunkBlocks) hash.update(await source.read(extent.start_block + done, Math.min(chunkBlocks, extent.num_blocks - done)));
    }
    actual = hash.digest();
  }
  if (!actual.equals(expected)) throw sourceHashMismatch(ctx, actual);
}

/** REPLACE data may stop short inside the last block; the rest of that block is zeros. */
function padReplace(ctx: PrepareContext, blob: Buffer, dstBytes: number): Buffer {
  if (blob.length === dstBytes) return blob;
  if (blob.length > dstBytes || dstBytes - blob.length >= ctx.blockSize) {
    throw opError(ctx, 'ECORRUPT', `REPLACE data has ${blob.length} bytes for ${dstBytes} bytes of destination`);
  }
  const padded = Buffer.alloc(dstBytes);
  blob.copy(padded);
  return padded;
}

async function guarded<T>(ctx: PrepareContext, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof VabError) throw opError(ctx, err.code, err.message, err);
    throw opError(ctx, 'ECORRUPT', (err as Error).message, err);
  }
}
