import { Command } from 'commander';
import { integer } from '../options';

/** `vab crashtest`: the crash-restart scenarios end to end, on images it makes itself. */
export function registerCrashtestCommand(program: Command): void {
  program
    .command('crashtest')
    .description('kill daemons and processes at chosen moments and check that nothing hangs or is lost; exit 1 if any round fails')
    .option('--scenario <name>', 'run only this scenario (repeatable; default: all)', (v: string, prev: string[]) => [...prev, v], [] as string[])
    .option('--rounds <n>', 'rounds per scenario', integer(1), 1)
    .option('--seed <n>', 'seed for kill points and delays (default: random, printed)', integer(0))
    .option('--json <file>', 'also write the report as JSON')
    .option('--keep', 'keep each round\'s directory (logs, images)')
    .option('--list', 'list the scenarios and exit')
    .action(async (opts: { scenario: string[]; rounds: number; seed?: number; json?: string; keep?: boolean; list?: boolean }) => {
      const { SCENARIOS, formatReport, runCrashtest, selectScenarios, writeReport } = require('../../ota/crashtest') as typeof import('../../ota/crashtest');
      if (opts.list) {
        for (const s of SCENARIOS) process.stdout.write(`${s.name}\t${s.description}\n`);
        return;
      }
      const scenarios = selectScenarios(opts.scenario);
      const seed = opts.seed ?? Math.floor(Math.random() * 2 ** 31);
      process.stdout.write(`vab crashtest: seed ${seed}, ${scenarios.length} scenarios x ${opts.rounds} rounds\n`);
      const report = await runCrashtest({
        scenarios,
        rounds: opts.rounds,
        seed,
        keep: opts.keep,
        onRound: (r) => process.stdout.write(`  ${r.ok ? 'ok  ' : 'FAIL'} ${r.scenario} round ${r.round} (${(r.ms / 1000).toFixed(1)} s)${r.ok ? '' : `: ${r.error}`}${r.dir ? ` [${r.dir}]` : ''}\n`),
      });
      process.stdout.write(formatReport(report));
      if (opts.json) await writeReport(opts.json, report);
      if (!report.ok) process.exitCode = 1;
    });
}
