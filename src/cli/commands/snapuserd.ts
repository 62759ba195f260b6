import { Command } from 'commander';
import { VabError } from '../../util/errors';
import type { SocketTransport } from '../../dmuser/socket-channel';
import { integer, transportOption } from '../options';
import { nextSignal } from '../signals';

/** Repeated here so that `vab --help` need not load the daemon (src/snapuserd/daemon.ts has the same). */
const DEFAULT_SNAPUSERD_CHANNELS = 4;

/** `vab snapuserd`: the daemon that serves COW snapshots over dm-user. */
export function registerSnapuserdCommands(program: Command): void {
  program
    .command('snapuserd [handlers...]')
    .description('serve COW snapshots over dm-user in the foreground, controlled through its socket; with --no-socket, each handler is misc,cow,backing,base (absolute paths) and is started at once')
    .requiredOption('--run <dir>', 'run directory of the kernel (channels open <run>/dm-user/<misc>)')
    .option('--channels <n>', 'channels per handler', integer(1), DEFAULT_SNAPUSERD_CHANNELS)
    .addOption(transportOption())
    .option('--log <file>', 'JSON log file (default: stderr)')
    .option('--socket <path>', 'control socket (default <run>/snapuserd.sock)')
    .option('--no-socket', "no control socket: start the handlers given as arguments (Android's boot daemon)")
    .action(async (handlers: string[], opts: { run: string; channels: number; transport: SocketTransport; log?: string; socket?: string | false }) => {
      if (opts.socket === false && handlers.length === 0) throw new VabError('EINVAL_INPUT', '--no-socket needs at least one misc,cow,backing,base handler');
      const { defaultSocketPath, parseHandlerSpec, startSnapuserd } = require('../../snapuserd/daemon') as typeof import('../../snapuserd/daemon');
      const { createLogger } = require('../../util/log') as typeof import('../../util/log');
      const specs = handlers.map(parseHandlerSpec);
      const logger = createLogger('snapuserd', { file: opts.log });
      const socketPath = opts.socket === false ? undefined : (opts.socket ?? defaultSocketPath(opts.run));
      // Handlers first: a supervisor may signal as soon as it sees the ready line.
      const signal = nextSignal();
      const daemon = await startSnapuserd({ runDir: opts.run, channels: opts.channels, transport: opts.transport, logger, handlers: specs, socketPath });
      const serving = specs.length > 0 ? `, serving ${specs.map((s) => s.misc).join(' ')}` : '';
      process.stdout.write(`vab snapuserd: ready${socketPath ? `, listening on ${socketPath}` : ''}${serving}\n`);
      const how = await Promise.race([signal.then((s) => s as string), daemon.finished]);
      await daemon.stop();
      process.stdout.write(`vab snapuserd: stopped (${how})\n`);
    });
}
