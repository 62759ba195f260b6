import { PassThrough } from 'node:stream';
import { createPostinstallPresenter, parseProgressLine, PostinstallEvent, ProgressLineReader } from '../../src/ota/postinstall-progress';

/** The fd 3 protocol as update_engine reads it, and the two ways vab shows it. */
describe('parseProgressLine', () => {
  it.each([
    ['global_progress 0.5', { fraction: 0.5, clamped: false }],
    ['global_progress 1', { fraction: 1, clamped: false }],
    ['global_progress 0', { fraction: 0, clamped: false }],
    ['global_progress\t.25 and then some', { fraction: 0.25, clamped: false }],
    ['global_progress0.75', { fraction: 0.75, clamped: false }],
    ['global_progress 5e-1', { fraction: 0.5, clamped: false }],
    ['global_progress 1.5', { fraction: 1, clamped: true }],
    ['global_progress -0.5', { fraction: 0, clamped: true }],
    ['global_progress inf', { fraction: 0, clamped: true }],
    ['global_progress -Infinity', { fraction: 0, clamped: true }],
  ])('%j reports %j', (line, expected) => {
    expect(parseProgressLine(line)).toEqual(expected);
  });

  it.each(['global_progress nan', 'global_progress', 'global_progress x', ' global_progress 0.5', 'progress 0.5', 'GLOBAL-PROGRESS 0.5', ''])('%j is not a progress line', (line) => {
    expect(parseProgressLine(line)).toBeUndefined();
  });
});

describe('ProgressLineReader', () => {
  it('finds the same lines however the stream is cut, including a last line without newline', () => {
    const text = 'hello\nglobal_progress 0.1\n\nglobal_progress 0.2\r\nglobal_progress 9\nglobal_progress 0.3';
    for (const size of [1, 2, 3, 7, text.length]) {
      const seen: number[] = [];
      const reader = new ProgressLineReader((f) => seen.push(f));
      for (let at = 0; at < text.length; at += size) reader.push(text.slice(at, at + size));
      reader.end();
      expect(seen).toEqual([0.1, 0.2, 1, 0.3]);
    }
  });

  it('drops an endless line without growing, and reads on after its newline', () => {
    const seen: number[] = [];
    const reader = new ProgressLineReader((f) => seen.push(f));
    reader.push('global_progress 0.4');
    for (let i = 0; i < 100; i++) reader.push('x'.repeat(1000));
    reader.push('\nglobal_progress 0.6\n');
    reader.push('global_progress 0.7' + 'y'.repeat(5000));
    reader.end();
    expect(seen).toEqual([0.6]);
  });
});

const events: PostinstallEvent[] = [
  { event: 'start', partition: 'system', index: 0, count: 2, fstype: 'erofs', mountedVia: 'file', overall: 0 },
  { event: 'progress', partition: 'system', fraction: 0.5, overall: 0.25 },
  { event: 'done', partition: 'system', status: 'ok', code: 0, signal: null, elapsedMs: 12, overall: 0.5 },
  { event: 'start', partition: 'vendor', index: 1, count: 2, fstype: 'ext4', mountedVia: 'loop', overall: 0.5 },
  { event: 'done', partition: 'vendor', status: 'failed-optional', code: 1, signal: null, elapsedMs: 3, overall: 1 },
];

function capture(tty: boolean): { stream: NodeJS.WriteStream; text: () => string } {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (chunk: Buffer) => (text += chunk.toString()));
  Object.assign(stream, { isTTY: tty, columns: 100, rows: 24, cursorTo: () => true, clearLine: () => true, moveCursor: () => true });
  return { stream: stream as unknown as NodeJS.WriteStream, text: () => text };
}

describe('createPostinstallPresenter', () => {
  it('writes one JSON object per event with --json', () => {
    const out = capture(true);
    const presenter = createPostinstallPresenter({ json: true, out: out.stream });
    events.forEach((e) => presenter.onProgress(e));
    presenter.finish();
    expect(out.text().trimEnd().split('\n').map((line) => JSON.parse(line) as unknown)).toEqual(events);
  });

  it('writes a line per partition when stdout is not a terminal', () => {
    const out = capture(false);
    const presenter = createPostinstallPresenter({ json: false, out: out.stream });
    events.forEach((e) => presenter.onProgress(e));
    presenter.finish();
    expect(out.text()).toBe('postinstall system (erofs, 1/2)\npostinstall system: ok\npostinstall vendor (ext4, 2/2)\npostinstall vendor: failed-optional (exit 1)\n');
  });

  it('draws a bar weighted over the partitions on a terminal', () => {
    const out = capture(true);
    const presenter = createPostinstallPresenter({ json: false, out: out.stream });
    events.forEach((e) => presenter.onProgress(e));
    presenter.finish();
    expect(out.text()).toMatch(/postinstall \[.*\] 100% \| vendor failed-optional/);
    expect(out.text()).toMatch(/postinstall \[.*\] 0% \| system/);
  });
});
