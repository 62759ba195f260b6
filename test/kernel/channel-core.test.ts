import { encodeHeader } from '../../src/dmuser/codec';
import { DmUserRequest } from '../../src/dmuser/constants';
import type { MiscConnection } from '../../src/dmuser/socket-endpoint';
import { KernelChannel } from '../../src/kernel/channel';
import { KernelMessage } from '../../src/kernel/message';
import { nullLogger } from '../../src/util/log';
import { outcome } from './helpers';

/**
 * The channel's write() semantics without any transport, as the char-device transport will drive
 * them: one answer per write at most (short writes), sticky EINVAL after a protocol fault.
 */
function setup(): { channel: KernelChannel; sent: Buffer[]; destroyed: () => boolean; freed: () => number } {
  const sent: Buffer[] = [];
  let destroyed = false;
  let freed = 0;
  const connection: MiscConnection = {
    send: (chunks) => sent.push(Buffer.concat(chunks)),
    endOfMessages: () => undefined,
    destroy: () => {
      destroyed = true;
    },
  };
  const owner = { name: 'sys', logger: nullLogger, logFailure: () => undefined, slotFreed: () => void freed++ };
  return { channel: new KernelChannel(owner, connection), sent, destroyed: () => destroyed, freed: () => freed };
}

const read = (seq: number, len: number): KernelMessage => new KernelMessage({ seq, type: DmUserRequest.Read, flags: 0, sector: seq, len }, Buffer.alloc(0));

describe('kernel channel core (char-device write semantics)', () => {
  it('sends the header, then WRITE data, when handing a message', () => {
    const { channel, sent } = setup();
    const data = Buffer.from('0123456789abcdef'.repeat(32));
    channel.hand(new KernelMessage({ seq: 4, type: DmUserRequest.Write, flags: 0, sector: 2, len: 512 }, data));
    expect(sent).toHaveLength(1);
    expect(sent[0].subarray(0, 40).equals(encodeHeader({ seq: 4, type: 1, flags: 0, sector: 2, len: 512 }))).toBe(true);
    expect(sent[0].subarray(40).equals(data)).toBe(true);
  });

  it('copies a READ answer into the message\'s own buffer, and never once the message has settled', async () => {
    const { channel } = setup();
    const into = Buffer.alloc(16, 0x11);
    const live = new KernelMessage({ seq: 0, type: DmUserRequest.Read, flags: 0, sector: 0, len: 8 }, Buffer.alloc(0), into.subarray(0, 8));
    const late = new KernelMessage({ seq: 1, type: DmUserRequest.Read, flags: 0, sector: 1, len: 8 }, Buffer.alloc(0), into.subarray(8, 16));
    channel.hand(live);
    channel.hand(late);
    late.fail(new Error('timed out'));
    channel.receive(Buffer.concat([encodeHeader({ seq: 0, type: 0, flags: 0, sector: 0, len: 0 }), Buffer.from('ABCDEFGH')]));
    const got = await live.promise;
    expect(got.buffer).toBe(into.buffer);
    expect(into.subarray(0, 8).toString()).toBe('ABCDEFGH');
    // The late answer is consumed (the channel stays healthy) but its bytes go nowhere.
    channel.receive(Buffer.concat([encodeHeader({ seq: 1, type: 0, flags: 0, sector: 1, len: 0 }), Buffer.from('ZZZZ')]));
    channel.receive(Buffer.from('ZZZZ'));
    expect(into.subarray(8).equals(Buffer.alloc(8, 0x11))).toBe(true);
    expect(channel.poisoned).toBe(false);
    expect(channel.load).toBe(0);
    await expect(late.promise).rejects.toThrow('timed out');
  });

  it('consumes at most one answer per write and takes a header in pieces', async () => {
    const { channel, freed } = setup();
    const a = read(0, 8);
    const b = read(1, 0);
    channel.hand(a);
    channel.hand(b);
    const answerA = Buffer.concat([encodeHeader({ seq: 0, type: 0, flags: 0, sector: 0, len: 0 }), Buffer.from('ABCDEFGH')]);
    const answerB = encodeHeader({ seq: 1, type: 0, flags: 0, sector: 0, len: 0 });
    const both = Buffer.concat([answerA, answerB]);
    expect(channel.write(both.subarray(0, 10))).toBe(10);
    expect(channel.write(both.subarray(10))).toBe(30); // rest of the header only
    expect(channel.write(both.subarray(40))).toBe(8); // the payload, not the next header
    expect(channel.write(both.subarray(48))).toBe(40);
    expect((await a.promise).toString()).toBe('ABCDEFGH');
    expect((await b.promise).length).toBe(0);
    expect(freed()).toBe(2);
    expect(channel.load).toBe(0);
  });

  it('poisons the channel for good on a zero-length write where a header is expected', async () => {
    const { channel, destroyed } = setup();
    const m = read(0, 512);
    channel.hand(m);
    expect(channel.write(Buffer.alloc(0))).toBe(-22);
    expect(channel.poisoned).toBe(true);
    expect(destroyed()).toBe(true);
    // Even a correct answer is refused now.
    expect(channel.write(encodeHeader({ seq: 0, type: 0, flags: 0, sector: 0, len: 0 }))).toBe(-22);
    expect(channel.canTake(10)).toBe(false);
    const { orphans, poisoned } = channel.close();
    expect(poisoned).toBe(true);
    expect(orphans).toEqual([m]);
    m.fail(new Error('failed by the target'));
    expect(await outcome(m.promise)).toMatchObject({ ok: false });
  });

  it('poisons on an unknown seq and on an answer for a message still held elsewhere', () => {
    const { channel } = setup();
    channel.hand(read(3, 0));
    expect(channel.write(encodeHeader({ seq: 2, type: 0, flags: 0, sector: 0, len: 0 }))).toBe(-22);
    expect(channel.poisoned).toBe(true);
  });

  it('hands back what it holds on close, minus what was answered or already failed', () => {
    const { channel } = setup();
    const [a, b, c] = [read(0, 0), read(1, 0), read(2, 512)];
    for (const m of [a, b, c]) channel.hand(m);
    channel.write(encodeHeader({ seq: 0, type: 0, flags: 0, sector: 0, len: 0 }));
    b.fail(new Error('timed out'));
    b.promise.catch(() => undefined);
    channel.write(encodeHeader({ seq: 2, type: 0, flags: 0, sector: 0, len: 512 }));
    channel.write(Buffer.alloc(100)); // cut short
    const { orphans, poisoned } = channel.close();
    expect(poisoned).toBe(false);
    expect(orphans).toEqual([c]);
  });
});
