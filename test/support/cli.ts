import { existsSync } from 'node:fs';
import path from 'node:path';
import { ChildHandle, run, RunOptions, RunResult, start, StartOptions } from '../../src/util/exec';

/**
 * Starts the CLI the way a user does: the package's bin entry, run as a program (its #! line, its
 * exec bit), against the build in dist/ (`npm run build` first; `npm test` does).
 */
export const REPO = path.resolve(__dirname, '../..');
export const VAB_BIN = path.join(REPO, 'bin/vab');
const BUILT_MAIN = path.join(REPO, 'dist/src/cli/main.js');

function ensureBuilt(): void {
  if (!existsSync(BUILT_MAIN)) throw new Error(`${BUILT_MAIN} is missing: run npm run build first (npm test does)`);
}

/** Runs `vab ARGS...` to its end; a non-zero exit is a result, not an error. */
export function vab(args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  ensureBuilt();
  return run(VAB_BIN, args, { timeoutMs: 60_000, ...options });
}

/** Starts a long-running `vab ARGS...` (kernel, daemons); stop it in afterAll. */
export function startVab(args: readonly string[], options: StartOptions = {}): ChildHandle {
  ensureBuilt();
  return start(VAB_BIN, args, { label: `vab ${args[0] ?? ''}`.trim(), ...options });
}
