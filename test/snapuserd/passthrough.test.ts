import { promises as fs } from 'node:fs';
import path from 'node:path';
import { DmUserRequest } from '../../src/dmuser/constants';
import { startPassthrough } from '../../src/snapuserd/passthrough';
import { ctx, fileOf, outcome, patterned, startKernel } from '../kernel/helpers';

jest.setTimeout(15_000);

/** The reference daemon against an in-process kernel (no mount): what each request does to the image. */
describe('passthrough daemon', () => {
  let env: Awaited<ReturnType<typeof startKernel>>;
  let image: string;
  const size = 256 * 1024;
  beforeEach(async () => {
    env = await startKernel({ daemon_timeout_ms: 2000 });
    image = path.join(env.runDir, 'image');
    await fs.writeFile(image, patterned(size, 11));
    await env.kernel.createTarget('sys', size);
  });
  afterEach(() => env.stop());

  it('serves reads, writes, flushes and discards from the image over several channels', async () => {
    const daemon = await startPassthrough({ runDir: env.runDir, name: 'sys', image, channels: 3 });
    expect(env.kernel.target('sys')!.info().channels).toBe(3);
    const file = fileOf(env.kernel, 'sys');
    const expected = patterned(size, 11);
    const reads = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => env.kernel.read(file, i * 8192, 8192, ctx)));
    reads.forEach((r, i) => expect(r.equals(expected.subarray(i * 8192, (i + 1) * 8192))).toBe(true));

    const data = patterned(16384, 99);
    await env.kernel.write(file, 32768, data, ctx);
    await env.kernel.flush(file, ctx);
    await env.kernel.discard(file, 65536, 4096, ctx);
    data.copy(expected, 32768);
    expected.fill(0, 65536, 65536 + 4096);
    expect((await fs.readFile(image)).equals(expected)).toBe(true);

    // Types the kernel never produces are answered "unsupported", which fails the IO with EIO.
    const odd = await outcome(env.kernel.target('sys')!.submit({ type: DmUserRequest.ZoneOpen, flags: 0, sector: 0, len: 0 }));
    expect(odd).toMatchObject({ ok: false, errno: 5 });

    await env.kernel.removeTarget('sys');
    await daemon.done; // ends on its own once the target is gone
  });

  it('reads past the end of a short image as zeros', async () => {
    await fs.truncate(image, 1000);
    const daemon = await startPassthrough({ runDir: env.runDir, name: 'sys', image, channels: 1 });
    const got = await env.kernel.read(fileOf(env.kernel, 'sys'), 512, 1024, ctx);
    expect(got.subarray(0, 488).equals(patterned(size, 11).subarray(512, 1000))).toBe(true);
    expect(got.subarray(488).every((b) => b === 0)).toBe(true);
    await daemon.stop();
  });

  it('serves large reads (the page-cache path, then the threadpool for the rest) on both transports, zeros past a short end', async () => {
    const expected = patterned(size, 11);
    await fs.truncate(image, 200 * 1024 + 100);
    for (const transport of ['shared', 'plain'] as const) {
      const daemon = await startPassthrough({ runDir: env.runDir, name: 'sys', image, channels: 2, transport });
      expect(daemon.transport).toBe(transport);
      const got = await env.kernel.read(fileOf(env.kernel, 'sys'), 0, size, ctx);
      expect(got.subarray(0, 200 * 1024 + 100).equals(expected.subarray(0, 200 * 1024 + 100))).toBe(true);
      expect(got.subarray(200 * 1024 + 100).every((b) => b === 0)).toBe(true);
      env.kernel.recycle(got);
      await daemon.stop();
    }
  });

  it('stop() closes its channels; a missing target or a bad channel count is refused', async () => {
    const daemon = await startPassthrough({ runDir: env.runDir, name: 'sys', image, channels: 2 });
    await daemon.stop();
    for (let i = 0; i < 100 && env.kernel.target('sys')!.info().channels > 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(env.kernel.target('sys')!.info().channels).toBe(0);
    await expect(startPassthrough({ runDir: env.runDir, name: 'other', image })).rejects.toMatchObject({ code: 'ENOTFOUND' });
    await expect(startPassthrough({ runDir: env.runDir, name: 'sys', image, channels: 0 })).rejects.toMatchObject({ code: 'EINVAL_INPUT' });
  });
});
