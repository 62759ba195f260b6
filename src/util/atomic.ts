import { promises as fs } from 'node:fs';
import path from 'node:path';

/**
 * Builds `file` under a hidden temporary name beside it and renames it into place only when
 * `produce` has finished, then fsyncs the directory: a crash or an error leaves either the old
 * file or nothing at `file`, never a half-written one. `produce` must make its own writes durable
 * (fsync) before it returns; on error the temporary file is removed. With `durable: false` the
 * directory is not fsynced either: an error still leaves no half-written file, a crash may.
 */
export async function replaceFileAtomically<T>(file: string, produce: (temporaryPath: string) => Promise<T>, options: { durable?: boolean } = {}): Promise<T> {
  const target = path.resolve(file);
  const dir = path.dirname(target);
  const temporaryPath = path.join(dir, `.${path.basename(target)}.tmp-${process.pid}-${Date.now()}`);
  try {
    const result = await produce(temporaryPath);
    await fs.rename(temporaryPath, target);
    if (options.durable ?? true) await fsyncDirectory(dir);
    return result;
  } catch (err) {
    await fs.rm(temporaryPath, { force: true });
    throw err;
  }
}

/** Replaces `file` with `data` atomically and durably (see replaceFileAtomically). */
export async function writeFileAtomic(file: string, data: Uint8Array): Promise<void> {
  await replaceFileAtomically(file, async (temporaryPath) => {
    const handle = await fs.open(temporaryPath, 'w', 0o644);
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
  });
}

export async function fsyncDirectory(dir: string): Promise<void> {
  const handle = await fs.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
