import { encodeHeader } from '../../src/dmuser/codec';
import { DmUserRequest } from '../../src/dmuser/constants';
import {
  SharedHello,
  SharedMessage,
  SharedRequestDecoder,
  decodeHello,
  decodePlacement,
  decodeReady,
  encodeReady,
  encodeHello,
  encodePlacement,
} from '../../src/dmuser/shared-frame';

/** The shared-data transport's own structures: the hello and the per-request placement. */
describe('dm-user shared-data framing', () => {
  it('encodes the hello to golden bytes', () => {
    const bytes = encodeHello({ memoryFd: 0x2a });
    // "vabSHRD" + version 2, the descriptor (u32), four reserved zeros.
    expect(bytes.toString('hex')).toBe('7661625348524402' + '2a000000' + '00000000');
    expect(decodeHello(bytes)).toEqual({ memoryFd: 0x2a });
  });

  it('encodes the ready message to golden bytes and refuses anything else', () => {
    const bytes = encodeReady();
    // "vabREDY" + version 2, eight reserved zeros.
    expect(bytes.toString('hex')).toBe('7661625245445902' + '0000000000000000');
    expect(() => decodeReady(bytes)).not.toThrow();
    const bad = Buffer.from(bytes);
    bad[0] ^= 1;
    expect(() => decodeReady(bad)).toThrow(/bad magic .* at offset 0/);
    const reserved = Buffer.from(bytes);
    reserved[15] = 1;
    expect(() => decodeReady(reserved)).toThrow(/reserved bytes 8..15/);
  });

  it('encodes a placement to golden bytes and back', () => {
    const bytes = encodePlacement({ offset: 0x1_0002_0000, length: 0x10_0000 });
    expect(bytes.toString('hex')).toBe('0000020001000000' + '0000100000000000');
    expect(decodePlacement(bytes)).toEqual({ offset: 0x1_0002_0000, length: 0x10_0000 });
  });

  it('refuses hellos that are not from a kernel, naming the offset', () => {
    const good = encodeHello({ memoryFd: 3 });
    const badMagic = Buffer.from(good);
    badMagic[0] ^= 1;
    expect(() => decodeHello(badMagic)).toThrow(/bad magic .* at offset 0/);
    const oldVersion = Buffer.from(good);
    oldVersion[7] = 1;
    expect(() => decodeHello(oldVersion)).toThrow(/bad magic/);
    const notFd = Buffer.from(good);
    notFd.writeUInt32LE(0x80000000, 8);
    expect(() => decodeHello(notFd)).toThrow(/descriptor 2147483648 at offset 8/);
    const reserved = Buffer.from(good);
    reserved[12] = 1;
    expect(() => decodeHello(reserved)).toThrow(/reserved/);
    expect(() => new SharedRequestDecoder(() => undefined).push(reserved)).toThrow(/reserved/);
    expect(() => encodeHello({ memoryFd: -1 })).toThrow(/not a descriptor number/);
  });

  function stream(hello: SharedHello, records: Array<{ type: number; seq: number; len: number; offset?: number; placed?: number; payload?: Buffer }>): Buffer {
    const parts = [encodeHello(hello), encodeReady()];
    for (const r of records) {
      parts.push(encodeHeader({ seq: r.seq, type: r.type, flags: 0, sector: r.seq * 8, len: r.len }));
      parts.push(encodePlacement({ offset: r.offset ?? 0, length: r.placed ?? 0 }));
      if (r.payload) parts.push(r.payload);
    }
    return Buffer.concat(parts);
  }

  it('decodes hello and requests whatever the cuts', () => {
    const write = Buffer.alloc(1024, 7);
    const bytes = stream({ memoryFd: 7 }, [
      { type: DmUserRequest.Read, seq: 0, len: 1 << 20, offset: 1 << 20, placed: 1 << 20 },
      { type: DmUserRequest.Write, seq: 1, len: 1024, payload: write },
      { type: DmUserRequest.Read, seq: 2, len: 4096 },
      { type: DmUserRequest.Flush, seq: 3, len: 0 },
    ]);
    for (const cut of [1, 3, 17, 56, bytes.length]) {
      const hellos: SharedHello[] = [];
      const decoder = new SharedRequestDecoder((h) => hellos.push(h));
      const got: SharedMessage[] = [];
      for (let at = 0; at < bytes.length; at += cut) got.push(...decoder.push(bytes.subarray(at, at + cut)));
      expect(hellos).toEqual([{ memoryFd: 7 }]);
      expect(got.map((m) => [m.header.seq, m.placement.offset, m.placement.length, m.payload.length])).toEqual([
        [0, 1 << 20, 1 << 20, 0],
        [1, 0, 0, 1024],
        [2, 0, 0, 0],
        [3, 0, 0, 0],
      ]);
      expect(got[1].payload.equals(write)).toBe(true);
    }
  });

  it('refuses anything but the ready echo after the hello', () => {
    const decoder = new SharedRequestDecoder(() => undefined);
    expect(() => decoder.push(Buffer.concat([encodeHello({ memoryFd: 7 }), encodeHeader({ seq: 0, type: DmUserRequest.Read, flags: 0, sector: 0, len: 4096 })]))).toThrow(/shared dm-user ready: bad magic/);
    let attached = 0;
    const ok = new SharedRequestDecoder(() => undefined, () => attached++);
    ok.push(Buffer.concat([encodeHello({ memoryFd: 7 }), encodeReady()]));
    expect(attached).toBe(1);
  });

  it('refuses a placement that is not a whole READ answer', () => {
    const onWrite = stream({ memoryFd: 7 }, [{ type: DmUserRequest.Write, seq: 5, len: 4096, placed: 4096, payload: Buffer.alloc(4096) }]);
    expect(() => new SharedRequestDecoder(() => undefined).push(onWrite)).toThrow(/seq 5: placement of 4096 bytes for a Write/);
    const short = stream({ memoryFd: 7 }, [{ type: DmUserRequest.Read, seq: 6, len: 8192, placed: 4096 }]);
    expect(() => new SharedRequestDecoder(() => undefined).push(short)).toThrow(/seq 6: placement of 4096 bytes for a Read of 8192/);
    const huge = stream({ memoryFd: 7 }, [{ type: DmUserRequest.Read, seq: 7, len: 4096 }]);
    huge.writeUInt32LE(0xffffffff, huge.length - 4);
    expect(() => new SharedRequestDecoder(() => undefined).push(huge)).toThrow(/beyond 2\^53/);
  });
});
