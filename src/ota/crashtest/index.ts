import { VabError } from '../../util/errors';
import type { Scenario } from './scenario';
import { killDuringIo, lateDaemon, noDaemon } from './scenarios-io';
import { postinstallAndroid, postinstallHandoff, postinstallNoDaemon, postinstallSupervised } from './scenarios-postinstall';
import { applyKill, mergeKill } from './scenarios-update';
import { mergePowercut } from './scenarios-powercut';

/** Every scenario, in the order a full run takes them. */
export const SCENARIOS: readonly Scenario[] = [killDuringIo, lateDaemon, noDaemon, postinstallAndroid, postinstallHandoff, postinstallSupervised, postinstallNoDaemon, mergeKill, mergePowercut, applyKill];

export function selectScenarios(names: readonly string[]): Scenario[] {
  if (names.length === 0) return [...SCENARIOS];
  return names.map((name) => {
    const found = SCENARIOS.find((s) => s.name === name);
    if (!found) throw new VabError('EINVAL_INPUT', `unknown scenario ${JSON.stringify(name)}; scenarios: ${SCENARIOS.map((s) => s.name).join(', ')}`);
    return found;
  });
}

export { formatReport, runCrashtest, writeReport } from './runner';
export type { CrashtestReport, RoundResult } from './runner';
