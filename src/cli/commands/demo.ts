import type { Command } from 'commander';
import { integer } from '../options';

export function registerDemoCommands(program: Command): void {
  const demo = program.command('demo').description('guided demonstrations on devices and images made on the spot');
  demo
    .command('lifecycle', { isDefault: true })
    .description('the whole update: generate a signed payload, apply it, boot the snapshots, post-install with the daemon killed and handed off, merge with the daemon killed')
    .option('--work <dir>', 'work in this directory and keep it (default: a temporary one, removed)')
    .action(async (opts: { work?: string }) => {
      const { runLifecycleDemo } = require('../../ota/demo-lifecycle') as typeof import('../../ota/demo-lifecycle');
      await runLifecycleDemo({ workDir: opts.work });
    });
  demo
    .command('runtime')
    .description('serve a filesystem through vab kernel + a daemon, kill the daemon, restart it supervised')
    .option('--work <dir>', 'work in this directory and keep it (default: a temporary one, removed)')
    .option('--daemon-timeout-ms <ms>', 'wait for a daemon on a new target', integer(1), 2000)
    .option('--restart-grace-ms <ms>', 'supervised mode grace for a restarted daemon', integer(1), 5000)
    .action(async (opts: { work?: string; daemonTimeoutMs: number; restartGraceMs: number }) => {
      const { runRuntimeDemo } = require('../../ota/demo-runtime') as typeof import('../../ota/demo-runtime');
      await runRuntimeDemo({ workDir: opts.work, daemonTimeoutMs: opts.daemonTimeoutMs, restartGraceMs: opts.restartGraceMs });
    });
}
