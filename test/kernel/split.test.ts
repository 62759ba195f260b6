import type { DmUserChannel } from '../../src/dmuser/channel';
import { DmUserRequest, DmUserResponse, SECTOR_SIZE } from '../../src/dmuser/constants';
import { openChannel } from '../../src/dmuser/socket-channel';
import { checkParam } from '../../src/kernel/params';
import { ctx, fileOf, openChannels, outcome, patterned, serveFromMemory, startKernel, waitFor } from './helpers';

jest.setTimeout(15_000);

const PIECE = 8192;

/** Serves reads from `store` but answers ERROR for the piece starting at `badSector`; records what it saw. */
async function serveFailingAt(channel: DmUserChannel, store: Buffer, badSector: number, seen: Array<{ seq: number; sector: number; len: number }>): Promise<void> {
  for await (const { header } of channel) {
    seen.push({ seq: header.seq, sector: header.sector, len: header.len });
    const at = header.sector * SECTOR_SIZE;
    try {
      if (header.sector === badSector) await channel.respond({ ...header, type: DmUserResponse.Error });
      else await channel.respond({ ...header, type: DmUserResponse.Success }, Buffer.from(store.subarray(at, at + header.len)));
    } catch {
      return;
    }
  }
}

// Both transports: every READ through shared memory, and every byte on the socket.
describe.each(['shared', 'plain'] as const)('%s transport', (transport) => {
  describe('kernel: max_io_bytes parameter', () => {
    it('accepts only multiples of 512 in range', () => {
      expect(checkParam('max_io_bytes', 262144)).toBe('max_io_bytes');
      expect(() => checkParam('max_io_bytes', 262145)).toThrow(/steps of 512/);
      expect(() => checkParam('max_io_bytes', 2048)).toThrow(/from 4096/);
    });
  });

  /** max_io_bytes: an IO larger than the limit becomes several messages, like a bio split at max_sectors_kb. */
  describe('kernel: IO split at max_io_bytes', () => {
    let env: Awaited<ReturnType<typeof startKernel>>;
    afterEach(() => env.stop());

    it('splits reads and writes into consecutive messages spread over the channels', async () => {
      env = await startKernel({ max_io_bytes: PIECE, channel_window: 1 });
      await env.kernel.createTarget('sys', 1 << 20);
      const file = fileOf(env.kernel, 'sys');
      const store = patterned(1 << 20, 3);
      const channels = await openChannels(env.runDir, 'sys', 4, transport);
      const seen: Array<{ channel: number; seq: number; type: number; sector: number; len: number }> = [];
      const served = channels.map(async (channel, index) => {
        for await (const { header, payload } of channel) {
          seen.push({ channel: index, seq: header.seq, type: header.type, sector: header.sector, len: header.len });
          const at = header.sector * SECTOR_SIZE;
          if (header.type === DmUserRequest.Write) payload.copy(store, at);
          const data = header.type === DmUserRequest.Read ? Buffer.from(store.subarray(at, at + header.len)) : undefined;
          await channel.respond({ ...header, type: DmUserResponse.Success }, data);
        }
      });
      // 4 pieces of 8 KiB plus an unaligned tail widened to the next sector.
      const got = await env.kernel.read(file, 65536, 4 * PIECE + 100, ctx);
      expect(got.equals(store.subarray(65536, 65536 + 4 * PIECE + 100))).toBe(true);
      expect([...seen].sort((x, y) => x.seq - y.seq).map((m) => [m.seq, m.sector, m.len])).toEqual([
        [0, 128, PIECE],
        [1, 144, PIECE],
        [2, 160, PIECE],
        [3, 176, PIECE],
        [4, 192, 512],
      ]);
      expect(new Set(seen.filter((m) => m.seq < 4).map((m) => m.channel)).size).toBe(4);
      seen.length = 0;
      const data = patterned(3 * PIECE, 8);
      await env.kernel.write(file, 4096, data, ctx);
      expect([...seen].sort((x, y) => x.seq - y.seq).map((m) => [m.seq, m.type, m.sector, m.len])).toEqual([
        [5, DmUserRequest.Write, 8, PIECE],
        [6, DmUserRequest.Write, 24, PIECE],
        [7, DmUserRequest.Write, 40, PIECE],
      ]);
      expect(store.subarray(4096, 4096 + data.length).equals(data)).toBe(true);
      await Promise.all(channels.map((c) => c.close()));
      await Promise.all(served);
    });

    it('fails the whole IO once when one piece fails, and keeps serving', async () => {
      env = await startKernel({ max_io_bytes: PIECE });
      await env.kernel.createTarget('sys', 1 << 20);
      const file = fileOf(env.kernel, 'sys');
      const store = patterned(1 << 20, 4);
      const seen: Array<{ seq: number; sector: number; len: number }> = [];
      const channels = await openChannels(env.runDir, 'sys', 2, transport);
      const badSector = (3 * PIECE) / SECTOR_SIZE;
      const served = channels.map((c) => serveFailingAt(c, store, badSector, seen));
      const failed = await outcome(env.kernel.read(file, 0, 8 * PIECE, ctx));
      expect(failed).toMatchObject({ ok: false, errno: 5 });
      // Every piece was still sent and answered: nothing is left held or queued.
      await waitFor(() => seen.length === 8 && env.kernel.target('sys')!.info().held === 0, 'all pieces answered');
      expect(env.kernel.target('sys')!.info()).toMatchObject({ queued: 0, held: 0, channels: 2 });
      const good = await outcome(env.kernel.read(file, 4 * PIECE, 4 * PIECE, ctx));
      expect(good.ok && good.value.equals(store.subarray(4 * PIECE, 8 * PIECE))).toBe(true);
      await Promise.all(channels.map((c) => c.close()));
      await Promise.all(served);
    });

    it('fails the IO when a channel dies holding one piece (Android rule)', async () => {
      env = await startKernel({ max_io_bytes: PIECE, channel_window: 1 });
      await env.kernel.createTarget('sys', 1 << 20);
      const file = fileOf(env.kernel, 'sys');
      const store = patterned(1 << 20, 5);
      const [healthy] = await openChannels(env.runDir, 'sys', 1, transport);
      const dying = await openChannel(env.runDir, 'sys', transport);
      const served = serveFromMemory(healthy, store);
      const read = outcome(env.kernel.read(file, 0, 4 * PIECE, ctx));
      await waitFor(() => dying.outstanding === 1, 'the second channel to take a piece');
      await dying.close();
      expect(await read).toMatchObject({ ok: false, errno: 5 });
      const after = await outcome(env.kernel.read(file, 0, 4 * PIECE, ctx));
      expect(after.ok && after.value.equals(store.subarray(0, 4 * PIECE))).toBe(true);
      await healthy.close();
      await served;
    });

    it('in supervised mode requeues the dead channel\'s piece and the IO succeeds', async () => {
      env = await startKernel({ max_io_bytes: PIECE, channel_window: 1, restart_grace_ms: 2000 });
      await env.kernel.createTarget('sys', 1 << 20);
      const file = fileOf(env.kernel, 'sys');
      const store = patterned(1 << 20, 6);
      const [healthy] = await openChannels(env.runDir, 'sys', 1, transport);
      const dying = await openChannel(env.runDir, 'sys', transport);
      const served = serveFromMemory(healthy, store);
      const read = outcome(env.kernel.read(file, PIECE, 4 * PIECE, ctx));
      await waitFor(() => dying.outstanding === 1, 'the second channel to take a piece');
      await dying.close();
      const result = await read;
      expect(result.ok && result.value.equals(store.subarray(PIECE, 5 * PIECE))).toBe(true);
      await healthy.close();
      await served;
    });

    it('bounds each piece by io_timeout_ms: one silent channel fails the IO in time', async () => {
      env = await startKernel({ max_io_bytes: PIECE, channel_window: 1, io_timeout_ms: 300 });
      await env.kernel.createTarget('sys', 1 << 20);
      const file = fileOf(env.kernel, 'sys');
      const store = patterned(1 << 20, 7);
      const [fast] = await openChannels(env.runDir, 'sys', 1, transport);
      const silent = await openChannel(env.runDir, 'sys', transport);
      const served = serveFromMemory(fast, store);
      const read = outcome(env.kernel.read(file, 0, 2 * PIECE, ctx));
      const held = await silent.next();
      expect(held).toBeDefined();
      expect(await read).toMatchObject({ ok: false, errno: 5 });
      // The late answer is parsed and dropped; the channel keeps working.
      await silent.respond({ ...held!.header, type: DmUserResponse.Success }, Buffer.alloc(PIECE, 0xee));
      await waitFor(() => env.kernel.target('sys')!.info().held === 0, 'the late answer');
      expect(env.kernel.target('sys')!.info().channels).toBe(2);
      await Promise.all([fast.close(), silent.close()]);
      await served;
    });
  });
});
