import { promises as fs } from 'node:fs';
import { CowWriter } from '../../cow/writer';
import type { PartitionWriter, SourceReader } from '../../payload/partition-io';
import { VabError, errnoCode } from '../../util/errors';
import type { CowMergePlan } from './merge-plan';

export interface CowPartitionWriterOptions {
  cowPath: string;
  blockSize: number;
  /** Blocks of the partition after the update. */
  newBlocks: number;
  compression: string;
  compressionFactor: number;
  plan: CowMergePlan;
  /** The old image, for the bytes Xor ops are taken against. */
  source?: SourceReader;
}

/**
 * The payload's ops into a COW (update_engine's VABCPartitionWriter): the merge operations' copies
 * first, with the merge order as sequence data, then every op's output as Replace, Zero or Xor
 * ops; a SOURCE_COPY the copies already cover, or one onto itself, adds nothing. After each
 * payload op a label records where a killed apply resumes.
 */
export class CowPartitionWriter implements PartitionWriter {
  readonly blockSize: number;

  private constructor(
    private readonly cow: CowWriter,
    private readonly o: CowPartitionWriterOptions,
    /** Payload ops [0, resumeAt) are in the COW already. */
    readonly resumeAt: number,
  ) {
    this.blockSize = o.blockSize;
  }

  /** Resumes the COW at its last label when it has one, else starts it afresh. */
  static async open(o: CowPartitionWriterOptions): Promise<CowPartitionWriter> {
    const resumed = await CowWriter.resume(o.cowPath).catch((err: unknown) => {
      if (errnoCode(err) === 'ENOENT' || (err instanceof Error && /no resume point|header/i.test(err.message))) return undefined;
      throw err;
    });
    if (resumed && resumed.lastLabel !== undefined) return new CowPartitionWriter(resumed, o, Number(resumed.lastLabel));
    await resumed?.close();
    await fs.rm(o.cowPath, { force: true });
    const cow = await CowWriter.create(o.cowPath, { blockSize: o.blockSize, compression: o.compression, compressionFactor: o.compressionFactor, maxBlocks: o.newBlocks });
    try {
      await cow.addSequenceData(o.plan.sequence);
      for (const block of o.plan.sequence) {
        const src = o.plan.copies.get(block);
        if (src !== undefined) await cow.addCopy(block, src);
      }
      // Label 0: the copies are in; payload op 0 is next.
      await cow.addLabel(0n);
    } catch (err) {
      await cow.close();
      throw err;
    }
    return new CowPartitionWriter(cow, o, 0);
  }

  async write(dstBlock: number, data: Buffer): Promise<void> {
    const count = data.length / this.blockSize;
    let runStart = -1;
    const flushRun = async (end: number): Promise<void> => {
      if (runStart >= 0) await this.cow.addRawBlocks(dstBlock + runStart, data.subarray(runStart * this.blockSize, end * this.blockSize));
      runStart = -1;
    };
    for (let i = 0; i < count; i++) {
      const at = this.o.plan.xors.get(dstBlock + i);
      if (at === undefined) {
        if (runStart < 0) runStart = i;
        continue;
      }
      await flushRun(i);
      await this.writeXor(dstBlock + i, data.subarray(i * this.blockSize, (i + 1) * this.blockSize), at);
    }
    await flushRun(count);
  }

  async zero(dstBlock: number, numBlocks: number): Promise<void> {
    await this.cow.addZeroBlocks(dstBlock, numBlocks);
  }

  async copy(srcBlock: number, dstBlock: number, numBlocks: number, data: Buffer): Promise<void> {
    let runStart = -1;
    const flushRun = async (end: number): Promise<void> => {
      if (runStart >= 0) await this.cow.addRawBlocks(dstBlock + runStart, data.subarray(runStart * this.blockSize, end * this.blockSize));
      runStart = -1;
    };
    for (let i = 0; i < numBlocks; i++) {
      const covered = srcBlock + i === dstBlock + i || this.o.plan.copies.get(dstBlock + i) === srcBlock + i;
      if (covered) await flushRun(i);
      else if (runStart < 0) runStart = i;
    }
    await flushRun(numBlocks);
  }

  /** Payload op `nextOp` is next: everything before it is durable in the COW. */
  async checkpoint(nextOp: number): Promise<void> {
    await this.cow.addLabel(BigInt(nextOp));
  }

  async finish(): Promise<void> {
    await this.cow.finalize();
    await this.cow.close();
  }

  async abort(): Promise<void> {
    await this.cow.close();
  }

  /** Xor op: the new block XOR the old image's block_size bytes at byte `at`. */
  private async writeXor(block: number, data: Buffer, at: number): Promise<void> {
    if (!this.o.source) throw new VabError('ECORRUPT', `block ${block} is a COW_XOR merge block, but the partition has no old image`);
    const first = Math.floor(at / this.blockSize);
    const old = await this.o.source.read(first, 2);
    const offset = at - first * this.blockSize;
    const xor = Buffer.allocUnsafe(this.blockSize);
    for (let i = 0; i < this.blockSize; i++) xor[i] = data[i] ^ old[offset + i];
    await this.cow.addXorBlocks(block, xor, first, offset);
  }
}
