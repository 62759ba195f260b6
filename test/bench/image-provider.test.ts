import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { imageProvider, ImageHandle } from '../../bench/support/image-provider';
import type { BlockFile, FileRequestContext } from '../../src/fuse';

/** The runtime benchmark's no-hop server must answer exactly what the image holds, however the reads come back. */
const ctx = {} as FileRequestContext;

/** A real image file whose reads return at most `chunk` bytes each, as a signal or a network filesystem may. */
function shortReads(handle: FileHandle, chunk: number): ImageHandle & { calls: number } {
  const layer = {
    calls: 0,
    read: (async (buffer: Buffer, offset: number, length: number, position: number) => {
      layer.calls++;
      return handle.read(buffer, offset, Math.min(length, chunk), position);
    }) as FileHandle['read'],
    write: handle.write.bind(handle),
    datasync: handle.datasync.bind(handle),
  };
  return layer;
}

describe('bench image provider', () => {
  let dir: string;
  let image: string;
  let handle: FileHandle;
  const content = randomBytes(256 * 1024);

  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vab-image-provider-'));
    image = path.join(dir, 'image.img');
    await fs.writeFile(image, content);
    handle = await fs.open(image, 'r+');
  });
  afterAll(async () => {
    await handle?.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('fills the whole reply from short reads, never leaving an earlier IO’s bytes in a reused buffer', async () => {
    const layer = shortReads(handle, 1000);
    const file: BlockFile = { id: 1, name: 'bench', size: content.length, writable: true };
    const provider = imageProvider(layer, image, file);
    // The first reply's memory goes back to the pool and is lent again for the second read.
    const first = await provider.read(file, 0, 65536, ctx);
    expect(first.equals(content.subarray(0, 65536))).toBe(true);
    provider.recycle?.(first);
    const calls = layer.calls;
    const second = await provider.read(file, 100_000, 65536, ctx);
    expect(second.buffer).toBe(first.buffer);
    expect(second.length).toBe(65536);
    expect(second.equals(content.subarray(100_000, 165_536))).toBe(true);
    expect(layer.calls - calls).toBe(Math.ceil(65536 / 1000));
  });

  it('fails with the image and offset when the image ends before the block file does', async () => {
    const file: BlockFile = { id: 1, name: 'bench', size: content.length + 8192, writable: true };
    const provider = imageProvider(shortReads(handle, 3000), image, file);
    await expect(provider.read(file, content.length - 4096, 8192, ctx)).rejects.toMatchObject({
      code: 'ETRUNCATED',
      message: `${image} at offset ${content.length}: a read of 8192 bytes at ${content.length - 4096} found the image ending after 4096 (it shrank since the mount)`,
    });
  });

  it('writes every byte even when the file layer writes in pieces', async () => {
    const piecewise: ImageHandle = {
      read: handle.read.bind(handle),
      write: (async (data: Buffer, offset: number, length: number, position: number) =>
        handle.write(data, offset, Math.min(length, 777), position)) as FileHandle['write'],
      datasync: handle.datasync.bind(handle),
    };
    const file: BlockFile = { id: 1, name: 'bench', size: content.length, writable: true };
    const data = randomBytes(10_000);
    await imageProvider(piecewise, image, file).write(file, 4096, data, ctx);
    expect((await fs.readFile(image)).subarray(4096, 14_096).equals(data)).toBe(true);
  });
});
