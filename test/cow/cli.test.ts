import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { RunResult } from '../../src/util/exec';
import { vab } from '../support/cli';
import { textLike } from './helpers';

const BS = 4096;

function cli(...args: string[]): Promise<RunResult> {
  return vab(args);
}

let dir: string;
const file = (name: string) => path.join(dir, name);

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vab-cow-cli-'));
  const old = textLike(64 * BS, 1);
  const next = Buffer.from(old);
  old.copy(next, 0, 40 * BS, 44 * BS); // copies
  next.fill(0, 10 * BS, 12 * BS); // zeros
  textLike(8 * BS, 2).copy(next, 20 * BS); // replace: two 16 KiB units
  next.write('small edit', 50 * BS + 7); // xor candidate
  await fs.writeFile(file('old.img'), old);
  await fs.writeFile(file('new.img'), next);
});
afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

describe('vab cow', () => {
  it('creates, inspects and applies a COW', async () => {
    const created = await cli('cow', 'create', '--base', file('old.img'), '--target', file('new.img'), '-o', file('x.cow'), '--compression', 'lz4', '--compression-factor', '16384', '--xor');
    expect(created).toMatchObject({ code: 0 });
    expect(created.stdout).toMatch(/copy 4, xor 1, zero 2, replace 2\b/);

    const inspected = await cli('cow', 'inspect', file('x.cow'), '--json', '--ops');
    expect(inspected.code).toBe(0);
    const report = JSON.parse(inspected.stdout);
    expect(report).toMatchObject({ valid: true, compression: 'lz4', opCounts: { copy: 4, xor: 1, zero: 2, replace: 2, total: 9 } });
    expect(report.header).toMatchObject({ majorVersion: 3, maxCompressionSize: 16384, sequenceDataCount: 5 });
    expect(report.ops).toHaveLength(9);
    expect(report.mergeOrder).toMatchObject({ total: 9, ordered: 5, consistent: true });

    const text = await cli('cow', 'inspect', file('x.cow'));
    expect(text.stdout).toMatch(/Copy ops: 4\n/);
    expect(text.stdout).toMatch(/Merge sequence is consistent/);

    expect((await cli('cow', 'apply', file('x.cow'), '--base', file('old.img'), '-o', file('out.img'))).code).toBe(0);
    expect((await fs.readFile(file('out.img'))).equals(await fs.readFile(file('new.img')))).toBe(true);
    expect((await cli('cow', 'apply', file('x.cow'), '--base', file('old.img'), '-o', file('durable.img'), '--fsync')).code).toBe(0);
    expect((await fs.readFile(file('durable.img'))).equals(await fs.readFile(file('new.img')))).toBe(true);
  });

  it('documents --fsync in the help of cow apply', async () => {
    const help = await cli('cow', 'apply', '--help');
    expect(help.stdout).toMatch(/--fsync\s+durable \(fsync before rename\)/);
  });

  it('reports a malformed COW with its file and offset and exits non-zero', async () => {
    const bad = await fs.readFile(file('x.cow'));
    bad.writeUInt16LE(9, 8);
    await fs.writeFile(file('bad.cow'), bad);
    const inspected = await cli('cow', 'inspect', file('bad.cow'));
    expect(inspected.code).toBe(1);
    expect(inspected.stdout).toContain(`Valid: no: ${file('bad.cow')} at offset 8: unknown COW version 9.0`);
    const applied = await cli('cow', 'apply', file('bad.cow'), '--base', file('old.img'), '-o', file('never.img'));
    expect(applied.code).toBe(1);
    expect(applied.stderr).toMatch(/bad\.cow at offset 8: .*\[EUNSUPPORTED\]/);
    await expect(fs.stat(file('never.img'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('refuses bad flags', async () => {
    const result = await cli('cow', 'create', '--base', file('old.img'), '--target', file('new.img'), '-o', file('y.cow'), '--compression-factor', '12288');
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/compression factor 12288/);
  });
});
