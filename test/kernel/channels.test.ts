import net from 'node:net';
import { DmUserDecoder, DmUserMessage, encodeHeader, encodeMessage } from '../../src/dmuser/codec';
import { DmUserRequest } from '../../src/dmuser/constants';
import { openChannel } from '../../src/dmuser/socket-channel';
import { miscEndpointPath } from '../../src/dmuser/socket-endpoint';
import { ctx, fileOf, openChannels, outcome, patterned, serveFromMemory, settledWithin, sleep, startKernel, waitFor } from './helpers';

/** A raw connection to a target's endpoint: sees the request bytes, writes anything it likes. */
async function rawChannel(runDir: string, name: string): Promise<{ socket: net.Socket; next(): Promise<DmUserMessage> }> {
  const socket = net.createConnection({ path: miscEndpointPath(runDir, name), allowHalfOpen: true });
  await new Promise((resolve) => socket.once('connect', resolve));
  const decoder = new DmUserDecoder((h) => (h.type === DmUserRequest.Write ? h.len : 0));
  const inbox: DmUserMessage[] = [];
  const waiters: Array<(m: DmUserMessage) => void> = [];
  socket.on('data', (chunk: Buffer) => {
    for (const m of decoder.push(chunk)) {
      const w = waiters.shift();
      if (w) w(m);
      else inbox.push(m);
    }
  });
  socket.on('error', () => undefined);
  return {
    socket,
    next: () => (inbox.length > 0 ? Promise.resolve(inbox.shift()!) : new Promise((resolve) => waiters.push(resolve))),
  };
}

jest.setTimeout(15_000);

// Both transports: every READ through shared memory, and every byte on the socket.
describe.each(['shared', 'plain'] as const)('%s transport', (transport) => {
  describe('kernel: channels', () => {
    let env: Awaited<ReturnType<typeof startKernel>>;
    beforeEach(async () => {
      env = await startKernel({ daemon_timeout_ms: 3000, channel_window: 2 });
      await env.kernel.createTarget('sys', 1 << 20);
      await env.kernel.createTarget('vendor', 1 << 20);
    });
    afterEach(() => env.stop());

    it('hands messages FIFO and never gives a channel more than channel_window', async () => {
      const [a, b] = await openChannels(env.runDir, 'sys', 2, transport);
      // A shared channel joins once the kernel has its ready message: wait, so a and b alternate.
      await waitFor(() => env.kernel.target('sys')!.info().channels === 2, 'both channels attached');
      const file = fileOf(env.kernel, 'sys');
      const ios = Array.from({ length: 7 }, (_, i) => env.kernel.read(file, i * 512, 512, ctx));
      await waitFor(() => a.outstanding + b.outstanding === 4, 'four messages handed out');
      await sleep(30);
      expect([a.outstanding, b.outstanding]).toEqual([2, 2]);
      expect(env.kernel.target('sys')!.info()).toMatchObject({ queued: 3, held: 4 });
      const seen = new Map<typeof a, number[]>([[a, []], [b, []]]);
      const answer = async (channel: typeof a): Promise<void> => {
        const m = (await channel.next())!;
        seen.get(channel)!.push(m.header.seq);
        await channel.respond({ ...m.header, type: 0 }, Buffer.alloc(512));
      };
      for (let i = 0; i < 7; i++) await answer(i % 2 === 0 ? a : b);
      await Promise.all(ios);
      // Each channel receives in seq order; together they got everything exactly once.
      const [fromA, fromB] = [seen.get(a)!, seen.get(b)!];
      expect(fromA.slice(0, 2)).toEqual([0, 2]);
      expect(fromB.slice(0, 2)).toEqual([1, 3]);
      for (const list of [fromA, fromB]) expect([...list].sort((x, y) => x - y)).toEqual(list);
      expect([...fromA, ...fromB].sort((x, y) => x - y)).toEqual([0, 1, 2, 3, 4, 5, 6]);
      await Promise.all([a.close(), b.close()]);
    });

    it('fails what a closing channel holds and leaves untouched messages for the others', async () => {
      env.kernel.setParam('channel_window', 1);
      const first = await openChannel(env.runDir, 'sys', transport);
      const file = fileOf(env.kernel, 'sys');
      const ios = [0, 1, 2].map((i) => outcome(env.kernel.read(file, i * 4096, 4096, ctx)));
      const taken = (await first.next())!;
      expect(taken.header.seq).toBe(0);
      const second = await openChannel(env.runDir, 'sys', transport);
      const served = serveFromMemory(second, patterned(1 << 20));
      // The second channel took the rest (it may already have answered them).
      await waitFor(() => env.kernel.target('sys')!.info().queued === 0, 'second channel to take the rest');
      await first.close();
      const [r0, r1, r2] = await Promise.all(ios);
      expect(r0).toMatchObject({ ok: false, errno: 5 });
      expect(r1.ok && r2.ok).toBe(true);
      await second.close();
      await served;
    });

    it('on removal: returns at once though channels are open, ends their messages, still takes their answers', async () => {
      const channel = await openChannel(env.runDir, 'sys', transport);
      const file = fileOf(env.kernel, 'sys');
      const held = env.kernel.read(file, 0, 512, ctx);
      const m = (await channel.next())!;
      await env.kernel.removeTarget('sys');
      expect(await channel.next()).toBeUndefined(); // the char device's ENOTBLK
      await expect(openChannel(env.runDir, 'sys', transport)).rejects.toMatchObject({ code: 'ENOTFOUND' });
      await channel.respond({ ...m.header, type: 0 }, Buffer.alloc(512, 6));
      expect((await held)[0]).toBe(6);
      await channel.close();
    });

    it('refuses malformed answers on the daemon side before sending anything', async () => {
      const channel = await openChannel(env.runDir, 'sys', transport);
      const file = fileOf(env.kernel, 'sys');
      const io = env.kernel.read(file, 0, 1024, ctx);
      const m = (await channel.next())!;
      await expect(channel.respond({ ...m.header, seq: m.header.seq + 5, type: 0 }, Buffer.alloc(1024))).rejects.toMatchObject({ code: 'EPROTO' });
      await expect(channel.respond({ ...m.header, type: 0 }, Buffer.alloc(1000))).rejects.toMatchObject({ code: 'EPROTO' });
      await expect(channel.respond({ ...m.header, type: 1 }, Buffer.alloc(1024))).rejects.toMatchObject({ code: 'EPROTO' });
      await channel.respond({ ...m.header, type: 0 }, Buffer.alloc(1024, 1));
      expect((await io).length).toBe(1024);
      await expect(channel.respond({ ...m.header, type: 0 }, Buffer.alloc(1024))).rejects.toMatchObject({ code: 'EPROTO' });
      await channel.close();
    });

    describe('a rogue daemon poisons only its own channel', () => {
      const cases: Array<[string, (m: DmUserMessage) => Buffer[]]> = [
        ['an unknown seq', (m) => [encodeHeader({ ...m.header, seq: m.header.seq + 1000, type: 0 })]],
        ['garbage', () => [Buffer.from('this is not a dm-user answer at all, not even close!')]],
        ['a seq beyond 2^53', () => [Buffer.alloc(40, 0xff)]],
        ['a payload longer than len (the excess is read as the next header)', (m) => [encodeMessage({ ...m.header, type: 0 }, Buffer.alloc(m.header.len + 40, 0xee))]],
      ];
      it.each(cases)('%s', async (_what, answer) => {
        const good = await openChannel(env.runDir, 'sys', transport);
        const other = await openChannel(env.runDir, 'vendor', transport);
        const rogue = await rawChannel(env.runDir, 'sys');
        const file = fileOf(env.kernel, 'sys');
        // Window 1 on the rogue's side: it gets seq 0 (first channel to take is the good one, so
        // let the good one take seq 0 and the rogue seq 1), and the good one keeps the rest.
        const ios = [0, 1].map((i) => outcome(env.kernel.read(file, i * 512, 512, ctx)));
        const forGood = (await good.next())!;
        const forRogue = await rogue.next();
        const rogueClosed = new Promise((resolve) => rogue.socket.once('end', resolve));
        for (const chunk of answer(forRogue)) rogue.socket.write(chunk);
        await rogueClosed; // the kernel drops a poisoned socket
        rogue.socket.destroy();
        await good.respond({ ...forGood.header, type: 0 }, Buffer.alloc(512, 2));
        const results = await Promise.all(ios);
        const rogueResult = results[forRogue.header.seq];
        const goodResult = results[forGood.header.seq];
        expect(goodResult).toMatchObject({ ok: true });
        if (_what.startsWith('a payload longer')) expect(rogueResult).toMatchObject({ ok: true });
        else expect(rogueResult).toMatchObject({ ok: false, errno: 5 });
        // The kernel keeps serving: the good channel on this target, and other targets.
        const storeSys = patterned(1 << 20, 1);
        const storeVendor = patterned(1 << 20, 2);
        const served = [serveFromMemory(good, storeSys), serveFromMemory(other, storeVendor)];
        expect((await env.kernel.read(file, 4096, 4096, ctx)).equals(storeSys.subarray(4096, 8192))).toBe(true);
        expect((await env.kernel.read(fileOf(env.kernel, 'vendor'), 0, 4096, ctx)).equals(storeVendor.subarray(0, 4096))).toBe(true);
        await Promise.all([good.close(), other.close()]);
        await Promise.all(served);
      });

      it('an answer for a message another channel holds', async () => {
        const rogue = await rawChannel(env.runDir, 'sys');
        const honest = await openChannel(env.runDir, 'sys', transport);
        await waitFor(() => env.kernel.target('sys')!.info().channels === 2, 'both channels attached');
        const file = fileOf(env.kernel, 'sys');
        const ios = [0, 1].map((i) => outcome(env.kernel.read(file, i * 512, 512, ctx)));
        const mine = await rogue.next();
        const theirs = (await honest.next())!;
        const rogueClosed = new Promise((resolve) => rogue.socket.once('end', resolve));
        rogue.socket.write(encodeMessage({ ...theirs.header, type: 0 }, Buffer.alloc(512)));
        await rogueClosed;
        rogue.socket.destroy();
        // The honest channel still owns its message and answers it normally.
        await honest.respond({ ...theirs.header, type: 0 }, Buffer.alloc(512, 3));
        const results = await Promise.all(ios);
        expect(results[mine.header.seq]).toMatchObject({ ok: false, errno: 5 });
        expect(results[theirs.header.seq]).toMatchObject({ ok: true });
        await honest.close();
      });

      it('a payload cut short before close', async () => {
        const rogue = await rawChannel(env.runDir, 'sys');
        const file = fileOf(env.kernel, 'sys');
        const io = outcome(env.kernel.read(file, 0, 4096, ctx));
        const m = await rogue.next();
        rogue.socket.write(encodeMessage({ ...m.header, type: 0 }, Buffer.alloc(4096)).subarray(0, 40 + 1000));
        await sleep(50);
        expect(await settledWithin(io, 10)).toBe(false);
        rogue.socket.end();
        expect(await io).toMatchObject({ ok: false, errno: 5 });
      });

      it('a zero-length write sends nothing on a socket: the held IO is bounded by io_timeout_ms', async () => {
        env.kernel.setParam('io_timeout_ms', 500);
        const rogue = await rawChannel(env.runDir, 'sys');
        const io = outcome(env.kernel.read(fileOf(env.kernel, 'sys'), 0, 512, ctx));
        await rogue.next();
        rogue.socket.write(Buffer.alloc(0));
        expect(await io).toMatchObject({ ok: false, errno: 5 });
        rogue.socket.destroy();
      });
    });
  });
});
