import path from 'node:path';
import { promises as fs } from 'node:fs';
import { fsyncDirectory } from '../util/atomic';
import { createProgress } from '../util/progress';
import { openFile } from './file';
import { SnapshotReader } from './snapshot-reader';

export interface ApplyCowOptions {
  /** Size of the new image in bytes; defaults to the larger of the base and the COW's last block. */
  size?: number;
  progress?: boolean;
}

const CHUNK_BLOCKS = 256;

/**
 * Writes the new image a COW describes over `basePath` to `outPath` (offline: the base is only
 * read). The output appears only once complete and durable. Returns the blocks written.
 */
export async function applyCow(cowPath: string, basePath: string, outPath: string, options: ApplyCowOptions = {}): Promise<{ blocks: number; bytes: number }> {
  const snapshot = await SnapshotReader.open(cowPath, basePath, { deviceBytes: options.size });
  const tmpPath = path.join(path.dirname(path.resolve(outPath)), `.${path.basename(outPath)}.tmp-${process.pid}`);
  const progress = options.progress ? createProgress('cow apply', snapshot.blockCount) : undefined;
  try {
    const out = await openFile(tmpPath, 'w+');
    try {
      const bs = snapshot.blockSize;
      // Two buffers: the next chunk is read while the previous one is being written.
      const buffers = [Buffer.allocUnsafe(CHUNK_BLOCKS * bs), Buffer.allocUnsafe(CHUNK_BLOCKS * bs)];
      let pendingWrite: Promise<void> = Promise.resolve();
      for (let first = 0, turn = 0; first < snapshot.blockCount; first += CHUNK_BLOCKS, turn ^= 1) {
        const n = Math.min(CHUNK_BLOCKS, snapshot.blockCount - first);
        const buffer = buffers[turn];
        await snapshot.readBlocks(first, n, buffer);
        await pendingWrite;
        pendingWrite = out.write(buffer, 0, n * bs, first * bs);
        progress?.advance(n);
      }
      await pendingWrite;
      await out.truncate(snapshot.byteLength);
      await out.sync();
    } finally {
      await out.close();
    }
    await fs.rename(tmpPath, outPath);
    await fsyncDirectory(path.dirname(path.resolve(outPath)));
    return { blocks: snapshot.blockCount, bytes: snapshot.byteLength };
  } catch (err) {
    await fs.rm(tmpPath, { force: true });
    throw err;
  } finally {
    progress?.finish();
    await snapshot.close();
  }
}
