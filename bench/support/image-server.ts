/**
 * The runtime benchmark's no-hop baseline: the same FUSE server as `vab kernel`, answering block
 * file IO straight from an image file instead of forwarding it to a daemon. Runs as a child
 * process (the benchmark reads the mount, so it must not serve it).
 *   node image-server.js MOUNTPOINT NAME IMAGE   → prints "ready" once mounted; SIGTERM unmounts.
 */
import { promises as fsp } from 'node:fs';
import { mountBlockFiles } from '../../src/fuse';
import { imageProvider } from './image-provider';

async function main(): Promise<void> {
  const [mountpoint, name, image] = process.argv.slice(2);
  const handle = await fsp.open(image, 'r+');
  const { size } = await handle.stat();
  const provider = imageProvider(handle, image, { id: 1, name, size, writable: true });
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
