import fc from 'fast-check';
import { decodeDirents, decodeEntryOut, decodeInitOut, decodeAttrOut } from '../../src/fuse/codec/composite';
import { openOut, writeOut } from '../../src/fuse/codec/structs';
import { Dispatcher, Reply } from '../../src/fuse/dispatch';
import { BlockFileSystem } from '../../src/fuse/filesystem';
import { FuseOpcode as Op } from '../../src/fuse/protocol';
import { BlockFile, BlockFileProvider, FuseErrnoError } from '../../src/fuse/types';
import { nullLogger } from '../../src/util/log';
import { fallocateBody, fsyncBody, initBody, ioBody, nameBody, openBody, request, setattrBody } from './support/requests';

/** The dispatcher against an in-memory provider: protocol behaviour without a mount. */
const files: BlockFile[] = [
  { id: 0, name: 'system', size: 10_000, writable: true },
  { id: 1, name: 'vendor', size: 4096, writable: false },
];
const SYSTEM = 2; // nodeid = id + 2
const VENDOR = 3;

function makeProvider() {
  const data = new Map<number, Buffer>(files.map((f) => [f.id, Buffer.alloc(f.size, f.id + 1)]));
  const calls: string[] = [];
  let readImpl: ((file: BlockFile, offset: number, length: number) => Promise<Buffer>) | undefined;
  const provider: BlockFileProvider = {
    list: () => files,
    lookup: (name) => files.find((f) => f.name === name),
    read: async (file, offset, length) => (readImpl ? readImpl(file, offset, length) : data.get(file.id)!.subarray(offset, offset + length)),
    write: async (file, offset, bytes) => {
      calls.push(`write ${file.name} ${offset} ${bytes.length}`);
      bytes.copy(data.get(file.id)!, offset);
    },
    flush: async (file) => void calls.push(`flush ${file.name}`),
    discard: async (file, offset, length) => void calls.push(`discard ${file.name} ${offset} ${length}`),
  };
  return { provider, data, calls, setRead: (impl: typeof readImpl) => (readImpl = impl) };
}

let env: ReturnType<typeof makeProvider>;
let dispatcher: Dispatcher;
beforeEach(() => {
  env = makeProvider();
  dispatcher = new Dispatcher(new BlockFileSystem(env.provider), { directIo: true, maxIo: 1 << 20, logger: nullLogger });
});

const errorOf = (reply: Reply | undefined) => (reply && 'error' in reply ? reply.error : 0);
const bodyOf = (reply: Reply | undefined): Buffer => {
  if (!reply || !('body' in reply)) throw new Error(`expected a body, got ${JSON.stringify(reply, (_, v) => (typeof v === 'bigint' ? String(v) : v))}`);
  return Buffer.concat(reply.body);
};
const open = async (nodeid: number, flags = 0) => openOut.decode(bodyOf(await dispatcher.handle(request(Op.OPEN, nodeid, openBody(flags))))).fh;

describe('INIT negotiation', () => {
  const offered = 0x73fffffb;

  it('keeps only the wanted flags and sizes requests to 1 MiB', async () => {
    const out = decodeInitOut(bodyOf(await dispatcher.handle(request(Op.INIT, 0, initBody(45, offered, true)))));
    expect(out).toMatchObject({ major: 7, minor: 45, maxWrite: 1 << 20, maxPages: 256, maxReadahead: 131072, timeGran: 1 });
    // ASYNC_READ | BIG_WRITES | ASYNC_DIO | PARALLEL_DIROPS | MAX_PAGES; no WRITEBACK_CACHE, no READDIRPLUS.
    expect(out.flags).toBe(0x1 | 0x20 | 0x8000 | 0x40000 | 0x400000);
  });

  it('answers the 16-byte INIT of a pre-7.36 kernel with that kernel minor and its reply size', async () => {
    const reply31 = bodyOf(await dispatcher.handle(request(Op.INIT, 0, initBody(31, offered, false))));
    expect(reply31.length).toBe(64);
    expect(decodeInitOut(reply31).minor).toBe(31);
    const reply22 = bodyOf(await dispatcher.handle(request(Op.INIT, 0, initBody(22, 0x21, false))));
    expect(reply22.length).toBe(24);
    expect(decodeInitOut(reply22)).toMatchObject({ minor: 22, flags: 0x21, maxWrite: 1 << 20 });
  });

  it('refuses kernels older than 7.9 and steps a newer major down to 7', async () => {
    expect(errorOf(await dispatcher.handle(request(Op.INIT, 0, initBody(8, offered, false))))).toBe(71);
    const newer = decodeInitOut(bodyOf(await dispatcher.handle(request(Op.INIT, 0, initBody(0, 0, false, 8)))));
    expect(newer).toMatchObject({ major: 7, minor: 45, flags: 0 });
  });
});

describe('requests on block files', () => {
  it('looks up files by name with node id = file id + 2', async () => {
    const entry = decodeEntryOut(bodyOf(await dispatcher.handle(request(Op.LOOKUP, 1, nameBody('system')))));
    expect(entry).toMatchObject({ nodeid: SYSTEM, attr: { ino: SYSTEM, size: 10_000, mode: 0o100600 } });
    expect(errorOf(await dispatcher.handle(request(Op.LOOKUP, 1, nameBody('nope'))))).toBe(2);
    expect(errorOf(await dispatcher.handle(request(Op.LOOKUP, SYSTEM, nameBody('x'))))).toBe(20);
  });

  it('hands a READ buffer back to the provider only once the reply is sent, and never after an error', async () => {
    const recycled: Buffer[] = [];
    env.provider.recycle = (data) => void recycled.push(data);
    const fh = await open(SYSTEM);
    const answer = Buffer.alloc(4096, 7);
    env.setRead(async () => answer);
    const reply = await dispatcher.handle(request(Op.READ, SYSTEM, ioBody(fh, 0, 4096)));
    expect(recycled).toEqual([]);
    expect(reply && 'sent' in reply && typeof reply.sent).toBe('function');
    if (reply && 'sent' in reply) reply.sent?.();
    expect(recycled).toHaveLength(1);
    expect(recycled[0].buffer).toBe(answer.buffer);
    env.setRead(async () => Buffer.alloc(10));
    const failed = await dispatcher.handle(request(Op.READ, SYSTEM, ioBody(fh, 0, 4096)));
    expect(errorOf(failed)).toBe(5);
    expect(failed && 'sent' in failed).toBe(false);
  });

  it('clamps reads at the end of the file and refuses a short provider answer inside it', async () => {
    const fh = await open(SYSTEM);
    expect(bodyOf(await dispatcher.handle(request(Op.READ, SYSTEM, ioBody(fh, 8192, 4096)))).length).toBe(10_000 - 8192);
    expect(bodyOf(await dispatcher.handle(request(Op.READ, SYSTEM, ioBody(fh, 20_000, 4096)))).length).toBe(0);
    env.setRead(async () => Buffer.alloc(10));
    expect(errorOf(await dispatcher.handle(request(Op.READ, SYSTEM, ioBody(fh, 0, 4096))))).toBe(5);
  });

  it('answers a provider error with its errno, a Node errno made positive, or EIO', async () => {
    const fh = await open(SYSTEM);
    const read = () => dispatcher.handle(request(Op.READ, SYSTEM, ioBody(fh, 0, 512)));
    env.setRead(async () => Promise.reject(new FuseErrnoError(61)));
    expect(errorOf(await read())).toBe(61);
    env.setRead(async () => Promise.reject(Object.assign(new Error('gone'), { errno: -2 })));
    expect(errorOf(await read())).toBe(2);
    env.setRead(async () => Promise.reject(Object.assign(new Error('odd'), { errno: 9999 })));
    expect(errorOf(await read())).toBe(5);
    env.setRead(async () => Promise.reject(new Error('plain')));
    expect(errorOf(await read())).toBe(5);
    env.setRead(undefined);
    expect(bodyOf(await read()).length).toBe(512);
  });

  it('replies in completion order, not arrival order', async () => {
    const fh = await open(SYSTEM);
    env.setRead((_f, offset, length) => new Promise((resolve) => setTimeout(() => resolve(Buffer.alloc(length)), offset === 0 ? 200 : 1)));
    const order: number[] = [];
    await Promise.all([0, 4096].map((offset) => dispatcher.handle(request(Op.READ, SYSTEM, ioBody(fh, offset, 16))).then(() => order.push(offset))));
    expect(order).toEqual([4096, 0]);
  });

  it('writes what fits before the end, refuses past it, and refuses write opens of read-only files', async () => {
    const fh = await open(SYSTEM, 2);
    const write = (offset: number, size: number) => dispatcher.handle(request(Op.WRITE, SYSTEM, Buffer.concat([ioBody(fh, offset, size), Buffer.alloc(size, 7)])));
    expect(writeOut.decode(bodyOf(await write(8192, 4096))).size).toBe(10_000 - 8192);
    expect(errorOf(await write(10_000, 4096))).toBe(28);
    expect(env.calls).toEqual([`write system 8192 ${10_000 - 8192}`]);
    expect(errorOf(await dispatcher.handle(request(Op.OPEN, VENDOR, openBody(1))))).toBe(30);
  });

  it('calls provider.flush on FSYNC only, not on FLUSH (close)', async () => {
    const fh = await open(SYSTEM);
    expect(errorOf(await dispatcher.handle(request(Op.FLUSH, SYSTEM, Buffer.alloc(24))))).toBe(0);
    expect(env.calls).toEqual([]);
    expect(errorOf(await dispatcher.handle(request(Op.FSYNC, SYSTEM, fsyncBody(fh))))).toBe(0);
    expect(env.calls).toEqual(['flush system']);
  });

  it('accepts a same-size or mode SETATTR and refuses a size change', async () => {
    const same = decodeAttrOut(bodyOf(await dispatcher.handle(request(Op.SETATTR, SYSTEM, setattrBody(0x248, 10_000n)))));
    expect(same.attr.size).toBe(10_000);
    expect(errorOf(await dispatcher.handle(request(Op.SETATTR, SYSTEM, setattrBody(0x248, 0n))))).toBe(1);
    expect(errorOf(await dispatcher.handle(request(Op.SETATTR, SYSTEM, setattrBody(0x1, 0n, 0o600))))).toBe(0);
  });

  it('maps PUNCH_HOLE|KEEP_SIZE to a clamped discard and refuses other fallocate modes', async () => {
    const fh = await open(SYSTEM, 2);
    expect(errorOf(await dispatcher.handle(request(Op.FALLOCATE, SYSTEM, fallocateBody(fh, 8192, 8192, 3))))).toBe(0);
    expect(errorOf(await dispatcher.handle(request(Op.FALLOCATE, SYSTEM, fallocateBody(fh, 0, 4096, 0))))).toBe(95);
    expect(env.calls).toEqual([`discard system 8192 ${10_000 - 8192}`]);
  });

  it('pages READDIR by cookie and serves READDIRPLUS with entries', async () => {
    const fh = openOut.decode(bodyOf(await dispatcher.handle(request(Op.OPENDIR, 1, openBody(0))))).fh;
    const first = decodeDirents(bodyOf(await dispatcher.handle(request(Op.READDIR, 1, ioBody(fh, 0, 64)))), false);
    expect(first.map((d) => d.name)).toEqual(['.', '..']);
    const rest = decodeDirents(bodyOf(await dispatcher.handle(request(Op.READDIR, 1, ioBody(fh, first[1].off, 4096)))), false);
    expect(rest.map((d) => [d.name, d.ino, d.type])).toEqual([['system', SYSTEM, 8], ['vendor', VENDOR, 8]]);
    const plus = decodeDirents(bodyOf(await dispatcher.handle(request(Op.READDIRPLUS, 1, ioBody(fh, 0, 4096)))), true);
    expect(plus.map((d) => [d.name, d.entry?.nodeid, d.entry?.attr.size])).toEqual([['.', 0, 0], ['..', 0, 0], ['system', SYSTEM, 10_000], ['vendor', VENDOR, 4096]]);
    expect(bodyOf(await dispatcher.handle(request(Op.READDIR, 1, ioBody(fh, 4, 4096)))).length).toBe(0);
  });

  it('never replies to FORGET, BATCH_FORGET or INTERRUPT, and answers the rest with ENOSYS or EPERM', async () => {
    expect(await dispatcher.handle(request(Op.FORGET, SYSTEM, Buffer.alloc(8)))).toMatchObject({ none: true });
    expect(await dispatcher.handle(request(Op.BATCH_FORGET, 0, Buffer.alloc(8)))).toMatchObject({ none: true });
    expect(await dispatcher.handle(request(Op.BATCH_FORGET, 0, Buffer.alloc(3)))).toMatchObject({ none: true });
    expect(await dispatcher.handle(request(Op.INTERRUPT, 0, Buffer.alloc(8), 7n))).toMatchObject({ none: true });
    expect(errorOf(await dispatcher.handle(request(Op.GETXATTR, SYSTEM, Buffer.concat([Buffer.alloc(8), nameBody('security.selinux')]))))).toBe(38);
    expect(errorOf(await dispatcher.handle(request(Op.MKDIR, 1, Buffer.alloc(16))))).toBe(1);
    expect(errorOf(await dispatcher.handle(request(9999, 1)))).toBe(38);
  });
});

describe('malformed requests', () => {
  it('drops a request too short for a header and answers a truncated body with EINVAL', async () => {
    expect(await dispatcher.handle(Buffer.alloc(20))).toBeUndefined();
    expect(errorOf(await dispatcher.handle(request(Op.READ, SYSTEM, Buffer.alloc(10))))).toBe(22);
    const lying = request(Op.GETATTR, SYSTEM, Buffer.alloc(16));
    lying.writeUInt32LE(100, 0);
    expect(errorOf(await dispatcher.handle(lying))).toBe(22);
  });

  it('never throws, whatever the bytes', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 60 }), fc.uint8Array({ maxLength: 200 }), async (opcode, body) => {
        const raw = request(opcode, SYSTEM, Buffer.from(body));
        const reply = await dispatcher.handle(raw);
        expect(reply === undefined || typeof reply.unique === 'bigint').toBe(true);
      }),
      { numRuns: 500 },
    );
  });
});
