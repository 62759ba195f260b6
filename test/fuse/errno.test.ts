import { promises as fs } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { CodecError } from '../../src/cow/codec';
import { errnoOf } from '../../src/fuse/dispatch';
import { ERRNO_FOR_CODE } from '../../src/fuse/errno';
import { FuseErrnoError } from '../../src/fuse/types';
import { controlSocketPath } from '../../src/kernel/control';
import { callKernel } from '../../src/kernel/control-client';
import { VabError, VAB_ERROR_CODES } from '../../src/util/errors';

describe('the VabError → errno map at the FUSE boundary', () => {
  it('gives every code the errno the kernel answers with', () => {
    // Linux errno numbers, written out: the table must not drift with the code list.
    expect(ERRNO_FOR_CODE).toEqual({
      EINVAL_INPUT: 22,
      ECORRUPT: 5,
      ETRUNCATED: 5,
      EHASH: 5,
      EUNSUPPORTED: 95,
      EPROTO: 71,
      ENOTFOUND: 2,
      EEXIST: 17,
      ETIMEDOUT: 110,
      EIO: 5,
      ESTATE: 5,
      EPERM: 1,
    });
    expect(Object.keys(ERRNO_FOR_CODE).sort()).toEqual([...VAB_ERROR_CODES].sort());
  });

  it('answers a VabError by its code, an exact errno as it is, anything else with EIO', () => {
    expect(errnoOf(new VabError('ENOTFOUND', 'x'))).toBe(2);
    expect(errnoOf(new CodecError('bad zstd frame'))).toBe(5);
    expect(errnoOf(new FuseErrnoError(21, 'is a directory'))).toBe(21);
    expect(new FuseErrnoError(30)).toMatchObject({ code: 'EPERM', errno: 30 });
    expect(errnoOf(Object.assign(new Error('node'), { errno: -13 }))).toBe(13);
    expect(errnoOf(new Error('plain'))).toBe(5);
    expect(errnoOf('not an error')).toBe(5);
  });
});

describe('the kernel control client', () => {
  let dir: string;
  let server: net.Server;
  async function answering(line: string): Promise<void> {
    server = net.createServer((socket) => socket.once('data', () => socket.end(`${line}\n`)));
    await new Promise<void>((resolve) => server.listen(controlSocketPath(dir), resolve));
  }
  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vab-ctl-'));
  });
  afterEach(async () => {
    await new Promise((resolve) => server.close(resolve));
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('rebuilds a VabError with the code the kernel sent', async () => {
    await answering(JSON.stringify({ ok: false, code: 'EEXIST', message: 'target "sys" exists' }));
    await expect(callKernel(dir, { op: 'status' } as never)).rejects.toMatchObject({ code: 'EEXIST', message: 'target "sys" exists' });
  });

  it('treats a code it does not know as a protocol error, naming it', async () => {
    await answering(JSON.stringify({ ok: false, code: 'EBOGUS', message: 'what' }));
    await expect(callKernel(dir, { op: 'status' } as never)).rejects.toMatchObject({ code: 'EPROTO', message: expect.stringMatching(/unknown error code "EBOGUS": what/) });
  });
});
