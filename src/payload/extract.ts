import { promises as fs } from 'node:fs';
import type { KeyObject } from 'node:crypto';
import { VabError } from '../util/errors';
import { Logger, nullLogger } from '../util/log';
import { containedPath } from '../util/names';
import { DecodePool } from './codec-pool';
import { ImageFileReader, ImageFileWriter, ImageWriterOptions } from './image-io';
import { PartitionUpdate, blockSizeOf } from './manifest';
import { PreparedOperation, SOURCE_OPS, commitOperation, expectedSourceHash, prepareOperation } from './operations';
import { HashFollowerPool } from './hash-follower';
import { settledAfterEachOp } from './settled';
import { PartitionWriter, SourceReader, totalBlocks } from './partition-io';
import { PayloadFile } from './payload-file';
import { requireValidSignatures } from './verify';
import { validateManifest } from './validate';

export interface ExtractOptions {
  outDir: string;
  /** Directory of old images (`<partition>.img`), required for incremental payloads. */
  sourceDir?: string;
  /** Only these partitions (default: all). */
  partitions?: readonly string[];
  /** When given, both signatures must verify before anything is written. */
  publicKey?: KeyObject;
  /** Called after each op with destination bytes done so far and in total. */
  onProgress?: (done: number, total: number) => void;
  /** fsync each image before it is renamed into place (default: complete and checked, not durable). */
  fsync?: boolean;
  /** How images are written (a fault-injecting file layer, in tests). */
  imageWriter?: ImageWriterOptions;
  logger?: Logger;
}

export interface ExtractedImage {
  partition: string;
  file: string;
  size: number;
}

/** Sum of destination bytes of the selected partitions' ops: the progress total. */
export function extractWork(payload: PayloadFile, partitions: readonly PartitionUpdate[]): number {
  const blockSize = blockSizeOf(payload.manifest);
  return partitions.reduce((sum, p) => sum + p.operations.reduce((n, op) => n + totalBlocks(op.dst_extents) * blockSize, 0), 0);
}

export function selectPartitions(payload: PayloadFile, names?: readonly string[]): PartitionUpdate[] {
  const all = payload.manifest.partitions;
  if (!names || names.length === 0) return all;
  return names.map((name) => {
    const found = all.find((p) => p.partition_name === name);
    if (!found) throw new VabError('ENOTFOUND', `partition ${name} is not in the payload (it has ${all.map((p) => p.partition_name).join(', ')})`, { file: payload.file });
    return found;
  });
}

/**
 * Writes `<partition>.img` into `outDir` for each selected partition. Everything that can be
 * checked up front is checked before the first write (signatures, manifest, old images); each
 * image then appears under its name only once its hash matches the manifest.
 */
export async function extractPayload(file: string, options: ExtractOptions): Promise<ExtractedImage[]> {
  const logger = options.logger ?? nullLogger;
  const payload = await PayloadFile.open(file);
  try {
    if (options.publicKey) await requireValidSignatures(payload, options.publicKey);
    const partitions = selectPartitions(payload, options.partitions);
    validateManifest(payload.manifest, partitions, file);
    const sources = await openSources(payload, partitions, options.sourceDir);
    const decoders = new DecodePool();
    const hashes = new HashFollowerPool();
    try {
      await fs.mkdir(options.outDir, { recursive: true });
      const total = extractWork(payload, partitions);
      let bytesDone = 0;
      const advance = (bytes: number) => {
        bytesDone += bytes;
        options.onProgress?.(bytesDone, total);
      };
      const done: ExtractedImage[] = [];
      for (const partition of partitions) {
        const image = await extractPartition(payload, partition, options, advance, { decoders, hashes }, sources.get(partition.partition_name));
        logger.info('partition extracted', { partition: image.partition, size: image.size });
        done.push(image);
      }
      return done;
    } finally {
      await decoders.close();
      await hashes.close();
      await Promise.all([...sources.values()].map((s) => s.close()));
    }
  } finally {
    await payload.close();
  }
}

/** Opens the old image of every delta partition and checks it against old_partition_info. */
async function openSources(payload: PayloadFile, partitions: readonly PartitionUpdate[], sourceDir?: string): Promise<Map<string, ImageFileReader>> {
  const sources = new Map<string, ImageFileReader>();
  try {
    for (const partition of partitions) {
      const old = partition.old_partition_info;
      if (!old) continue;
      const name = partition.partition_name;
      if (!sourceDir) throw new VabError('EINVAL_INPUT', `partition ${name} is incremental: give the old images with --source`, { file: payload.file });
      const reader = await ImageFileReader.open(containedPath(sourceDir, `${name}.img`), blockSizeOf(payload.manifest));
      sources.set(name, reader);
      // When every op that reads the old image checks what it reads, those checks cover all the
      // new image depends on (update_engine relies on them too): hashing the whole old image
      // first would only repeat them.
      if (old.size !== undefined && old.hash && old.hash.length > 0 && !everySourceReadIsHashed(partition)) {
        const actual = await reader.hash(old.size);
        if (!actual.equals(old.hash)) {
          throw new VabError('EHASH', `partition ${name}: old image hashes to ${actual.toString('hex')}, manifest expects ${old.hash.toString('hex')}`, { file: reader.file });
        }
      }
    }
    return sources;
  } catch (err) {
    await Promise.all([...sources.values()].map((s) => s.close()));
    throw err;
  }
}

function everySourceReadIsHashed(partition: PartitionUpdate): boolean {
  return partition.operations.every((op) => !SOURCE_OPS.has(op.type) || expectedSourceHash(op) !== undefined);
}

async function extractPartition(
  payload: PayloadFile,
  partition: PartitionUpdate,
  options: ExtractOptions,
  onProgress: (bytes: number) => void,
  threads: { decoders: DecodePool; hashes: HashFollowerPool },
  source?: SourceReader,
): Promise<ExtractedImage> {
  const name = partition.partition_name;
  const info = partition.new_partition_info!; // validated
  const blockSize = blockSizeOf(payload.manifest);
  // Names were checked when the payload was parsed; this keeps the promise local to the write.
  const finalPath = containedPath(options.outDir, `${name}.img`);
  const writerOptions = { durable: options.fsync, hashes: threads.hashes, ...options.imageWriter };
  const writer = await ImageFileWriter.create(finalPath, blockSize, info.size!, writerOptions);
  const settled = settledAfterEachOp(partition, blockSize, info.size!);
  try {
    await applyPartition(payload, partition, writer, source, onProgress, threads.decoders, { afterOp: async (next) => writer.settle(settled[next - 1]) });
    await writer.commit(info.hash!, name);
  } catch (err) {
    await writer.abort();
    throw err;
  }
  return { partition: name, file: finalPath, size: info.size! };
}

/** Operations prepared ahead of the one being written: enough to keep the decoders busy. */
const PREPARE_AHEAD = 4;

/**
 * Runs a partition's operations against any writer, from op `resume.from` (a resumed apply) on,
 * calling `resume.afterOp` after each (a COW writer records a label there). Up to PREPARE_AHEAD
 * ops are read, checked and decompressed at once (decoders run off the main thread); their
 * results reach the writer strictly in op order. The first failure stops the partition; ops
 * prepared after it are discarded unwritten.
 */
export async function applyPartition(
  payload: PayloadFile,
  partition: PartitionUpdate,
  writer: PartitionWriter,
  source?: SourceReader,
  onProgress?: (bytes: number) => void,
  decoders?: DecodePool,
  resume: { from?: number; afterOp?: (nextOp: number) => Promise<void> } = {},
): Promise<void> {
  const ops = partition.operations;
  const from = resume.from ?? 0;
  const prepare = (index: number) => {
    const op = ops[index];
    const work = payload.readBlob(op).then((blob) =>
      prepareOperation({ partition: partition.partition_name, index, op, blob, source, blockSize: writer.blockSize, file: payload.file, blobOffset: payload.blobOffset(op), decoders }),
    );
    work.catch(() => undefined); // reported when awaited in order; not an unhandled rejection meanwhile
    return work;
  };
  const ahead: Array<Promise<PreparedOperation>> = [];
  for (let next = from; next < Math.min(from + PREPARE_AHEAD, ops.length); next++) ahead.push(prepare(next));
  for (let index = from; index < ops.length; index++) {
    const prepared = await ahead.shift()!;
    if (index + PREPARE_AHEAD < ops.length) ahead.push(prepare(index + PREPARE_AHEAD));
    await commitOperation(writer, prepared);
    await resume.afterOp?.(index + 1);
    onProgress?.(totalBlocks(ops[index].dst_extents) * writer.blockSize);
  }
}
