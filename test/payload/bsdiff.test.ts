import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import fc from 'fast-check';
import { bsdiff, bsdiffStreams, longestMatch, suffixArray } from '../../src/payload/bsdiff';
import { BSDF2_MAGIC, bspatch, decodePatch, encodeBsdf2, readOfft, writeOfft } from '../../src/payload/bsdiff-format';

const run = promisify(execFile);

/** Bytes that look like a filesystem image: runs of text, zeros, counters and noise. */
function sampleFile(seed: number, size: number): Buffer {
  const out = Buffer.alloc(size);
  let x = seed;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    const region = (i >> 10) % 4;
    out[i] = region === 0 ? 0 : region === 1 ? 'vab payload '.charCodeAt(i % 12) : region === 2 ? i & 0xff : x >>> 24;
  }
  return out;
}

/** The same file with some bytes changed, a run inserted and a run removed. */
function edited(old: Buffer, seed: number): Buffer {
  const copy = Buffer.from(old);
  for (let i = seed % 97; i < copy.length; i += 997) copy[i] ^= 0x5a;
  const cut = Math.floor(copy.length / 3);
  return Buffer.concat([copy.subarray(0, cut), Buffer.from('inserted text '.repeat(40)), copy.subarray(cut + 500)]);
}

describe('bsdiff integers', () => {
  it('are sign-magnitude little-endian, not two\'s complement', () => {
    const golden = Buffer.from([0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80]); // -5
    expect(readOfft(golden, 0)).toBe(-5);
    const out = Buffer.alloc(8);
    writeOfft(out, 0, -5);
    expect(out.equals(golden)).toBe(true);
    writeOfft(out, 0, 0x0102030405);
    expect([...out]).toEqual([0x05, 0x04, 0x03, 0x02, 0x01, 0x00, 0x00, 0x00]);
  });
});

describe('BSDF2 container', () => {
  // One control entry (diff 3, extra 2, seek -1), uncompressed streams, new size 5.
  const golden = Buffer.from(
    [
      '42 53 44 46 32 00 00 00', // "BSDF2", compressors none/none/none
      '18 00 00 00 00 00 00 00', // control length 24
      '03 00 00 00 00 00 00 00', // diff length 3
      '05 00 00 00 00 00 00 00', // new size 5
      '03 00 00 00 00 00 00 00', // control: diff 3
      '02 00 00 00 00 00 00 00', //          extra 2
      '01 00 00 00 00 00 00 80', //          seek -1
      '01 02 03', // diff bytes
      '78 79', // extra bytes "xy"
    ]
      .join(' ')
      .replace(/ /g, ''),
    'hex',
  );

  it('encodes to and decodes from the golden bytes', async () => {
    const control = [{ diff: 3, extra: 2, seek: -1 }];
    expect((await encodeBsdf2(control, Buffer.from([1, 2, 3]), Buffer.from('xy'), 5, 'none')).equals(golden)).toBe(true);
    expect(await decodePatch(golden)).toEqual({ format: 'BSDF2', newSize: 5, control, diff: Buffer.from([1, 2, 3]), extra: Buffer.from('xy') });
    // old "abc" + diff 1,2,3 = "bdf", then the extra bytes.
    expect((await bspatch(Buffer.from('abc'), golden)).toString()).toBe('bdfxy');
  });

  it('refuses an unknown compressor id and a truncated stream', async () => {
    const bad = Buffer.from(golden);
    bad[6] = 9;
    await expect(decodePatch(bad)).rejects.toThrow('BSDF2 compressor id 9 at byte 6 is unknown');
    await expect(decodePatch(golden.subarray(0, 50))).rejects.toThrow(/bsdiff header is inconsistent: control 24, diff 3, new size 5, patch 50 bytes/);
    await expect(decodePatch(golden.subarray(0, 60))).rejects.toThrow('uncompressed bsdiff stream has 1 bytes, expected 2');
  });
});

describe('suffix array', () => {
  it('orders every suffix, checked against a naive sort', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 300 }).map((a) => Buffer.from(a.map((b) => b % 4))), (s) => {
        const naive = [...Array(s.length).keys()].sort((a, b) => Buffer.compare(s.subarray(a), s.subarray(b)));
        expect([...suffixArray(s)]).toEqual(naive);
      }),
      { numRuns: 200 },
    );
  });
});

describe('longest match search', () => {
  it('finds the full match in repetitive data, where a prefix-is-equal comparison finds almost none', () => {
    // Every suffix of a zero run is a prefix of every longer one; ordering them wrongly sends the
    // binary search to the shortest suffixes and makes the diff quadratic on zero-filled images.
    const old = Buffer.alloc(64 * 1024);
    const neu = Buffer.concat([Buffer.alloc(1000), Buffer.from('hello'), Buffer.alloc(3000)]);
    const sa = suffixArray(old);
    expect(longestMatch(sa, old, neu, 0).len).toBe(1000);
    expect(longestMatch(sa, old, neu, 1005).len).toBe(3000);
    expect(longestMatch(sa, old, neu, 1001).len).toBe(0);
  });
});

describe('bspatch against the Debian bsdiff tool (BSDIFF40)', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vab-bsdiff-'));
  });
  afterAll(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it.each([
    ['similar files', 1, 64 * 1024],
    ['a small file', 2, 300],
    ['a larger file', 3, 256 * 1024],
  ])('reproduces the new file for %s', async (_what, seed, size) => {
    const old = sampleFile(seed, Math.max(size, 1000));
    const neu = edited(old, seed).subarray(0, size);
    await fs.writeFile(path.join(dir, 'old'), old);
    await fs.writeFile(path.join(dir, 'new'), neu);
    await run('bsdiff', [path.join(dir, 'old'), path.join(dir, 'new'), path.join(dir, 'patch')]);
    const patch = await fs.readFile(path.join(dir, 'patch'));
    expect(patch.subarray(0, 8).toString()).toBe('BSDIFF40');
    expect((await bspatch(old, patch)).equals(neu)).toBe(true);
  });

  it('applies a patch to a completely different file of another size', async () => {
    const old = sampleFile(7, 5000);
    const neu = sampleFile(8, 9000).reverse();
    await fs.writeFile(path.join(dir, 'old'), old);
    await fs.writeFile(path.join(dir, 'new'), neu);
    await run('bsdiff', [path.join(dir, 'old'), path.join(dir, 'new'), path.join(dir, 'patch')]);
    expect((await bspatch(old, await fs.readFile(path.join(dir, 'patch')))).equals(neu)).toBe(true);
  });

  it('refuses a corrupt patch with a clear error', async () => {
    const old = sampleFile(1, 4096);
    await fs.writeFile(path.join(dir, 'old'), old);
    await fs.writeFile(path.join(dir, 'new'), edited(old, 1));
    await run('bsdiff', [path.join(dir, 'old'), path.join(dir, 'new'), path.join(dir, 'patch')]);
    const patch = await fs.readFile(path.join(dir, 'patch'));
    const broken = Buffer.from(patch);
    broken[40] ^= 0xff;
    await expect(bspatch(old, broken)).rejects.toThrow(/bz2|bsdiff/);
    await expect(bspatch(old, patch.subarray(0, 20))).rejects.toThrow(/header needs 32/);
    await expect(bspatch(old, Buffer.from('NOTADIFF'.repeat(5)))).rejects.toThrow(/not a bsdiff patch/);
  });
});

describe('our bsdiff (BSDF2)', () => {
  it('round-trips through bspatch, and is much smaller than the new file for similar inputs', async () => {
    const old = sampleFile(11, 200 * 1024);
    const neu = edited(old, 11);
    const patch = await bsdiff(old, neu);
    expect(patch.subarray(0, 5).equals(BSDF2_MAGIC)).toBe(true);
    expect([...patch.subarray(5, 8)]).toEqual([2, 2, 2]);
    expect((await bspatch(old, patch)).equals(neu)).toBe(true);
    expect(patch.length).toBeLessThan(neu.length / 10);
  });

  it('round-trips arbitrary inputs (property)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 2000 }), fc.uint8Array({ maxLength: 2000 }), async (a, b) => {
        const old = Buffer.from(a.map((x) => x % 8));
        const neu = Buffer.from(b.map((x) => x % 8));
        const { control, diff, extra } = bsdiffStreams(old, neu);
        expect(control.reduce((n, c) => n + c.diff + c.extra, 0)).toBe(neu.length);
        expect(diff.length + extra.length).toBe(neu.length);
        expect((await bspatch(old, await bsdiff(old, neu, 'none'))).equals(neu)).toBe(true);
      }),
      { numRuns: 60 },
    );
  });

  it('writes bz2 streams that decode back', async () => {
    const old = sampleFile(21, 20000);
    const neu = edited(old, 21);
    const patch = await bsdiff(old, neu, 'bz2');
    expect([...patch.subarray(5, 8)]).toEqual([1, 1, 1]);
    const decoded = await decodePatch(patch);
    expect(decoded.newSize).toBe(neu.length);
    expect((await bspatch(old, patch)).equals(neu)).toBe(true);
  });

  it('refuses a control stream that writes more than the header says', async () => {
    const patch = await bsdiff(sampleFile(1, 2000), sampleFile(2, 2000), 'none');
    writeOfft(patch, 24, 1999);
    await expect(bspatch(sampleFile(1, 2000), patch)).rejects.toMatchObject({ code: 'ECORRUPT' });
  });
});
