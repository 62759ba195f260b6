import type { FileHandle } from 'node:fs/promises';
import type { BlockFile, BlockFileProvider } from '../../src/fuse';
import { BufferPool } from '../../src/kernel/buffer-pool';
import { VabError } from '../../src/util/errors';

/** The calls the provider makes on the image; a FileHandle has them all. */
export type ImageHandle = Pick<FileHandle, 'read' | 'write' | 'datasync'>;

/**
 * One block file answered straight from an image: the no-hop baseline the runtime benchmark
 * compares the daemon path with. Reads use pooled memory, as `vab kernel` does, so the baseline
 * pays no allocation the kernel does not.
 */
export function imageProvider(handle: ImageHandle, image: string, file: BlockFile): BlockFileProvider {
  const pool = new BufferPool();
  return {
    list: () => [file],
    lookup: (wanted) => (wanted === file.name ? file : undefined),
    async read(_file, offset, length) {
      // A read may return fewer bytes than asked (a signal, a network filesystem): the rest of a
      // pooled buffer would be an older IO's data, so keep reading until it is full.
      const out = pool.take(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await handle.read(out, done, length - done, offset + done);
        if (bytesRead === 0) {
          pool.give(out);
          throw new VabError('ETRUNCATED', `a read of ${length} bytes at ${offset} found the image ending after ${done} (it shrank since the mount)`, { file: image, offset: offset + done });
        }
        done += bytesRead;
      }
      return out;
    },
    recycle: (data) => pool.give(data),
    async write(_file, offset, data) {
      let done = 0;
      while (done < data.length) done += (await handle.write(data, done, data.length - done, offset + done)).bytesWritten;
    },
    flush: () => handle.datasync(),
    async discard(_file, offset, length) {
      await handle.write(Buffer.alloc(length), 0, length, offset);
    },
  };
}
