import { randomBytes, randomInt } from 'node:crypto';
import { promises as fsp } from 'node:fs';

const MiB = 1024 * 1024;
const BS = 4096;

/**
 * OLD and NEW images of `size` bytes for the update benches: about 30% of NEW's blocks rewritten
 * (half fresh bytes, half a pattern: compressible like real data), 5% copied from elsewhere in
 * OLD, 5% zeroed.
 */
export async function writeUpdateImages(oldPath: string, newPath: string, size: number): Promise<void> {
  const oldFile = await fsp.open(oldPath, 'w');
  const newFile = await fsp.open(newPath, 'w');
  try {
    for (let offset = 0; offset < size; offset += MiB) {
      const old = randomBytes(MiB);
      const next = Buffer.from(old);
      for (let b = 0; b < MiB / BS; b++) {
        const kind = randomInt(100);
        const at = b * BS;
        if (kind < 30) {
          randomBytes(BS / 2).copy(next, at);
          next.fill(0x20, at + BS / 2, at + BS);
        } else if (kind < 35) {
          old.copy(next, at, ((b + 3) % (MiB / BS)) * BS, ((b + 3) % (MiB / BS)) * BS + BS);
        } else if (kind < 40) {
          next.fill(0, at, at + BS);
        }
      }
      await oldFile.write(old, 0, MiB, offset);
      await newFile.write(next, 0, MiB, offset);
    }
  } finally {
    await oldFile.close();
    await newFile.close();
  }
}

