import { promises as fs } from 'node:fs';
import path from 'node:path';
import { bspatch } from '../../src/payload/bsdiff-format';
import { decompress } from '../../src/payload/codecs';
import { REPLACE_CODEC } from '../../src/payload/operations';
import { writeFully } from '../../src/payload/image-io';
import { Extent, OpType } from '../../src/payload/manifest';
import { PayloadFile } from '../../src/payload/payload-file';

/**
 * What payload_dumper (the Python tool people open OTAs with) does, with vab's own codecs: one op
 * after another on one thread, each blob decompressed or patched and written where it goes;
 * no hash checked, nothing fsynced. The baseline extract has to beat while still verifying.
 */

async function readExtents(file: fs.FileHandle, extents: readonly Extent[], blockSize: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (const e of extents) {
    const part = Buffer.alloc(e.num_blocks * blockSize);
    await file.read(part, 0, part.length, e.start_block * blockSize);
    parts.push(part);
  }
  return Buffer.concat(parts);
}

async function writeExtents(file: fs.FileHandle, extents: readonly Extent[], blockSize: number, data: Buffer): Promise<void> {
  let at = 0;
  for (const e of extents) {
    const length = Math.min(e.num_blocks * blockSize, data.length - at);
    await writeFully(file, data.subarray(at, at + length), e.start_block * blockSize);
    at += length;
  }
}

export async function dumpPayload(payloadFile: string, outDir: string, sourceDir?: string): Promise<void> {
  const payload = await PayloadFile.open(payloadFile);
  const blockSize = payload.manifest.block_size ?? 4096;
  await fs.mkdir(outDir, { recursive: true });
  try {
    for (const partition of payload.manifest.partitions) {
      const out = await fs.open(path.join(outDir, `${partition.partition_name}.img`), 'w');
      const old = sourceDir && partition.old_partition_info ? await fs.open(path.join(sourceDir, `${partition.partition_name}.img`), 'r') : undefined;
      try {
        for (const op of partition.operations) {
          const size = op.dst_extents.reduce((n, e) => n + e.num_blocks, 0) * blockSize;
          const codec = REPLACE_CODEC[op.type];
          if (codec) await writeExtents(out, op.dst_extents, blockSize, await decompress(codec, (await payload.readBlob(op))!, size));
          else if (op.type === OpType.REPLACE) await writeExtents(out, op.dst_extents, blockSize, (await payload.readBlob(op))!);
          else if (op.type === OpType.ZERO || op.type === OpType.DISCARD) await writeExtents(out, op.dst_extents, blockSize, Buffer.alloc(size));
          else if (op.type === OpType.SOURCE_COPY) await writeExtents(out, op.dst_extents, blockSize, await readExtents(old!, op.src_extents, blockSize));
          else if (op.type === OpType.SOURCE_BSDIFF || op.type === OpType.BROTLI_BSDIFF) {
            const patched = await bspatch(await readExtents(old!, op.src_extents, blockSize), (await payload.readBlob(op))!, size);
            await writeExtents(out, op.dst_extents, blockSize, patched);
          } else throw new Error(`the dumper baseline cannot run op type ${op.type}`);
        }
        await out.truncate(partition.new_partition_info?.size ?? 0);
      } finally {
        await out.close();
        await old?.close();
      }
    }
  } finally {
    await payload.close();
  }
}
