import { promises as fs } from 'node:fs';
import { VabError } from '../../util/errors';
import { disposeDeviceFixture } from './device-fixture';
import { Rng } from './rng';
import { Figures, Scenario, ScenarioFailure } from './scenario';
import { World } from './world';

export interface RoundResult {
  scenario: string;
  round: number;
  seed: number;
  ok: boolean;
  ms: number;
  figures: Figures;
  error?: string;
  notes: string[];
  /** The round's directory, when kept. */
  dir?: string;
}

export interface ScenarioSummary {
  scenario: string;
  rounds: number;
  passed: number;
  failed: number;
  /** Median of each figure over the passing rounds. */
  figures: Figures;
}

export interface CrashtestReport {
  seed: number;
  rounds: RoundResult[];
  scenarios: ScenarioSummary[];
  ok: boolean;
}

export interface CrashtestOptions {
  scenarios: readonly Scenario[];
  rounds: number;
  seed: number;
  keep?: boolean;
  /** Longest a round may take before it is failed and torn down (a hang in the runtime). */
  roundTimeoutMs?: number;
  onRound?: (r: RoundResult) => void;
}

const DEFAULT_ROUND_TIMEOUT_MS = 120_000;

/**
 * Runs each scenario `rounds` times, each round in a world of its own that is torn down whatever
 * happens. A round's seed derives from the run's seed, the scenario and the round number, so
 * `--seed S --scenario X` replays it; a round that outlives its timeout fails as a hang.
 */
export async function runCrashtest(options: CrashtestOptions): Promise<CrashtestReport> {
  const rounds: RoundResult[] = [];
  try {
    for (const scenario of options.scenarios) {
      for (let round = 1; round <= options.rounds; round++) {
        const result = await runRound(scenario, round, options);
        rounds.push(result);
        options.onRound?.(result);
      }
    }
  } finally {
    await disposeDeviceFixture();
  }
  const scenarios = options.scenarios.map((s) => summarize(s.name, rounds.filter((r) => r.scenario === s.name)));
  return { seed: options.seed, rounds, scenarios, ok: rounds.every((r) => r.ok) };
}

async function runRound(scenario: Scenario, round: number, options: CrashtestOptions): Promise<RoundResult> {
  const seed = Rng.roundSeed(options.seed, scenario.name, round);
  const rng = new Rng(seed);
  const notes: string[] = [];
  const world = await World.create(scenario.name, rng);
  const startedAt = Date.now();
  const result: RoundResult = { scenario: scenario.name, round, seed, ok: false, ms: 0, figures: {}, notes };
  const limit = options.roundTimeoutMs ?? DEFAULT_ROUND_TIMEOUT_MS;
  let timer: NodeJS.Timeout | undefined;
  try {
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new ScenarioFailure(`the round did not finish within ${limit} ms (something hangs)`)), limit);
    });
    result.figures = await Promise.race([scenario.run({ world, rng, note: (line) => notes.push(line) }), timeout]);
    result.ok = true;
  } catch (err) {
    result.error = err instanceof ScenarioFailure ? err.message : `${(err as Error).message}${err instanceof VabError ? ` [${err.code}]` : ''}`;
  } finally {
    clearTimeout(timer);
    result.ms = Date.now() - startedAt;
    await world.dispose(options.keep === true).catch((err: Error) => notes.push(`cleanup: ${err.message}`));
    if (options.keep) result.dir = world.dir;
  }
  return result;
}

function summarize(name: string, rounds: RoundResult[]): ScenarioSummary {
  const passed = rounds.filter((r) => r.ok);
  const figures: Figures = {};
  const keys = new Set(passed.flatMap((r) => Object.keys(r.figures)));
  for (const key of keys) figures[key] = median(passed.map((r) => r.figures[key]).filter((v) => Number.isFinite(v)));
  return { scenario: name, rounds: rounds.length, passed: passed.length, failed: rounds.length - passed.length, figures };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

export function formatReport(report: CrashtestReport): string {
  const rows = [['scenario', 'rounds', 'passed', 'failed', 'figures (median)']];
  for (const s of report.scenarios) {
    const figures = Object.entries(s.figures).map(([k, v]) => `${k}=${Math.round(v * 10) / 10}`).join(' ');
    rows.push([s.scenario, String(s.rounds), String(s.passed), String(s.failed), figures]);
  }
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  const lines = rows.map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]))).join('  '));
  for (const r of report.rounds.filter((x) => !x.ok)) {
    lines.push(`FAILED ${r.scenario} round ${r.round}: ${r.error}`);
    lines.push(`  replay: vab crashtest --scenario ${r.scenario} --seed ${report.seed} --rounds ${r.round}`);
    for (const note of r.notes) lines.push(`  ${note}`);
  }
  return `${lines.join('\n')}\n`;
}

export async function writeReport(file: string, report: CrashtestReport): Promise<void> {
  await fs.writeFile(file, JSON.stringify(report, null, 2) + '\n');
}
