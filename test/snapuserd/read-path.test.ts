import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import winston from 'winston';
import { Writable } from 'node:stream';
import { SnapshotReader } from '../../src/cow/snapshot-reader';
import { COMPRESSION_NAMES, CowOpType } from '../../src/cow/format';
import { CowReader } from '../../src/cow/reader';
import { MemoryFile } from '../cow/helpers';
import { DmUserFlag, DmUserRequest, SECTOR_SIZE } from '../../src/dmuser/constants';
import { memoryChannelOpener } from '../../src/dmuser/testing/memory-channel';
import { resolveParams } from '../../src/kernel/params';
import { Target } from '../../src/kernel/target';
import { HandlerRegistry } from '../../src/snapuserd/registry';
import { nullLogger } from '../../src/util/log';
import { BS, CowCase, v2Case, v3Case, writeCase } from './support/cows';

jest.setTimeout(60_000);

/** A logger whose JSON lines land in `lines`. */
function capturingLogger(lines: Array<Record<string, unknown>>): winston.Logger {
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  return winston.createLogger({ format: winston.format.json(), transports: [new winston.transports.Stream({ stream })] });
}

/** A handler served over in-memory channels to the real kernel Target: no FUSE, no sockets. */
async function serve(dir: string, name: string, c: CowCase, options: { channels?: number; logger?: winston.Logger } = {}) {
  const files = await writeCase(dir, name, c);
  const targets = new Map<string, Target>();
  const registry = new HandlerRegistry({ runDir: dir, channels: options.channels ?? 3, logger: options.logger ?? nullLogger, opener: memoryChannelOpener((n) => targets.get(n)) });
  const sectors = await registry.init(name, files.cow, files.base, files.base);
  const target = new Target(name, sectors, resolveParams({ max_io_bytes: 4 << 20 }), nullLogger);
  targets.set(name, target);
  await registry.start(name);
  const read = (sector: number, len: number): Promise<Buffer> => target.submit({ type: DmUserRequest.Read, flags: 0, sector, len });
  return { registry, target, files, sectors, read };
}

async function outcome(p: Promise<unknown>): Promise<'ok' | string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    return (err as Error).message;
  }
}

let dir: string;
beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vab-readpath-'));
});
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

describe.each(COMPRESSION_NAMES.map((c) => [c]))('snapuserd read path, v3 COW, %s', (compression) => {
  it.each([4096, 65536, 262144])('factor %i: every op kind, whole, per block and unaligned, equals SnapshotReader', async (factor) => {
    const c = await v3Case(compression, factor);
    const { registry, read, files, sectors } = await serve(dir, 'sys', c);
    expect(sectors).toBe(c.base.length / SECTOR_SIZE);
    const reference = await SnapshotReader.open(files.cow, files.base);
    const whole = Buffer.alloc(c.base.length);
    await reference.readBlocks(0, c.base.length / BS, whole);
    await reference.close();
    expect(whole.equals(c.expected)).toBe(true);

    // One READ of the whole device, answered in one reply.
    expect((await read(0, c.base.length)).equals(c.expected)).toBe(true);
    // Block by block, concurrently over the channels.
    const blocks = await Promise.all(Array.from({ length: c.base.length / BS }, (_, b) => read((b * BS) / SECTOR_SIZE, BS)));
    blocks.forEach((got, b) => expect(got.equals(c.expected.subarray(b * BS, (b + 1) * BS))).toBe(true));
    // Unaligned starts and sizes, at the edges of multi-block units (5..25, 30..94, 100..137), the
    // Xor block, the copies and the zeros.
    const probes: Array<[number, number]> = [];
    for (const block of [0, 1, 2, 4, 5, 20, 21, 24, 25, 29, 30, 45, 46, 93, 94, 100, 131, 136, 137, 150, 160, 162, 199]) {
      for (const [delta, sectorsLong] of [[1, 1], [7, 1], [3, 9], [-1, 2], [5, 70]] as const) {
        const sector = block * 8 + delta;
        if (sector >= 0 && sector + sectorsLong <= sectors) probes.push([sector, sectorsLong]);
      }
    }
    for (const [sector, n] of probes) {
      const got = await read(sector, n * SECTOR_SIZE);
      expect(got.equals(c.expected.subarray(sector * SECTOR_SIZE, (sector + n) * SECTOR_SIZE))).toBe(true);
    }
    await registry.stopAll();
  });
});

describe('snapuserd read path', () => {
  it('serves a v2 COW (copy, replace, xor, zero) equal to SnapshotReader', async () => {
    const c = v2Case();
    const { registry, read, files } = await serve(dir, 'v2', c, { channels: 1 });
    const reference = await SnapshotReader.open(files.cow, files.base);
    const viaReader = Buffer.alloc(c.base.length);
    await reference.readBlocks(0, c.base.length / BS, viaReader);
    await reference.close();
    expect(viaReader.equals(c.expected)).toBe(true);
    expect((await read(0, c.base.length)).equals(c.expected)).toBe(true);
    expect((await read(40 * 8 + 3, 1024)).equals(c.expected.subarray((40 * 8 + 3) * 512, (40 * 8 + 5) * 512))).toBe(true);
    await registry.stopAll();
  });

  it('answers WRITE, DISCARD and other types with an error, never touching the base; FLUSH succeeds', async () => {
    const c = await v3Case('zstd', 65536);
    const { registry, target, read, files } = await serve(dir, 'ro', c, { channels: 2 });
    const before = await fs.readFile(files.base);
    const write = target.submit({ type: DmUserRequest.Write, flags: 0, sector: 8, len: BS, data: Buffer.alloc(BS, 0xaa) });
    expect(await outcome(write)).toMatch(/daemon answered error/);
    expect(await outcome(target.submit({ type: DmUserRequest.Discard, flags: 0, sector: 0, len: BS }))).toMatch(/daemon answered error/);
    expect(await outcome(target.submit({ type: DmUserRequest.ZoneOpen, flags: 0, sector: 0, len: 0 }))).toMatch(/daemon answered error/);
    expect(await outcome(target.submit({ type: DmUserRequest.Write, flags: DmUserFlag.Preflush | DmUserFlag.Sync, sector: 0, len: 0 }))).toBe('ok');
    expect(await outcome(target.submit({ type: DmUserRequest.Flush, flags: 0, sector: 0, len: 0 }))).toBe('ok');
    expect((await fs.readFile(files.base)).equals(before)).toBe(true);
    // The daemon still serves after the errors.
    expect((await read(0, 200 * BS)).equals(c.expected)).toBe(true);
    await registry.stopAll();
  });

  it('a payload that does not decode fails that IO only, logged with the misc name', async () => {
    const c = await v3Case('zstd', 4096);
    // Corrupt the payloads of the compressed Replace ops of blocks 100..135 (text-like, so they shrank).
    const cow = Buffer.from(c.cowBytes);
    const parsed = await CowReader.fromFile(new MemoryFile('c', cow));
    const hit: number[] = [];
    for (let op = 0; op < parsed.ops.count; op++) {
      const block = parsed.ops.newBlock[op];
      if (parsed.ops.type(op) !== CowOpType.Replace || parsed.ops.isRaw(op) || block < 100 || block >= 110) continue;
      const at = parsed.ops.dataOffset[op];
      for (let i = 4; i < parsed.ops.dataLength[op]; i++) cow[at + i] ^= 0x5a;
      hit.push(block);
    }
    expect(hit.length).toBeGreaterThan(0);
    const lines: Array<Record<string, unknown>> = [];
    const { registry, read } = await serve(dir, 'bad', { ...c, cowBytes: cow }, { logger: capturingLogger(lines), channels: 2 });
    const failures: number[] = [];
    for (let b = 100; b < 137; b++) if ((await outcome(read(b * 8, BS))) !== 'ok') failures.push(b);
    expect(failures).toEqual(hit);
    // Blocks with good data are still served, on the same channels.
    expect((await read(0, 100 * BS)).equals(c.expected.subarray(0, 100 * BS))).toBe(true);
    const errors = lines.filter((l) => l.level === 'error');
    expect(errors.length).toBe(failures.length);
    for (const e of errors) expect(e).toMatchObject({ misc: 'bad' });
    expect(String(errors[0].message)).toMatch(/bad: Read at sector \d+ .*failed: .*bad\.cow at offset \d+: op \d+/);
    await registry.stopAll();
  });

  it('reads past the device end fail; init refuses bad names, relative or missing paths and a garbage COW', async () => {
    const c = await v3Case('lz4', 4096);
    const { registry, read, sectors, files } = await serve(dir, 'edge', c, { channels: 1 });
    expect(await outcome(read(sectors - 1, 1024))).toMatch(/daemon answered error/);
    await expect(registry.init('edge', files.cow, files.base, files.base)).rejects.toMatchObject({ code: 'EEXIST' });
    await expect(registry.init('../x', files.cow, files.base, files.base)).rejects.toMatchObject({ code: 'EINVAL_INPUT' });
    await expect(registry.init('other', 'rel.cow', files.base, files.base)).rejects.toMatchObject({ code: 'EINVAL_INPUT' });
    await expect(registry.init('other', path.join(dir, 'missing.cow'), files.base, files.base)).rejects.toMatchObject({ code: 'ENOTFOUND' });
    const garbage = path.join(dir, 'garbage.cow');
    await fs.writeFile(garbage, Buffer.alloc(8192, 0x41));
    await expect(registry.init('other', garbage, files.base, files.base)).rejects.toThrow(/garbage\.cow/);
    expect(registry.names()).toEqual(['edge']);
    await expect(registry.start('nothing')).rejects.toMatchObject({ code: 'ENOTFOUND' });
    await expect(registry.start('edge')).rejects.toMatchObject({ code: 'ESTATE' });
    expect((await read(0, 200 * BS)).equals(c.expected)).toBe(true);
    await registry.delete('edge');
    expect(registry.has('edge')).toBe(false);
  });
});
