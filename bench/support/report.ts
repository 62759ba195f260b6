import { Command } from 'commander';

/**
 * What every benchmark shares: its command line (commander, with the CLI's value parsers, so a
 * bad value is a usage error, not a NaN) and its report. With --json, stdout carries exactly one
 * object, {"bench", "ratios", "figures"}, and the human report goes to stderr.
 */

export interface BenchJson {
  bench: string;
  /** Ratios against a baseline measured in the same run (names fixed per bench; see README). */
  ratios: Record<string, number>;
  /** The measurements behind them, with their unit in the name (`_s`, `_mib_s`, `_iops`, `_bytes`). */
  figures: Record<string, number>;
}

/** A benchmark's command: its own options added by `define`, plus --json. Exits with a usage error on a bad value. */
export function parseBenchArgs<T extends object>(bench: string, summary: string, define: (command: Command) => void, argv: readonly string[] = process.argv): T & { json: boolean } {
  const command = new Command(`bench/${bench}`).description(summary).showHelpAfterError('(--help lists the options)').allowExcessArguments(false);
  define(command);
  command.option('--json', 'print one JSON object {"bench","ratios","figures"} on stdout; the text report goes to stderr');
  command.parse([...argv]);
  const options = command.opts<T & { json?: boolean }>();
  return { ...options, json: options.json === true };
}

export class BenchReport {
  private readonly ratios: Record<string, number> = {};
  private readonly figures: Record<string, number> = {};

  constructor(
    readonly bench: string,
    private readonly json: boolean,
  ) {}

  /** A line of the human report. */
  line(text: string): void {
    (this.json ? process.stderr : process.stdout).write(`${text}\n`);
  }

  ratio(name: string, value: number): number {
    this.ratios[name] = round(value);
    return value;
  }

  figure(name: string, value: number): number {
    this.figures[name] = round(value);
    return value;
  }

  /** With --json, the one object on stdout; call once, when every figure is in. */
  finish(): void {
    if (!this.json) return;
    const out: BenchJson = { bench: this.bench, ratios: this.ratios, figures: this.figures };
    process.stdout.write(`${JSON.stringify(out)}\n`);
  }
}

/** Four significant digits for measurements (the machine's noise is far larger); counts stay exact. */
function round(value: number): number {
  return Number.isFinite(value) && !Number.isInteger(value) ? Number(value.toPrecision(4)) : value;
}
