import { createHash, KeyObject } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { CowReader } from '../../cow/reader';
import { SnapshotReader } from '../../cow/snapshot-reader';
import { DecodePool } from '../../payload/codec-pool';
import { applyPartition } from '../../payload/extract';
import { ImageFileReader } from '../../payload/image-io';
import { PartitionUpdate, blockSizeOf } from '../../payload/manifest';
import { totalBlocks } from '../../payload/partition-io';
import { PayloadFile } from '../../payload/payload-file';
import { validateManifest } from '../../payload/validate';
import { requireValidSignatures } from '../../payload/verify';
import { DeviceLayout } from '../../snapshot/layout';
import { SnapshotManager } from '../../snapshot/manager';
import { UpdateState, updateStateText } from '../../snapshot/proto';
import { VabError, errnoCode } from '../../util/errors';
import { Logger, nullLogger } from '../../util/log';
import { CowPartitionWriter } from './cow-partition-writer';
import { cowMergePlan } from './merge-plan';
import { readUpdateRecord, removeUpdateRecord, writeUpdateRecord } from './update-record';

export interface ApplyOptions {
  payload: string;
  device: string;
  publicKey?: KeyObject;
  /** COW compression instead of the manifest's vabc_compression_param. */
  compression?: string;
  onProgress?: (event: ApplyProgress) => void;
  logger?: Logger;
}

export interface ApplyProgress {
  partition: string;
  /** Destination bytes written so far, of this partition and of all. */
  bytes: number;
  totalBytes: number;
  ops: number;
  totalOps: number;
}

export interface AppliedPartition {
  name: string;
  newSize: number;
  cowBytes: number;
  ops: number;
  /** The payload op a resumed apply went on from (0: from the start). */
  resumedAt: number;
}

export interface ApplySummary {
  partitions: AppliedPartition[];
  resumed: boolean;
  state: string;
}

/** A label (and its fsync) after every this many payload ops: what a killed apply redoes at most. */
const LABEL_EVERY_OPS = 8;

/**
 * `vab apply`: a payload into COW snapshots beside untouched base images (update_engine with
 * Virtual A/B compression). Everything that can be checked is checked before anything is written;
 * a killed apply resumes from each partition's last label when run again with the same payload;
 * the result is read back through the snapshot view and must hash to new_partition_info.
 */
export async function applyPayload(options: ApplyOptions): Promise<ApplySummary> {
  const logger = options.logger ?? nullLogger;
  const layout = new DeviceLayout(options.device);
  const payload = await PayloadFile.open(options.payload);
  try {
    if (options.publicKey) await requireValidSignatures(payload, options.publicKey);
    const partitions = payload.manifest.partitions;
    validateManifest(payload.manifest, partitions, payload.file);
    const blockSize = blockSizeOf(payload.manifest);
    const plans = new Map(partitions.map((p) => [p.partition_name, cowMergePlan(p, blockSize, payload.file)]));
    for (const [name, plan] of plans) if (plan.dropped) logger.warn('merge operations not used: their blocks are written as data', { partition: name, reason: plan.dropped });
    await checkOldImages(layout, partitions);

    const manager = new SnapshotManager({ device: layout.root, command: 'vab apply', logger });
    const metadataHash = createHash('sha256').update(payload.metadata).digest('hex');
    const record = await readUpdateRecord(layout);
    const state = await manager.updateState();
    const sameUpdate = record?.payload_metadata_sha256 === metadataHash;
    if (state === UpdateState.Unverified && sameUpdate) return { partitions: [], resumed: true, state: updateStateText(state) };
    const resumed = state === UpdateState.Initiated && sameUpdate;
    if (!resumed) {
      await manager.beginUpdate();
      await writeUpdateRecord(layout, {
        payload_metadata_sha256: metadataHash,
        payload_file: payload.file,
        postinstall: partitions
          .filter((p) => p.run_postinstall)
          .map((p) => ({ name: p.partition_name, path: p.postinstall_path || undefined, filesystemType: p.filesystem_type || undefined, optional: p.postinstall_optional === true })),
      });
      const dyn = payload.manifest.dynamic_partition_metadata;
      await manager.createUpdateSnapshots(
        partitions.map((p) => ({
          name: p.partition_name,
          deviceSize: p.new_partition_info!.size!,
          oldPartitionSize: p.old_partition_info?.size ?? 0,
          compressionAlgorithm: cowCompression(options.compression ?? dyn?.vabc_compression_param),
          compressionFactor: dyn?.compression_factor ?? 65536,
          estimatedCowSize: p.estimate_cow_size,
        })),
      );
    }
    await growBases(layout, partitions);

    const totalBytes = partitions.reduce((n, p) => n + p.operations.reduce((m, op) => m + totalBlocks(op.dst_extents) * blockSize, 0), 0);
    const totalOps = partitions.reduce((n, p) => n + p.operations.length, 0);
    let bytes = 0;
    let ops = 0;
    const applied: AppliedPartition[] = [];
    const decoders = new DecodePool();
    try {
      for (const p of partitions) {
        const name = p.partition_name;
        const status = await manager.store.readSnapshotStatus(name);
        const source = await ImageFileReader.open(layout.image(name), blockSize);
        const newSize = p.new_partition_info!.size!;
        try {
          const writer = await CowPartitionWriter.open({
            cowPath: layout.cow(name),
            blockSize,
            newBlocks: Math.ceil(newSize / blockSize),
            compression: options.compression ?? cowCompression(status.compression_algorithm),
            compressionFactor: status.compression_factor || 65536,
            plan: plans.get(name)!,
            source,
          });
          const skipped = p.operations.slice(0, writer.resumeAt);
          bytes += skipped.reduce((n, op) => n + totalBlocks(op.dst_extents) * blockSize, 0);
          ops += skipped.length;
          let sinceLabel = 0;
          try {
            await applyPartition(
              payload,
              p,
              writer,
              source,
              (done) => {
                bytes += done;
                ops++;
                options.onProgress?.({ partition: name, bytes, totalBytes, ops, totalOps });
              },
              decoders,
              {
                from: writer.resumeAt,
                afterOp: async (next) => {
                  if (++sinceLabel < LABEL_EVERY_OPS && next < p.operations.length) return;
                  await writer.checkpoint(next);
                  sinceLabel = 0;
                },
              },
            );
            await writer.finish();
          } catch (err) {
            await writer.abort();
            throw err;
          }
          applied.push({ name, newSize, cowBytes: (await fs.stat(layout.cow(name))).size, ops: p.operations.length, resumedAt: writer.resumeAt });
          logger.info('partition written', { partition: name, resumedAt: writer.resumeAt });
        } finally {
          await source.close();
        }
      }
    } finally {
      await decoders.close();
    }

    for (const p of partitions) {
      const problem = await verifyPartition(layout, p);
      if (problem) {
        logger.error('update does not verify; cancelled', { partition: p.partition_name, problem });
        await manager.cancelUpdate();
        await removeUpdateRecord(layout);
        throw new VabError('EHASH', `partition ${p.partition_name}: ${problem}; the update was cancelled (state none, COWs removed)`, { file: layout.cow(p.partition_name) });
      }
    }
    await manager.finishedSnapshotWrites();
    return { partitions: applied, resumed, state: updateStateText(await manager.updateState()) };
  } finally {
    await payload.close();
  }
}

/** The COW compression name of a manifest's vabc_compression_param ("lz4", "zstd,3", "none", ...). */
function cowCompression(param: string | undefined): string {
  if (!param) return 'none';
  return param;
}

/**
 * Every incremental partition's base must be the image the payload was made from: compared with
 * old_partition_info before anything is written. Full partitions need no old image.
 */
async function checkOldImages(layout: DeviceLayout, partitions: readonly PartitionUpdate[]): Promise<void> {
  for (const p of partitions) {
    const name = p.partition_name;
    const old = p.old_partition_info;
    const image = layout.image(name);
    if (!old) continue;
    let size: number;
    try {
      size = (await fs.stat(image)).size;
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') throw new VabError('ENOTFOUND', `partition ${name} is incremental but the device has no super/${name}.img`, { file: image });
      throw err;
    }
    if (old.size !== undefined && size < old.size) throw new VabError('EHASH', `partition ${name}: super/${name}.img is ${size} bytes, the payload's old image ${old.size}: not the image this payload updates`, { file: image });
    if (old.hash && old.hash.length > 0 && old.size !== undefined) {
      const reader = await ImageFileReader.open(image, 4096);
      try {
        const actual = await reader.hash(old.size);
        if (!actual.equals(old.hash)) throw new VabError('EHASH', `partition ${name}: super/${name}.img hashes to ${actual.toString('hex')}, the payload expects ${old.hash.toString('hex')}: not the image this payload updates`, { file: image });
      } finally {
        await reader.close();
      }
    }
  }
}

/** A partition that grows gets a base of its new size first (the new tail reads as zeros). */
async function growBases(layout: DeviceLayout, partitions: readonly PartitionUpdate[]): Promise<void> {
  await fs.mkdir(layout.superDir, { recursive: true });
  for (const p of partitions) {
    const image = layout.image(p.partition_name);
    const newSize = p.new_partition_info!.size!;
    const size = await fs.stat(image).then((s) => s.size, (err: unknown) => {
      if (errnoCode(err) === 'ENOENT') return -1;
      throw err;
    });
    if (size < 0) await fs.writeFile(image, Buffer.alloc(0), { mode: 0o600 });
    if (size < newSize) {
      const handle = await fs.open(image, 'r+');
      try {
        await handle.truncate(newSize);
        await handle.sync();
      } finally {
        await handle.close();
      }
    }
  }
}

/**
 * The COW's merge order must be safe in place (Android's VerifyMergeOps), and its snapshot view
 * (base + COW) must hash to new_partition_info.
 */
async function verifyPartition(layout: DeviceLayout, p: PartitionUpdate): Promise<string | undefined> {
  const cow = await CowReader.open(layout.cow(p.partition_name));
  try {
    const problem = cow.verifyMergeOrder();
    if (problem) return `the COW's merge order is not safe in place at position ${problem.position}: ${problem.message}`;
  } finally {
    await cow.close();
  }
  const info = p.new_partition_info!;
  const reader = await SnapshotReader.open(layout.cow(p.partition_name), layout.image(p.partition_name), { deviceBytes: Math.ceil(info.size! / 4096) * 4096 });
  try {
    const hash = createHash('sha256');
    const chunkBlocks = 256;
    const buffer = Buffer.allocUnsafe(chunkBlocks * reader.blockSize);
    let left = info.size!;
    for (let block = 0; left > 0; block += chunkBlocks) {
      const n = Math.min(chunkBlocks, reader.blockCount - block);
      await reader.readBlocks(block, n, buffer);
      const take = Math.min(left, n * reader.blockSize);
      hash.update(buffer.subarray(0, take));
      left -= take;
    }
    const digest = hash.digest();
    if (info.hash && info.hash.length > 0 && !digest.equals(info.hash)) return `base + COW hashes to ${digest.toString('hex')}, new_partition_info says ${info.hash.toString('hex')}`;
    return undefined;
  } finally {
    await reader.close();
  }
}
