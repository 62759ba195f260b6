import cliProgress from 'cli-progress';
import type { Logger } from '../util/log';
import { nullLogger } from '../util/log';

/**
 * The post-install progress protocol: the program writes `global_progress <fraction>` lines on
 * fd 3. update_engine reads them with sscanf("global_progress %lf"), so the number may follow the
 * keyword with or without spaces and anything after it is ignored; NaN is dropped, other values
 * are clamped to [0, 1] (infinities count as 0). Any other line is ignored.
 */
const PROGRESS_LINE = /^global_progress\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?inf(?:inity)?|[+-]?nan)/i;

/** A line longer than this is not a progress line; its bytes are dropped up to the next newline. */
const MAX_LINE = 4096;

/** The fraction a progress line reports, or undefined when the line is not one (or is NaN). */
export function parseProgressLine(line: string): { fraction: number; clamped: boolean } | undefined {
  const match = PROGRESS_LINE.exec(line);
  if (!match) return undefined;
  const text = match[1].toLowerCase();
  const value = text.includes('nan') ? NaN : text.includes('inf') ? (text.startsWith('-') ? -Infinity : Infinity) : Number(text);
  if (Number.isNaN(value)) return undefined;
  if (!Number.isFinite(value) || value < 0) return { fraction: 0, clamped: true };
  if (value > 1) return { fraction: 1, clamped: true };
  return { fraction: value, clamped: false };
}

/** Splits a byte stream into lines, however it is chunked, and reports the progress lines. */
export class ProgressLineReader {
  private partial = '';
  private overlong = false;

  constructor(
    private readonly onFraction: (fraction: number) => void,
    private readonly log: Logger = nullLogger,
    private readonly label = 'postinstall',
  ) {}

  push(text: string): void {
    const parts = text.split('\n');
    const last = parts.pop() ?? '';
    for (const part of parts) {
      if (this.overlong) this.overlong = false;
      else this.line(this.partial + part);
      this.partial = '';
    }
    if (this.overlong) return;
    this.partial += last;
    if (this.partial.length > MAX_LINE) {
      this.log.warn('postinstall progress line too long, dropped', { program: this.label, length: this.partial.length });
      this.partial = '';
      this.overlong = true;
    }
  }

  /** The program closed fd 3: a last line without a newline still counts. */
  end(): void {
    if (!this.overlong && this.partial !== '') this.line(this.partial);
    this.partial = '';
    this.overlong = false;
  }

  private line(line: string): void {
    const parsed = parseProgressLine(line);
    if (!parsed) {
      this.log.debug('postinstall status line ignored', { program: this.label, line: line.slice(0, 200) });
      return;
    }
    if (parsed.clamped) this.log.warn('postinstall progress out of range, clamped', { program: this.label, line: line.slice(0, 200), fraction: parsed.fraction });
    this.onFraction(parsed.fraction);
  }
}

export type PostinstallEvent =
  | { event: 'start'; partition: string; index: number; count: number; fstype: string; mountedVia: 'file' | 'loop'; overall: number }
  | { event: 'progress'; partition: string; fraction: number; overall: number }
  | { event: 'done'; partition: string; status: 'ok' | 'failed' | 'failed-optional'; code: number | null; signal: string | null; elapsedMs: number; overall: number };

export interface PostinstallPresenter {
  onProgress(event: PostinstallEvent): void;
  finish(): void;
}

/**
 * Shows post-install progress: JSON lines on `out` with `json`; otherwise a bar on a terminal, or
 * one line per finished partition when `out` is not one (logs and CI stay readable).
 */
export function createPostinstallPresenter(options: { json: boolean; out?: NodeJS.WriteStream }): PostinstallPresenter {
  const out = options.out ?? process.stdout;
  if (options.json) {
    return { onProgress: (event) => void out.write(`${JSON.stringify(event)}\n`), finish: () => undefined };
  }
  if (!out.isTTY) {
    return {
      onProgress: (event) => {
        if (event.event === 'start') out.write(`postinstall ${event.partition} (${event.fstype}, ${event.index + 1}/${event.count})\n`);
        if (event.event === 'done') out.write(`postinstall ${event.partition}: ${event.status}${exitText(event)}\n`);
      },
      finish: () => undefined,
    };
  }
  // Whole permille: fine enough for a bar, and cli-progress redraws only on change.
  const bar = new cliProgress.SingleBar(
    { format: 'postinstall [{bar}] {percentage}% | {partition}', stream: out, hideCursor: true, clearOnComplete: false },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    onProgress: (event) => {
      const value = Math.round(event.overall * 1000);
      if (!started) {
        bar.start(1000, value, { partition: event.partition });
        started = true;
      } else {
        bar.update(value, { partition: event.event === 'done' ? `${event.partition} ${event.status}` : event.partition });
      }
    },
    finish: () => {
      if (started) bar.stop();
    },
  };
}

function exitText(event: { code: number | null; signal: string | null }): string {
  if (event.signal) return ` (killed by ${event.signal})`;
  return event.code ? ` (exit ${event.code})` : '';
}
