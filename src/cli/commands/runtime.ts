import { Command } from 'commander';
import path from 'node:path';
import { DEFAULT_PARAMS } from '../../kernel/params';
import { VabError } from '../../util/errors';
import type { SocketTransport } from '../../dmuser/socket-channel';
import { integer, transportOption } from '../options';
import { nextSignal } from '../signals';

/**
 * The runtime: `vab kernel` (emulated dm-user), `vab dmctl` (its dmsetup), `vab passthrough` (a
 * daemon). Each action loads what it runs: short dmctl calls should not pay for the FUSE server.
 */
export function registerRuntimeCommands(program: Command): void {
  registerKernel(program);
  registerDmctl(program);
  registerPassthrough(program);
}


function registerKernel(program: Command): void {
  program
    .command('kernel')
    .description('run the emulated dm-user kernel in the foreground: block files under --mount, endpoints and control socket under --run')
    .requiredOption('--mount <dir>', 'directory for the block files (FUSE mount; created if missing)')
    .requiredOption('--run <dir>', 'directory for kernel.sock and dm-user/<name> (created if missing)')
    .option('--daemon-timeout-ms <n>', 'wait for a first daemon before failing IO', integer(0), DEFAULT_PARAMS.daemon_timeout_ms)
    .option('--restart-grace-ms <n>', 'after a daemon dies, wait this long for a new one and requeue its reads (0: fail at once, as Android)', integer(0), DEFAULT_PARAMS.restart_grace_ms)
    .option('--io-timeout-ms <n>', 'fail any IO still unanswered this long after it was issued', integer(1), DEFAULT_PARAMS.io_timeout_ms)
    .option('--channel-window <n>', 'unanswered messages one channel may hold', integer(1), DEFAULT_PARAMS.channel_window)
    .option('--max-io-bytes <n>', 'split reads and writes larger than this into several messages (a multiple of 512, from 4096)', integer(1), DEFAULT_PARAMS.max_io_bytes)
    .option('--page-cache', 'let the page cache sit in front of the block files (default: direct IO)')
    .option('--group <name>', 'let this group read the block files (mode 0640); default: root only (0600)')
    .option('--log <file>', 'JSON log file (default: stderr)')
    .action(async (opts: { mount: string; run: string; daemonTimeoutMs: number; restartGraceMs: number; ioTimeoutMs: number; channelWindow: number; maxIoBytes: number; pageCache?: boolean; group?: string; log?: string }) => {
      const { createLogger } = require('../../util/log') as typeof import('../../util/log');
      const { startKernelService } = require('../../kernel/service') as typeof import('../../kernel/service');
      const { resolveGroupId } = require('../../util/groups') as typeof import('../../util/groups');
      const readerGid = opts.group === undefined ? undefined : await resolveGroupId(opts.group);
      const logger = createLogger('kernel', { file: opts.log });
      // Handlers first: a supervisor may signal as soon as it sees the ready line.
      const signal = nextSignal();
      const service = await startKernelService({
        mountDir: opts.mount,
        runDir: opts.run,
        pageCache: opts.pageCache === true,
        readerGid,
        logger,
        params: {
          daemon_timeout_ms: opts.daemonTimeoutMs,
          restart_grace_ms: opts.restartGraceMs,
          io_timeout_ms: opts.ioTimeoutMs,
          channel_window: opts.channelWindow,
          max_io_bytes: opts.maxIoBytes,
        },
      });
      process.stdout.write(`vab kernel: ready mount=${service.mountDir} run=${service.runDir}\n`);
      const how = await Promise.race([signal.then((s) => s as string), service.ended]);
      await service.stop();
      process.stdout.write(`vab kernel: stopped (${how})\n`);
      if (how === 'mount-lost') process.exitCode = 1;
    });
}

function registerDmctl(program: Command): void {
  const dmctl = program
    .command('dmctl')
    .description("manage the running kernel's targets and parameters (its dmsetup)")
    .requiredOption('--run <dir>', 'run directory of the kernel');
  const runDir = (cmd: Command): string => (cmd.optsWithGlobals() as { run: string }).run;

  dmctl
    .command('create <name>')
    .description('create a target: block file <mount>/<name> and endpoint <run>/dm-user/<name>; with --linear, block file <name> maps FILE directly (no daemon)')
    .option('--size <bytes>', 'size in bytes, a multiple of 512 (required unless --linear: then the file size)', integer(1))
    .option('--linear <file>', 'map this file (absolute path) straight through, like dm-linear')
    .action(async (name: string, opts: { size?: number; linear?: string }, cmd: Command) => {
      const { createLinearTarget, createTarget } = require('../../kernel/control-client') as typeof import('../../kernel/control-client');
      if (opts.linear === undefined && opts.size === undefined) throw new VabError('EINVAL_INPUT', 'dmctl create needs --size (or --linear FILE)');
      const info = opts.linear !== undefined ? await createLinearTarget(runDir(cmd), name, path.resolve(opts.linear), opts.size) : await createTarget(runDir(cmd), name, opts.size!);
      process.stdout.write(`created ${info.name}: ${info.sectors} sectors${info.kind === 'linear' ? `, linear over ${info.file}` : ''}\n`);
    });

  dmctl
    .command('reload <name>')
    .description('swap what block file <name> maps to, keeping the file: a new dm-user misc name (snapuserd handoff) or a file (--linear)')
    .option('--misc <name>', 'new dm-user endpoint <run>/dm-user/<name>; queued IO moves there, IO the old daemon holds finishes through it')
    .option('--linear <file>', 'map this file straight through instead (after a merge)')
    .action(async (name: string, opts: { misc?: string; linear?: string }, cmd: Command) => {
      if ((opts.misc === undefined) === (opts.linear === undefined)) throw new VabError('EINVAL_INPUT', 'dmctl reload needs exactly one of --misc NAME or --linear FILE');
      const { reloadTarget } = require('../../kernel/control-client') as typeof import('../../kernel/control-client');
      const info = await reloadTarget(runDir(cmd), name, { misc: opts.misc, linear: opts.linear === undefined ? undefined : path.resolve(opts.linear) });
      process.stdout.write(`reloaded ${info.name}: ${info.kind === 'linear' ? `linear over ${info.file}` : `dm-user misc ${info.misc}`}\n`);
    });

  dmctl
    .command('remove <name>')
    .description('remove a target: queued IO fails, its daemon sees end of messages')
    .action(async (name: string, _opts: unknown, cmd: Command) => {
      const { removeTarget } = require('../../kernel/control-client') as typeof import('../../kernel/control-client');
      await removeTarget(runDir(cmd), name);
      process.stdout.write(`removed ${name}\n`);
    });

  dmctl
    .command('list')
    .description('list targets and parameters')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const { kernelStatus } = require('../../kernel/control-client') as typeof import('../../kernel/control-client');
      const status = await kernelStatus(runDir(cmd));
      if (opts.json) {
        process.stdout.write(JSON.stringify(status, null, 2) + '\n');
        return;
      }
      const params = Object.entries(status.params).map(([k, v]) => `${k}=${v}`).join(' ');
      const lines = [`kernel pid ${status.pid} mount=${status.mount} run=${status.run}`, `params: ${params}`];
      lines.push(['NAME', 'BYTES', 'SECTORS', 'MAPS', 'CHANNELS', 'QUEUED', 'HELD'].join('\t'));
      for (const t of status.targets) lines.push([t.name, t.sectors * 512, t.sectors, t.kind === 'linear' ? `linear:${t.file}` : `dm-user:${t.misc}`, t.channels, t.queued, t.held].join('\t'));
      process.stdout.write(lines.join('\n') + '\n');
    });

  dmctl
    .command('set <param> <value>')
    .description('set a kernel parameter: daemon_timeout_ms, restart_grace_ms, io_timeout_ms, channel_window, max_io_bytes')
    .action(async (param: string, value: string, _opts: unknown, cmd: Command) => {
      // Parsed here, not by commander: an error thrown inside an action would exit silently.
      const parsed = Number(value);
      if (!/^\d+$/.test(value) || !Number.isSafeInteger(parsed)) throw new VabError('EINVAL_INPUT', `${param}: expected a non-negative integer, got "${value}"`);
      const { setKernelParam } = require('../../kernel/control-client') as typeof import('../../kernel/control-client');
      await setKernelParam(runDir(cmd), param, parsed);
      process.stdout.write(`${param} = ${parsed}\n`);
    });
}

function registerPassthrough(program: Command): void {
  program
    .command('passthrough <name>')
    .description('serve a target from an image file (the reference dm-user daemon); exits 0 when the target is removed')
    .requiredOption('--run <dir>', 'run directory of the kernel')
    .requiredOption('--image <file>', 'backing image')
    .option('--channels <n>', 'channels to open (default: 4)', integer(1))
    .addOption(transportOption())
    .option('--log <file>', 'JSON log file (default: stderr)')
    .action(async (name: string, opts: { run: string; image: string; channels?: number; transport: SocketTransport; log?: string }) => {
      const { createLogger } = require('../../util/log') as typeof import('../../util/log');
      const { DEFAULT_PASSTHROUGH_CHANNELS, startPassthrough } = require('../../snapuserd/passthrough') as typeof import('../../snapuserd/passthrough');
      const channels = opts.channels ?? DEFAULT_PASSTHROUGH_CHANNELS;
      const logger = createLogger('passthrough', { file: opts.log });
      // Handlers first: a supervisor may signal as soon as it sees the serving line.
      const signal = nextSignal();
      const daemon = await startPassthrough({ runDir: opts.run, name, image: opts.image, channels, transport: opts.transport, logger });
      process.stdout.write(`vab passthrough: serving ${name} from ${opts.image} on ${channels} channels (transport ${daemon.transport})\n`);
      const how = await Promise.race([signal.then(() => 'signal'), daemon.done.then(() => 'ended')]);
      if (how === 'signal') await daemon.stop();
      process.stdout.write(`vab passthrough: ${name} ${how === 'signal' ? 'stopped' : 'target gone'}\n`);
    });
}
