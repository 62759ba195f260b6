import { createHash, KeyObject } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { replaceFileAtomically } from '../util/atomic';
import { VabError, errnoCode } from '../util/errors';
import { Logger, nullLogger } from '../util/log';
import { containedPath } from '../util/names';
import { encodeHeader, PAYLOAD_MAJOR_VERSION } from './header';
import { ImageFileReader, writeFully } from './image-io';
import { DEFAULT_BLOCK_SIZE, DeltaArchiveManifest, PartitionUpdate, encodeManifest } from './manifest';
import { mergeSequence } from './merge-sequence';
import { GeneratorVersion, PayloadCompression, chooseGeneratorVersion } from './minor-version';
import { checkPartitionNames } from './partition-names';
import { BlobSink, planPartition } from './plan-partition';
import { PostinstallSpec, applyPostinstallSpecs, checkPostinstallSpecs } from './postinstall-spec';
import { signDigest, signatureSize, signaturesMessage } from './signing';

export type { PayloadCompression };

export interface GenerateOptions {
  /** Directory of new images, one `<partition>.img` each. */
  targetDir: string;
  /** Directory of old images: makes an incremental payload for the partitions found there. */
  sourceDir?: string;
  output: string;
  privateKey?: KeyObject;
  /** 0 for a full payload, 2..10 for an incremental one (default: 0 full, 9 incremental). */
  minorVersion?: number;
  /** Codec of replace ops (default: the best the minor version allows: zstd at 10, else xz). */
  compression?: PayloadCompression;
  /**
   * Let `compression` pick a codec the minor version does not allow, as OEM full payloads carry
   * REPLACE_ZSTD at minor version 0. For benchmarks and tests of readers: Android's generator
   * never writes such payloads and `inspect` flags them.
   */
  codecBeyondMinorVersion?: boolean;
  /** Only these partitions (default: every `*.img` in targetDir, sorted). */
  partitions?: readonly string[];
  /** What the device's COW files should be compressed with (vabc_compression_param). */
  cowCompression?: string;
  /** Largest unit the COW writer compresses at once (COW v3 compression factor). */
  compressionFactor?: number;
  /** Post-install programs to record in the manifest (run_postinstall and friends). */
  postinstall?: readonly PostinstallSpec[];
  /** Called as new-image bytes are processed, with the running and total counts. */
  onProgress?: (done: number, total: number) => void;
  logger?: Logger;
}

export interface GenerateSummary {
  output: string;
  size: number;
  minorVersion: number;
  partitions: Array<{ name: string; operations: number; incremental: boolean }>;
}

const FULL_CHUNK_BLOCKS = 512; // 2 MiB, as AOSP's full payloads
const DELTA_CHUNK_BLOCKS = 256; // 1 MiB: the bsdiff suffix array stays small

export async function listImages(dir: string): Promise<string[]> {
  const names = await fs.readdir(dir).catch((err) => {
    throw new VabError('ENOTFOUND', `cannot list images: ${(err as Error).message}`, { file: dir, cause: err });
  });
  return names.filter((n) => n.endsWith('.img') && !n.startsWith('.')).map((n) => n.slice(0, -4)).sort();
}

async function imageSize(file: string): Promise<number | undefined> {
  try {
    return (await fs.stat(file)).size;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  }
}

/** delta_generator's job: images in, payload.bin out (signed when a key is given). */
export async function generatePayload(options: GenerateOptions): Promise<GenerateSummary> {
  const logger = options.logger ?? nullLogger;
  const blockSize = DEFAULT_BLOCK_SIZE;
  const listed = options.partitions?.length ? [...options.partitions] : undefined;
  const names = listed ?? (await listImages(options.targetDir));
  if (names.length === 0) throw new VabError('EINVAL_INPUT', `no <partition>.img files in ${options.targetDir}`);
  // The names go into the manifest, where every reader will check them: refuse them here first.
  checkPartitionNames(names, { code: 'EINVAL_INPUT', file: listed ? undefined : options.targetDir, what: (index) => (listed ? `partition ${index} of the list` : `image ${index}`) });
  checkPostinstallSpecs(names, options.postinstall ?? []);
  const incremental = options.sourceDir !== undefined && (await anyImage(names, options.sourceDir));
  const version = chooseGeneratorVersion({ incremental, minorVersion: options.minorVersion, compression: options.compression, codecBeyondMinorVersion: options.codecBeyondMinorVersion });
  const blobsPath = temporaryPath(options.output, 'blobs');
  const blobs = await fs.open(blobsPath, 'w+');
  try {
    let blobBytes = 0;
    const sink: BlobSink = {
      append: async (blob) => {
        const offset = blobBytes;
        await writeFully(blobs, blob, offset);
        blobBytes += blob.length;
        return offset;
      },
    };
    const total = await totalSize(names, options.targetDir);
    let bytesDone = 0;
    const advance = (bytes: number) => {
      bytesDone = Math.min(total, bytesDone + bytes);
      options.onProgress?.(bytesDone, total);
    };
    const partitions: PartitionUpdate[] = [];
    for (const name of names) {
      partitions.push(await generatePartition(name, options, sink, version, blockSize, advance));
      logger.info('partition planned', { partition: name, operations: partitions[partitions.length - 1].operations.length });
    }
    applyPostinstallSpecs(partitions, options.postinstall ?? []);
    const manifest: DeltaArchiveManifest = {
      block_size: blockSize,
      minor_version: version.minor,
      partitions,
      dynamic_partition_metadata: {
        groups: [{ name: 'vab_dynamic_partitions', size: partitions.reduce((n, p) => n + roundUp(p.new_partition_info!.size!, blockSize), 0), partition_names: names }],
        snapshot_enabled: true,
        vabc_enabled: true,
        vabc_compression_param: options.cowCompression ?? 'lz4',
        cow_version: 3,
        compression_factor: options.compressionFactor ?? 65536,
      },
    };
    const size = await writePayloadFile(options.output, manifest, blobs, blobBytes, options.privateKey);
    return { output: options.output, size, minorVersion: version.minor, partitions: partitions.map((p) => ({ name: p.partition_name, operations: p.operations.length, incremental: p.old_partition_info !== undefined })) };
  } finally {
    await blobs.close();
    await fs.rm(blobsPath, { force: true });
  }
}

async function anyImage(names: readonly string[], dir: string): Promise<boolean> {
  for (const name of names) if ((await imageSize(containedPath(dir, `${name}.img`))) !== undefined) return true;
  return false;
}

async function totalSize(names: readonly string[], dir: string): Promise<number> {
  let total = 0;
  for (const name of names) total += (await imageSize(containedPath(dir, `${name}.img`))) ?? 0;
  return total;
}

async function generatePartition(name: string, options: GenerateOptions, sink: BlobSink, version: GeneratorVersion, blockSize: number, onProgress: (bytes: number) => void): Promise<PartitionUpdate> {
  const targetFile = containedPath(options.targetDir, `${name}.img`);
  const targetSize = await imageSize(targetFile);
  if (targetSize === undefined) throw new VabError('ENOTFOUND', `partition ${name}: no new image`, { file: targetFile });
  if (targetSize % blockSize !== 0) {
    // delta_generator refuses such images, and Android's payload checker refuses the last extent.
    (options.logger ?? nullLogger).warn('image size is not a whole number of blocks: Android\'s payload checker will refuse this payload', { partition: name, size: targetSize, blockSize });
  }
  const sourceFile = options.sourceDir ? containedPath(options.sourceDir, `${name}.img`) : undefined;
  const sourceSize = sourceFile ? await imageSize(sourceFile) : undefined;
  const target = await ImageFileReader.open(targetFile, blockSize);
  const source = sourceFile && sourceSize !== undefined ? await ImageFileReader.open(sourceFile, blockSize) : undefined;
  try {
    const plan = await planPartition(
      { reader: target, size: targetSize },
      source && { reader: source, size: sourceSize! },
      sink,
      { blockSize, compression: version.compression, zeroOps: version.zero, diffOps: version.brotliBsdiff, chunkBlocks: source ? DELTA_CHUNK_BLOCKS : FULL_CHUNK_BLOCKS, onProgress },
    );
    const update: PartitionUpdate = {
      partition_name: name,
      new_partition_info: { size: targetSize, hash: plan.newHash },
      operations: plan.operations,
      merge_operations: mergeSequence(plan.copies),
    };
    if (source) update.old_partition_info = { size: sourceSize, hash: plan.oldHash };
    return update;
  } finally {
    await target.close();
    await source?.close();
  }
}

function roundUp(value: number, multiple: number): number {
  return Math.ceil(value / multiple) * multiple;
}

function temporaryPath(output: string, what: string): string {
  return path.join(path.dirname(output), `.${path.basename(output)}.${what}-${process.pid}`);
}

/**
 * Lays out header | manifest | metadata signature | blobs | payload signature, signing the
 * metadata hash and the signed payload hash. The signature sizes are part of the signed bytes
 * (header and manifest), so they are fixed first from the key's size.
 */
async function writePayloadFile(output: string, manifest: DeltaArchiveManifest, blobs: fs.FileHandle, blobBytes: number, key?: KeyObject): Promise<number> {
  const signatureBlobSize = key ? signaturesMessage(Buffer.alloc(signatureSize(key))).length : 0;
  if (key) {
    manifest.signatures_offset = blobBytes;
    manifest.signatures_size = signatureBlobSize;
  }
  const manifestBytes = encodeManifest(manifest);
  const header = encodeHeader({ major_version: PAYLOAD_MAJOR_VERSION, manifest_size: manifestBytes.length, metadata_signature_size: signatureBlobSize });
  const metadata = Buffer.concat([header, manifestBytes]);
  return replaceFileAtomically(output, async (tmp) => {
    const out = await fs.open(tmp, 'w', 0o644);
    try {
      let position = 0;
      const put = async (data: Buffer) => {
        await writeFully(out, data, position);
        position += data.length;
      };
      await put(metadata);
      // Both signatures start from the metadata hash: fork it instead of hashing the metadata twice.
      const signedHash = key && createHash('sha256').update(metadata);
      if (key && signedHash) await put(signaturesMessage(signDigest(signedHash.copy().digest(), key)));
      const chunk = Buffer.allocUnsafe(4 * 1024 * 1024);
      for (let at = 0; at < blobBytes; ) {
        const { bytesRead } = await blobs.read(chunk, 0, Math.min(chunk.length, blobBytes - at), at);
        if (bytesRead === 0) throw new VabError('EIO', `blob file ended at ${at} of ${blobBytes} bytes`);
        const data = chunk.subarray(0, bytesRead);
        signedHash?.update(data);
        await put(data);
        at += bytesRead;
      }
      if (key && signedHash) await put(signaturesMessage(signDigest(signedHash.digest(), key)));
      await out.sync();
      return position;
    } finally {
      await out.close();
    }
  });
}
