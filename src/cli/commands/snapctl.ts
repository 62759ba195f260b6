import { Command } from 'commander';
import path from 'node:path';
import { integer } from '../options';

/** Commands that get no reply: the daemon acts and the connection ends. */
const NO_REPLY = new Set(['detach', 'stop']);

/** `vab snapctl`: one control command to snapuserd, like Android's snapuserd_client. */
export function registerSnapctlCommand(program: Command): void {
  program
    .command('snapctl <command>')
    .description('send one control command to snapuserd and print its reply (e.g. init,misc,cow,backing,base; start,misc; getstatus,misc; merge_percent); exit 1 on fail')
    .requiredOption('--run <dir>', 'run directory (the socket is <run>/snapuserd.sock)')
    .option('--socket <path>', 'control socket (default <run>/snapuserd.sock)')
    .option('--timeout-ms <n>', 'keep trying to connect this long (the daemon may be starting)', integer(1), 10_000)
    .action(async (command: string, opts: { run: string; socket?: string; timeoutMs: number }) => {
      const { SnapuserdClient } = require('../../snapuserd/control/client') as typeof import('../../snapuserd/control/client');
      const socket = opts.socket ?? path.join(opts.run, 'snapuserd.sock');
      const client = await SnapuserdClient.connect(socket, opts.timeoutMs);
      try {
        if (NO_REPLY.has(command.split(',')[0])) {
          await client.sendNoReply(command);
          await client.waitClosed(opts.timeoutMs);
          process.stdout.write(`${command}: sent\n`);
          return;
        }
        const reply = await client.send(command);
        process.stdout.write(`${reply}\n`);
        if (reply === 'fail') process.exitCode = 1;
      } finally {
        client.close();
      }
    });
}
