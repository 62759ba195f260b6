import type { Command } from 'commander';
import { runRuntimeDemo } from '../../ota/demo-runtime';

export function registerDemoCommands(program: Command): void {
  const demo = program.command('demo').description('guided demonstrations on built-in fixtures');
  demo
    .command('runtime')
    .description('serve a filesystem through vab kernel + a daemon, kill the daemon, restart it supervised')
    .option('--work <dir>', 'work in this directory and keep it (default: a temporary one, removed)')
    .option('--daemon-timeout-ms <ms>', 'wait for a daemon on a new target', '2000')
    .option('--restart-grace-ms <ms>', 'supervised mode grace for a restarted daemon', '5000')
    .action(async (opts: { work?: string; daemonTimeoutMs: string; restartGraceMs: string }) => {
      await runRuntimeDemo({ workDir: opts.work, daemonTimeoutMs: Number(opts.daemonTimeoutMs), restartGraceMs: Number(opts.restartGraceMs) });
    });
}
