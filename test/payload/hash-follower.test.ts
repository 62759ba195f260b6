import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { isVabError } from '../../src/util/errors';
import { HashFollowerPool } from '../../src/payload/hash-follower';
import { randomBytes, tempDir } from './support/images';

const sha = (data: Buffer) => createHash('sha256').update(data).digest();

describe('HashFollower hashes a file as it settles', () => {
  let dir: string;
  const pool = new HashFollowerPool();
  beforeAll(async () => {
    dir = await tempDir('vab-hash-follower-');
  });
  afterAll(async () => {
    await pool.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('advances in steps while the file grows, then finishes with the whole hash', async () => {
    const file = path.join(dir, 'grow.img');
    const data = randomBytes(3, 9 * 1024 * 1024 + 17);
    const handle = await fs.open(file, 'w+');
    const follower = pool.follow(file);
    for (let at = 0; at < data.length; at += 1024 * 1024) {
      const end = Math.min(data.length, at + 1024 * 1024);
      await handle.write(data, at, end - at, at);
      follower.advance(end);
      follower.advance(at); // going backwards is ignored
    }
    await handle.close();
    expect((await follower.finish(data.length)).equals(sha(data))).toBe(true);
  });

  it('counts bytes past the end of the file as zeros (an image that ends in a hole)', async () => {
    const file = path.join(dir, 'short.img');
    const data = randomBytes(4, 5000);
    await fs.writeFile(file, data);
    const follower = pool.follow(file);
    const whole = Buffer.concat([data, Buffer.alloc(3 * 4096)]);
    expect((await follower.finish(whole.length)).equals(sha(whole))).toBe(true);
  });

  it('two files followed at once do not mix', async () => {
    const [a, b] = [randomBytes(5, 300000), randomBytes(6, 200000)];
    await fs.writeFile(path.join(dir, 'a.img'), a);
    await fs.writeFile(path.join(dir, 'b.img'), b);
    const fa = pool.follow(path.join(dir, 'a.img'));
    const fb = pool.follow(path.join(dir, 'b.img'));
    fa.advance(100000);
    fb.advance(150000);
    fa.advance(250000);
    const [ha, hb] = await Promise.all([fa.finish(a.length), fb.finish(b.length)]);
    expect(ha.equals(sha(a))).toBe(true);
    expect(hb.equals(sha(b))).toBe(true);
  });

  it('bytes fed from memory and bytes read back make one hash, in any mix', async () => {
    const file = path.join(dir, 'mixed.img');
    const data = randomBytes(7, 6 * 1024 * 1024 + 4096);
    await fs.writeFile(file, data);
    const follower = pool.follow(file);
    const piece = (from: number, to: number) => Buffer.from(data.subarray(from, to)); // owns its memory, as fed buffers must
    const MiB = 1024 * 1024;
    expect(follower.wants(0)).toBe(true);
    follower.feed(0, piece(0, MiB));
    expect(follower.wants(0)).toBe(false);
    follower.feed(3 * MiB, piece(3 * MiB, 4 * MiB)); // not next: ignored, read back later
    follower.advance(2 * MiB); // read back
    follower.feed(2 * MiB, piece(2 * MiB, 3 * MiB));
    follower.advance(5 * MiB);
    expect((await follower.finish(data.length)).equals(sha(data))).toBe(true);
  });

  it('a file it cannot read fails finish with EIO naming the file', async () => {
    const file = path.join(dir, 'missing.img');
    const follower = pool.follow(file);
    follower.advance(4096);
    const err = await follower.finish(8192).catch((e: Error) => e);
    expect(isVabError(err, 'EIO')).toBe(true);
    expect((err as Error).message).toContain(`cannot read ${file} back to hash it`);
  });
});
