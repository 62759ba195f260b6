import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeFileAtomic } from '../../src/util/atomic';

describe('writeFileAtomic', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'vab-atomic-'));
  });
  afterAll(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  it('replaces the content and leaves no temporary file beside it', async () => {
    const file = path.join(dir, 'state');
    await writeFileAtomic(file, Buffer.from('old'));
    await writeFileAtomic(file, Buffer.from('new content'));
    expect((await fsp.readFile(file)).toString()).toBe('new content');
    expect(await fsp.readdir(dir)).toEqual(['state']);
  });

  it('leaves the old content when the new one cannot be written into place', async () => {
    const file = path.join(dir, 'blocked');
    await fsp.mkdir(file); // rename over a directory fails
    await expect(writeFileAtomic(file, Buffer.from('x'))).rejects.toThrow();
    expect((await fsp.stat(file)).isDirectory()).toBe(true);
    expect((await fsp.readdir(dir)).sort()).toEqual(['blocked', 'state']);
  });
});
