import type { Rng } from './rng';
import type { World } from './world';

export interface ScenarioContext {
  world: World;
  rng: Rng;
  /** A line of narration for --verbose and for the failure report. */
  note: (line: string) => void;
}

/** Figures a round measured, by name (milliseconds unless the name says otherwise). */
export type Figures = Record<string, number>;

/** One crash scenario: it throws when what it checks does not hold. */
export interface Scenario {
  name: string;
  description: string;
  run(ctx: ScenarioContext): Promise<Figures>;
}

export class ScenarioFailure extends Error {}

export function check(condition: boolean, message: string): asserts condition {
  if (!condition) throw new ScenarioFailure(message);
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `condition` every 20 ms; fails the round when it does not hold within `timeoutMs`. */
export async function waitUntil(condition: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > until) throw new ScenarioFailure(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}
