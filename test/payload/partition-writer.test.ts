import { promises as fs } from 'node:fs';
import path from 'node:path';
import { applyPartition } from '../../src/payload/extract';
import { generatePayload } from '../../src/payload/generate';
import { OpType } from '../../src/payload/manifest';
import { PartitionWriter, SourceReader, pairRuns } from '../../src/payload/partition-io';
import { PayloadFile } from '../../src/payload/payload-file';
import { evolve, randomBytes, tempDir, writeImages } from './support/images';

/** An in-memory partition that records each call, as a COW writer would receive them. */
class RecordingWriter implements PartitionWriter {
  readonly blockSize = 4096;
  readonly calls: string[] = [];
  readonly image: Buffer;
  constructor(size: number) {
    this.image = Buffer.alloc(size);
  }
  async write(dstBlock: number, data: Buffer): Promise<void> {
    this.calls.push(`write ${dstBlock} +${data.length / this.blockSize}`);
    data.copy(this.image, dstBlock * this.blockSize);
  }
  async zero(dstBlock: number, numBlocks: number): Promise<void> {
    this.calls.push(`zero ${dstBlock} +${numBlocks}`);
    this.image.fill(0, dstBlock * this.blockSize, (dstBlock + numBlocks) * this.blockSize);
  }
  async copy(srcBlock: number, dstBlock: number, numBlocks: number, data: Buffer): Promise<void> {
    this.calls.push(`copy ${srcBlock}->${dstBlock} +${numBlocks}`);
    data.copy(this.image, dstBlock * this.blockSize);
  }
}

class MemorySource implements SourceReader {
  constructor(private readonly image: Buffer) {}
  async read(startBlock: number, numBlocks: number): Promise<Buffer> {
    const out = Buffer.alloc(numBlocks * 4096);
    this.image.copy(out, 0, startBlock * 4096, Math.min(this.image.length, (startBlock + numBlocks) * 4096));
    return out;
  }
}

describe('applyPartition through an abstract partition writer', () => {
  let dir: string;
  afterAll(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('hands SOURCE_COPY runs to copy(), data to write(), zeros to zero(), in op order', async () => {
    dir = await tempDir('vab-writer-');
    const old = randomBytes(11, 2 * 1024 * 1024);
    const neu = evolve(old, 12);
    await writeImages(path.join(dir, 'old'), { system: old });
    await writeImages(path.join(dir, 'new'), { system: neu });
    await generatePayload({ targetDir: path.join(dir, 'new'), sourceDir: path.join(dir, 'old'), output: path.join(dir, 'delta.bin') });
    const payload = await PayloadFile.open(path.join(dir, 'delta.bin'));
    try {
      const partition = payload.manifest.partitions[0];
      const writer = new RecordingWriter(Math.ceil(neu.length / 4096) * 4096);
      await applyPartition(payload, partition, writer, new MemorySource(old));
      expect(writer.image.subarray(0, neu.length).equals(neu)).toBe(true);
      // The calls mirror the operations one to one, in order.
      const expected = partition.operations.flatMap((op) => {
        if (op.type === OpType.SOURCE_COPY) return pairRuns(op.src_extents, op.dst_extents).map((r) => `copy ${r.src}->${r.dst} +${r.blocks}`);
        if (op.type === OpType.ZERO) return op.dst_extents.map((e) => `zero ${e.start_block} +${e.num_blocks}`);
        return op.dst_extents.map((e) => `write ${e.start_block} +${e.num_blocks}`);
      });
      expect(writer.calls).toEqual(expected);
      expect(writer.calls.some((c) => c.startsWith('copy'))).toBe(true);
    } finally {
      await payload.close();
    }
  });
});
