import { Command, CommanderError } from 'commander';
import { isVabError } from '../util/errors';
import { registerRuntimeCommands } from './commands/runtime';
import { registerCowCommands } from './commands/cow';
import { registerPayloadCommands } from './commands/payload';
import { registerDemoCommands } from './commands/demo';
import { registerSnapuserdCommands } from './commands/snapuserd';
import { registerStatusCommand } from './commands/status';
import { registerDeviceCommands } from './commands/device';
import { registerCrashtestCommand } from './commands/crashtest';
import { registerSnapctlCommand } from './commands/snapctl';
import { registerApplyCommands } from './commands/apply';

/** The `vab` command: each command module parses its flags and calls one library function. */
export function buildProgram(): Command {
  const program = new Command('vab')
    .description('Android-style Virtual A/B OTA updates on any Linux host')
    .version(require('../../../package.json').version as string)
    .showHelpAfterError()
    .exitOverride();
  registerRuntimeCommands(program);
  registerCowCommands(program);
  registerPayloadCommands(program);
  registerDemoCommands(program);
  registerSnapuserdCommands(program);
  registerStatusCommand(program);
  registerDeviceCommands(program);
  registerCrashtestCommand(program);
  registerSnapctlCommand(program);
  registerApplyCommands(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`vab: ${isVabError(err) ? `${message} [${err.code}]` : message}\n`);
    return 1;
  }
}

/**
 * Runs the command line of this process and sets its exit status. The status is set, not forced
 * with process.exit: long-running commands (kernel, daemons) end when their work does, and output
 * piped to another process is never cut short.
 */
export function runCli(): void {
  main(process.argv).then(
    (code) => {
      process.exitCode = code;
    },
    (err) => {
      process.stderr.write(`vab: ${String(err)}\n`);
      process.exitCode = 1;
    },
  );
}

// `node dist/src/cli/main.js` keeps working; the package's command is bin/vab.
if (require.main === module) runCli();
