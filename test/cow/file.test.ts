import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openFile } from '../../src/cow/file';

describe('openFile', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vab-cow-file-'));
  });
  afterAll(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('close waits for reads still running, so none of them reads a file opened after it', async () => {
    const first = path.join(dir, 'first');
    const second = path.join(dir, 'second');
    await fs.writeFile(first, Buffer.alloc(8 << 20, 0x11));
    await fs.writeFile(second, Buffer.alloc(8 << 20, 0x22));
    const file = await openFile(first, 'r');
    const buffers = Array.from({ length: 64 }, () => Buffer.alloc(128 << 10));
    const reads = buffers.map((b, i) => file.read(b, 0, b.length, i * b.length));
    await file.close();
    // The descriptor number is free now; the next open usually gets it back.
    const other = await openFile(second, 'r');
    const counts = await Promise.all(reads);
    await other.close();
    expect(counts.every((n) => n === 128 << 10)).toBe(true);
    expect(buffers.every((b) => b.every((byte) => byte === 0x11))).toBe(true);
  });
});
