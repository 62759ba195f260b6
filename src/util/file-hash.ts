import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';

/**
 * SHA-256 (hex) of a file, or of its first `length` bytes (a grown base image is compared at the
 * new image's size). The file is closed before this resolves, so an unmount right after never
 * finds it busy.
 */
export async function sha256File(file: string, length?: number): Promise<string> {
  const hash = createHash('sha256');
  const handle = await fs.open(file, 'r');
  try {
    const chunk = Buffer.allocUnsafe(1 << 20);
    let left = length ?? Number.POSITIVE_INFINITY;
    while (left > 0) {
      const { bytesRead } = await handle.read(chunk, 0, Math.min(chunk.length, left), null);
      if (bytesRead === 0) break;
      hash.update(chunk.subarray(0, bytesRead));
      left -= bytesRead;
    }
  } finally {
    await handle.close();
  }
  return hash.digest('hex');
}
