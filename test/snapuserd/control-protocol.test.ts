import fc from 'fast-check';
import { ControlCommand, encodeRequest, formatMergePercent, initReply, MAX_REQUEST_BYTES, parseRequest, requestText } from '../../src/snapuserd/control/protocol';

/** Requests as Android's SnapuserdClient writes them, byte for byte (snapuserd_client.cpp). */
const GOLDEN: Array<[ControlCommand, string]> = [
  [{ kind: 'query' }, 'query'],
  [{ kind: 'init', misc: 'system_b-init', cow: '/dev/block/dm-3', backing: '/dev/block/dm-1', base: '/dev/block/dm-0' }, 'init,system_b-init,/dev/block/dm-3,/dev/block/dm-1,/dev/block/dm-0'],
  [{ kind: 'start', misc: 'system_b' }, 'start,system_b'],
  [{ kind: 'delete', misc: 'system_b' }, 'delete,system_b'],
  [{ kind: 'detach' }, 'detach'],
  [{ kind: 'stop' }, 'stop'],
  [{ kind: 'supports', feature: 'second_stage_socket_handoff' }, 'supports,second_stage_socket_handoff'],
  [{ kind: 'initiate_merge', misc: 'vendor_b' }, 'initiate_merge,vendor_b'],
  [{ kind: 'merge_percent' }, 'merge_percent'],
  [{ kind: 'getstatus', misc: 'vendor_b' }, 'getstatus,vendor_b'],
  [{ kind: 'update-verify' }, 'update-verify'],
  [{ kind: 'pause_merge' }, 'pause_merge'],
  [{ kind: 'resume_merge' }, 'resume_merge'],
];

describe('snapuserd control protocol', () => {
  it.each(GOLDEN)('encodes and decodes %j as Android\'s bytes', (command, text) => {
    expect(encodeRequest(command)).toEqual(Buffer.from(text, 'latin1'));
    expect(parseRequest(requestText(Buffer.from(text, 'latin1')))).toEqual({ ok: true, command });
  });

  it('accepts one trailing newline (LF or CRLF), for people typing', () => {
    expect(parseRequest(requestText(Buffer.from('query\n')))).toEqual({ ok: true, command: { kind: 'query' } });
    expect(parseRequest(requestText(Buffer.from('start,sys\r\n')))).toEqual({ ok: true, command: { kind: 'start', misc: 'sys' } });
  });

  it('replies in Android\'s words: success,<sectors> and %f percentages', () => {
    expect(initReply(8192)).toBe('success,8192');
    expect(formatMergePercent(42.5)).toBe('42.500000');
    expect(formatMergePercent(0)).toBe('0.000000');
    expect(formatMergePercent(100)).toBe('100.000000');
    expect(formatMergePercent(100 / 3)).toBe('33.333333');
    expect(formatMergePercent(Number.NaN)).toBe('0.000000');
  });

  it.each([
    ['init,sys,/a,/b', 'init needs 5 parts'],
    ['init,sys,/a,/b,/c,/d', 'init needs 5 parts'],
    ['init,sys,relative.cow,/b,/c', 'cow path "relative.cow" is not absolute'],
    ['init,../x,/a,/b,/c', 'misc name'],
    ['start', 'start needs 2 parts'],
    ['start,a,b', 'start needs 2 parts'],
    ['delete,', 'misc name'],
    ['supports', 'supports needs 2 parts'],
  ])('answers a malformed %s with fail and keeps the client', (text, reason) => {
    const parsed = parseRequest(text);
    expect(parsed).toMatchObject({ ok: false, kind: 'malformed', reply: 'fail' });
    expect(!parsed.ok && parsed.reason).toContain(reason);
  });

  it('answers a malformed getstatus with snapshot-merge-failed, as Android', () => {
    expect(parseRequest('getstatus')).toMatchObject({ ok: false, kind: 'malformed', reply: 'snapshot-merge-failed' });
  });

  it.each(['', 'bogus', 'QUERY', 'init_x,1', 'query\u0000', 'start,sys\u00ff', 'x'.repeat(MAX_REQUEST_BYTES + 1)].map((t) => [t.length > 40 ? `${t.length} bytes` : JSON.stringify(t), t]))('treats %s as an unknown command', (_label, text) => {
    expect(parseRequest(text)).toMatchObject({ ok: false, kind: 'unknown' });
  });

  it('never throws on random bytes, and every outcome is a reply or a drop', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
        const parsed = parseRequest(requestText(Buffer.from(bytes)));
        if (parsed.ok) expect(parsed.command.kind).toBeDefined();
        else if (parsed.kind === 'malformed') expect(parsed.reply).toMatch(/^(fail|snapshot-merge-failed)$/);
        else expect(parsed.reason.length).toBeGreaterThan(0);
      }),
      { numRuns: 2000 },
    );
  });

  it('round-trips every well-formed command', () => {
    const name = fc.stringMatching(/^[a-z][a-z0-9_-]{0,20}$/);
    const file = name.map((n) => `/data/${n}`);
    const command: fc.Arbitrary<ControlCommand> = fc.oneof(
      fc.record({ kind: fc.constant('init' as const), misc: name, cow: file, backing: file, base: file }),
      fc.record({ kind: fc.constantFrom('start' as const, 'delete' as const, 'initiate_merge' as const, 'getstatus' as const), misc: name }),
      fc.record({ kind: fc.constantFrom('query' as const, 'detach' as const, 'stop' as const, 'merge_percent' as const, 'update-verify' as const, 'pause_merge' as const, 'resume_merge' as const) }),
    );
    fc.assert(fc.property(command, (c) => void expect(parseRequest(requestText(encodeRequest(c)))).toEqual({ ok: true, command: c })));
  });
});
