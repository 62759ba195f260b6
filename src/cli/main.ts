import { Command, CommanderError } from 'commander';
import { isVabError } from '../util/errors';
import { registerRuntimeCommands } from './commands/runtime';
import { registerCowCommands } from './commands/cow';
import { registerPayloadCommands } from './commands/payload';
import { registerDemoCommands } from './commands/demo';
import { registerStatusCommand } from './commands/status';

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
  registerStatusCommand(program);
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

if (require.main === module) {
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
