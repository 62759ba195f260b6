/**
 * The runtime benchmark's no-hop baseline: the same FUSE server as `vab kernel`, answering block
 * file IO straight from an image file instead of forwarding it to a daemon. Runs as a child
 * process (the benchmark reads the mount, so it must not serve it).
 *   node image-server.js MOUNTPOINT NAME IMAGE   → prints "ready" once mounted; SIGTERM unmounts.
 */
import { promises as fsp } from 'node:fs';
import { BlockFile, BlockFileProvider, mountBlockFiles } from '../../src/fuse';
import { BufferPool } from '../../src/kernel/buffer-pool';

async function main(): Promise<void> {
  const [mountpoint, name, image] = process.argv.slice(2);
  const handle = await fsp.open(image, 'r+');
  const { size } = await handle.stat();
  const pool = new BufferPool();
  const file: BlockFile = { id: 1, name, size, writable: true };
  const provider: BlockFileProvider = {
    list: () => [file],
    lookup: (wanted) => (wanted === name ? file : undefined),
    async read(_file, offset, length) {
      const out = pool.take(length);
      await handle.read(out, 0, length, offset);
      return out;
    },
    recycle: (data) => pool.give(data),
    async write(_file, offset, data) {
      await handle.write(data, 0, data.length, offset);
    },
    flush: () => handle.datasync(),
    async discard(_file, offset, length) {
      await handle.write(Buffer.alloc(length), 0, length, offset);
    },
  };
  const session = await mountBlockFiles({ mountpoint, provider });
  process.stdout.write(`ready connection=${session.connection}\n`);
  process.on('SIGTERM', () => void session.unmount());
  await session.closed;
  await handle.close();
}

main().catch((err) => {
  process.stderr.write(`image-server: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
