import { randomInt } from 'node:crypto';
import { promises as fsp } from 'node:fs';

const MiB = 1024 * 1024;
const BLOCK = 4096;

/** Throughput of one reader at queue depth 1: what the runtime benches compare configurations by. */
export interface ReadFigures {
  seqMiBps: number;
  randIops: number;
}

/** Sequential 1 MiB reads over the whole file, then `randomReads` 4 KiB reads at random blocks. */
export async function measureReads(file: string, size: number, randomReads: number): Promise<ReadFigures> {
  const handle = await fsp.open(file, 'r');
  try {
    const big = Buffer.allocUnsafe(MiB);
    let started = performance.now();
    for (let offset = 0; offset < size; offset += MiB) await handle.read(big, 0, MiB, offset);
    const seqMiBps = size / MiB / ((performance.now() - started) / 1000);
    const small = Buffer.allocUnsafe(BLOCK);
    started = performance.now();
    for (let i = 0; i < randomReads; i++) await handle.read(small, 0, BLOCK, randomInt(size / BLOCK) * BLOCK);
    return { seqMiBps, randIops: randomReads / ((performance.now() - started) / 1000) };
  } finally {
    await handle.close();
  }
}
