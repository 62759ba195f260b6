import fc from 'fast-check';
import { DmUserDecoder, decodeHeader, encodeHeader, encodeMessage, DmUserHeader } from '../../src/dmuser/codec';
import { DM_USER_HEADER_SIZE, DmUserRequest } from '../../src/dmuser/constants';
import { VabError } from '../../src/util/errors';

/** Builds a header byte by byte, independently of the encoder under test. */
function goldenHeader(fields: bigint[]): Buffer {
  const out: number[] = [];
  for (const field of fields) {
    for (let i = 0n; i < 8n; i++) out.push(Number((field >> (8n * i)) & 0xffn));
  }
  return Buffer.from(out);
}

const requestPayload = (h: DmUserHeader): number => (h.type === DmUserRequest.Write ? h.len : 0);

describe('dm-user header codec', () => {
  const header: DmUserHeader = { seq: 0x0102030405, type: 1, flags: 0x408, sector: 0x1_0000_0007, len: 4096 };
  const golden = goldenHeader([0x0102030405n, 1n, 0x408n, 0x1_0000_0007n, 4096n]);

  it('encodes to the golden bytes', () => {
    expect(encodeHeader(header).equals(golden)).toBe(true);
    expect(golden.length).toBe(DM_USER_HEADER_SIZE);
  });

  it('decodes the golden bytes', () => {
    expect(decodeHeader(golden)).toEqual(header);
  });

  it('refuses a field beyond 2^53 instead of rounding it', () => {
    const bad = goldenHeader([1n << 60n, 0n, 0n, 0n, 0n]);
    expect(() => decodeHeader(bad)).toThrow(VabError);
  });

  it('refuses a truncated header', () => {
    expect(() => decodeHeader(golden.subarray(0, 39))).toThrow(/40 bytes/);
  });

  it('refuses negative or fractional fields on encode', () => {
    expect(() => encodeHeader({ ...header, len: -1 })).toThrow(VabError);
    expect(() => encodeHeader({ ...header, sector: 1.5 })).toThrow(VabError);
  });
});

describe('dm-user streaming decoder', () => {
  const write = encodeMessage({ seq: 7, type: DmUserRequest.Write, flags: 0, sector: 8, len: 5 }, Buffer.from('hello'));
  const read = encodeMessage({ seq: 8, type: DmUserRequest.Read, flags: 0, sector: 16, len: 4096 });
  const stream = Buffer.concat([write, read, write]);

  it('gives the same messages whichever offset the stream is cut at', () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      const decoder = new DmUserDecoder(requestPayload);
      const got = [...decoder.push(stream.subarray(0, cut)), ...decoder.push(stream.subarray(cut))];
      expect(got.map((m) => [m.header.seq, m.payload.toString()])).toEqual([
        [7, 'hello'],
        [8, ''],
        [7, 'hello'],
      ]);
      expect(decoder.idle).toBe(true);
    }
  });

  it('round-trips random messages over random chunkings', () => {
    const u53 = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
    const message = fc.record({
      seq: u53,
      type: fc.constantFrom(DmUserRequest.Read, DmUserRequest.Write, DmUserRequest.Discard),
      flags: fc.integer({ min: 0, max: 0x7ffff }),
      sector: u53,
      data: fc.uint8Array({ maxLength: 64 }),
    });
    fc.assert(
      fc.property(fc.array(message, { maxLength: 8 }), fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1 }), (msgs, cuts) => {
        const wire = Buffer.concat(
          msgs.map((m) => {
            const payload = m.type === DmUserRequest.Write ? Buffer.from(m.data) : Buffer.alloc(0);
            return encodeMessage({ seq: m.seq, type: m.type, flags: m.flags, sector: m.sector, len: payload.length }, payload);
          }),
        );
        const decoder = new DmUserDecoder(requestPayload);
        const got = [];
        let at = 0;
        for (let i = 0; at < wire.length; i++) {
          const size = cuts[i % cuts.length];
          got.push(...decoder.push(wire.subarray(at, at + size)));
          at += size;
        }
        expect(got).toHaveLength(msgs.length);
        got.forEach((m, i) => {
          expect(m.header.seq).toBe(msgs[i].seq);
          expect(m.header.sector).toBe(msgs[i].sector);
          expect(m.header.flags).toBe(msgs[i].flags);
          const expected = msgs[i].type === DmUserRequest.Write ? Buffer.from(msgs[i].data) : Buffer.alloc(0);
          expect(m.payload.equals(expected)).toBe(true);
        });
        expect(decoder.idle).toBe(true);
      }),
    );
  });

  it('passes a payload-length rejection to the caller', () => {
    const decoder = new DmUserDecoder(() => {
      throw new VabError('EPROTO', 'unknown seq');
    });
    expect(() => decoder.push(read)).toThrow(/unknown seq/);
  });
});
