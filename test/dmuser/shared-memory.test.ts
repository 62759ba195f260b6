import { closeSync, promises as fs } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { SharedArea, nativeSharedMemory, sharedMemoryProblem } from '../../src/dmuser/shared-memory';

/** The native module CI builds (scripts/build-native.sh): without it the shared transport is off. */
const api = nativeSharedMemory();

describe('native shared memory', () => {
  it('is built (npm run build compiles it with g++ against Node\'s headers)', () => {
    expect(sharedMemoryProblem()).toBeUndefined();
    expect(api).toBeDefined();
  });

  it('maps one sealed memfd twice onto the same bytes, and nobody can resize it', async () => {
    const fd = api!.createSealed(64 * 1024);
    const first = Buffer.from(api!.mapSealed(fd));
    // The daemon's way in: the kernel's descriptor through /proc.
    const other = await fs.open(`/proc/${process.pid}/fd/${fd}`, 'r+');
    try {
      const second = Buffer.from(api!.mapSealed(other.fd));
      expect(second.length).toBe(64 * 1024);
      first.write('through the kernel', 100);
      expect(second.toString('utf8', 100, 118)).toBe('through the kernel');
      // Sealed: a peer cannot shrink it under the other's mapping (that would fault on access).
      await expect(other.truncate(4096)).rejects.toMatchObject({ code: 'EPERM' });
      await expect(other.truncate(1 << 20)).rejects.toMatchObject({ code: 'EPERM' });
    } finally {
      await other.close();
      closeSync(fd);
    }
  });

  it('refuses to map anything but a sealed memfd, and bad sizes', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vab-shm-'));
    const file = await fs.open(path.join(dir, 'plain'), 'w+');
    try {
      await file.truncate(4096);
      expect(() => api!.mapSealed(file.fd)).toThrow(/not a sealable memory file/);
      expect(() => api!.mapSealed(-1)).toThrow(/bad descriptor/);
      expect(() => api!.createSealed(0)).toThrow(/size out of range/);
      expect(() => api!.createSealed(2 ** 31)).toThrow(/size out of range/);
      expect(() => (api!.mapSealed as (fd: unknown) => ArrayBuffer)('3')).toThrow(/expected a number/);
    } finally {
      await file.close();
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('names the process at the other end of a unix socket', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vab-shm-'));
    const server = net.createServer();
    try {
      const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
      await new Promise<void>((resolve) => server.listen(path.join(dir, 's'), resolve));
      const client = net.createConnection(path.join(dir, 's'));
      const peer = await accepted;
      const fd = (peer as unknown as { _handle: { fd: number } })._handle.fd;
      expect(api!.peerPid(fd)).toBe(process.pid);
      client.destroy();
      peer.destroy();
    } finally {
      server.close();
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});

describe('native readCached (a pread that never waits for the disk)', () => {
  it('reads what the page cache holds into the range asked for, and stops at the end of the file', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vab-cached-'));
    const file = path.join(dir, 'image');
    const content = Buffer.from(Array.from({ length: 10_000 }, (_, i) => i & 0xff));
    await fs.writeFile(file, content);
    const handle = await fs.open(file, 'r');
    try {
      // Just written: in the page cache.
      const out = Buffer.alloc(8192, 0xee);
      expect(api!.readCached(handle.fd, out, 100, 4096, 1000)).toBe(4096);
      expect(out.subarray(100, 4196).equals(content.subarray(1000, 5096))).toBe(true);
      expect(out[99]).toBe(0xee);
      expect(out[4196]).toBe(0xee);
      expect(api!.readCached(handle.fd, out, 0, 8192, 8000)).toBe(2000);
      expect(api!.readCached(handle.fd, out, 0, 8192, 20_000)).toBe(0);
      expect(() => api!.readCached(handle.fd, out, 4096, 4097, 0)).toThrow(/range outside the buffer/);
      expect(() => api!.readCached(handle.fd, out, -1, 10, 0)).toThrow(/range outside the buffer/);
      expect(() => (api!.readCached as (...a: unknown[]) => number)(handle.fd, 'text', 0, 1, 0)).toThrow(/expected a Buffer/);
      expect(() => api!.readCached(-1, out, 0, 10, 0)).toThrow(/range outside the buffer|EBADF|Bad file/);
    } finally {
      await handle.close();
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});

describe('SharedArea (the kernel side of a channel\'s memory)', () => {
  it('lends power-of-two regions, reuses a released one, and says when it is full', () => {
    const area = SharedArea.create(4 * 1024 * 1024)!;
    try {
      const a = area.allocate(1 << 20)!;
      const b = area.allocate(4096)!;
      const c = area.allocate(5000)!;
      expect([a, b, c]).toEqual([
        { offset: 0, length: 1 << 20 },
        { offset: 1 << 20, length: 4096 },
        { offset: (1 << 20) + 4096, length: 5000 },
      ]);
      // Regions never overlap while lent.
      area.view(a).fill(1);
      area.view(b).fill(2);
      expect(area.view(a).every((x) => x === 1)).toBe(true);
      area.release(a);
      expect(area.allocate(700_000)).toEqual({ offset: 0, length: 700_000 });
      expect(area.allocate(4 * 1024 * 1024)).toBeUndefined();
      expect(area.allocate(2 << 20)).toEqual({ offset: (1 << 20) + 12288, length: 2 << 20 });
      expect(area.allocate(1 << 20)).toBeUndefined();
      expect(area.allocate(4096)).toEqual({ offset: (3 << 20) + 12288, length: 4096 });
    } finally {
      area.close();
    }
    expect(area.allocate(4096)).toBeUndefined();
  });

  it('serves a small answer from a free larger region once carved up, and never lends a region twice', () => {
    const area = SharedArea.create(64 * 1024)!;
    try {
      const big = area.allocate(32 * 1024)!;
      const small = [area.allocate(4096)!, area.allocate(4096)!];
      expect(area.allocate(16 * 1024)).toEqual({ offset: 40 * 1024, length: 16 * 1024 });
      expect(area.allocate(16 * 1024)).toBeUndefined();
      expect([area.allocate(4096)?.offset, area.allocate(4096)?.offset]).toEqual([56 * 1024, 60 * 1024]);
      area.release(big);
      // No room to grow: the free 32 KiB region serves a 4 KiB answer whole.
      expect(area.allocate(4096)).toEqual({ offset: 0, length: 4096 });
      expect(area.allocate(4096)).toBeUndefined();
      // A second release of the same region is ignored: it is lent again only once.
      area.release({ offset: 0, length: 4096 });
      area.release({ offset: 0, length: 4096 });
      expect(area.allocate(32 * 1024)).toEqual({ offset: 0, length: 32 * 1024 });
      expect(area.allocate(32 * 1024)).toBeUndefined();
      expect(small.map((r) => r.offset)).toEqual([32 * 1024, 36 * 1024]);
    } finally {
      area.close();
    }
  });
});
