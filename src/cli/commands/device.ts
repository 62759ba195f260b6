import { Command } from 'commander';
import { VabError } from '../../util/errors';
import { integer } from '../options';
import { nextSignal } from '../signals';

/** The commands that act on a device directory once an update is written: boot it, merge it. */
export function registerDeviceCommands(program: Command): void {
  registerBoot(program);
  registerMerge(program);
  registerPostinstall(program);
}

function registerPostinstall(program: Command): void {
  program
    .command('postinstall')
    .description("run each updated partition's post-install program from the booted snapshots (update_engine's post-install step)")
    .requiredOption('--device <dir>', 'device directory')
    .requiredOption('--mount <dir>', 'block file directory of the running vab boot')
    .requiredOption('--run <dir>', 'run directory of the running vab boot')
    .option('--timeout-s <n>', 'kill a program still running after this many seconds', integer(1), 900)
    .option('--json', 'print progress events as JSON lines')
    .option('--log <file>', 'JSON log file (default: stderr, warnings only)')
    .action(async (opts: { device: string; mount: string; run: string; timeoutS: number; json?: boolean; log?: string }) => {
      const { runDevicePostinstall } = require('../../ota/postinstall-device') as typeof import('../../ota/postinstall-device');
      const { createPostinstallPresenter } = require('../../ota/postinstall-progress') as typeof import('../../ota/postinstall-progress');
      const { PostinstallError } = require('../../ota/postinstall') as typeof import('../../ota/postinstall');
      const { createLogger } = require('../../util/log') as typeof import('../../util/log');
      const presenter = createPostinstallPresenter({ json: opts.json === true });
      const abort = new AbortController();
      void nextSignal().then(() => abort.abort());
      try {
        const results = await runDevicePostinstall({
          device: opts.device,
          mount: opts.mount,
          run: opts.run,
          timeoutMs: opts.timeoutS * 1000,
          onProgress: (e) => presenter.onProgress(e),
          signal: abort.signal,
          logger: createLogger('postinstall', opts.log ? { file: opts.log } : { level: 'warn' }),
        });
        presenter.finish();
        if (!opts.json) process.stdout.write(results.length === 0 ? 'vab postinstall: no partition asks for a post-install program\n' : `vab postinstall: ${results.map((r) => `${r.name} ${r.ok ? 'ok' : 'failed (optional)'}`).join(', ')}\n`);
      } catch (err) {
        presenter.finish();
        if (err instanceof PostinstallError && err.details.ioError) {
          throw new VabError('EIO', `${err.message} (an IO error reading partition ${err.partition}: is its daemon running?)`, { cause: err });
        }
        throw err;
      }
    });
}

function registerBoot(program: Command): void {
  program
    .command('boot')
    .description('run the device from its snapshots in the foreground: block files under --mount, served by vab kernel and vab snapuserd')
    .requiredOption('--device <dir>', 'device directory (super/, data/ota/, metadata/ota/)')
    .requiredOption('--mount <dir>', 'directory for the block files (FUSE mount; created if missing)')
    .requiredOption('--run <dir>', 'run directory: sockets, dm-user endpoints, logs, boot.json and pid files')
    .option('--daemon-timeout-ms <n>', 'how long IO waits for a first daemon before it fails', integer(0))
    .option('--restart-grace-ms <n>', 'after the daemon dies, how long IO waits for the next one (0: fail at once, as Android)', integer(0))
    .option('--supervise', 'start a new snapuserd whenever it dies, and give it its partitions again (SIGHUP restarts it by handoff in any case)')
    .option('--json', 'print the block files as one JSON object when ready')
    .option('--log <file>', 'JSON log file (default: stderr)')
    .action(async (opts: { device: string; mount: string; run: string; daemonTimeoutMs?: number; restartGraceMs?: number; supervise?: boolean; json?: boolean; log?: string }) => {
      const { bootDevice } = require('../../ota/boot/boot') as typeof import('../../ota/boot/boot');
      const { describePlan } = require('../../ota/boot/plan') as typeof import('../../ota/boot/plan');
      const { createLogger } = require('../../util/log') as typeof import('../../util/log');
      const logger = createLogger('boot', { file: opts.log });
      const signal = nextSignal();
      const print = (line: string): void => void process.stdout.write(`${line}\n`);
      const booted = await bootDevice({ ...opts, logger, print });
      if (opts.json) {
        print(JSON.stringify(booted.record));
      } else {
        print(`vab boot: ${describePlan(booted.plan)}`);
        for (const t of booted.record.targets) print(`${t.block_file}\t${t.kind === 'snapshot' ? 'snapshot (snapuserd)' : 'linear'}\t${t.size} bytes`);
        print(`vab boot: ready (kernel pid ${booted.record.kernel_pid}${booted.record.snapuserd_pid ? `, snapuserd pid ${booted.record.snapuserd_pid}` : ''})`);
      }
      // SIGHUP: restart snapuserd by handoff, one at a time.
      let handoffs = Promise.resolve();
      const onHangup = (): void => {
        handoffs = handoffs.then(() => booted.handoff()).catch((err: Error) => print(`vab boot: handoff failed: ${err.message}`));
      };
      process.on('SIGHUP', onHangup);
      const how = await Promise.race([signal.then((s) => s as string), booted.ended]);
      process.off('SIGHUP', onHangup);
      await handoffs;
      await booted.stop();
      print(`vab boot: stopped (${how})`);
      if (!/^SIG/.test(how)) process.exitCode = 1;
    });
}

function registerMerge(program: Command): void {
  program
    .command('merge')
    .description('merge the booted update into the base images (through the running vab boot); --wait until done')
    .requiredOption('--device <dir>', 'device directory')
    .requiredOption('--run <dir>', 'run directory of the running vab boot')
    .option('--wait', 'wait for the merge to finish, with a progress bar')
    .option('--json', 'print progress and the outcome as JSON lines')
    .action(async (opts: { device: string; run: string; wait?: boolean; json?: boolean }) => {
      const { mergeDevice } = require('../../ota/boot/merge') as typeof import('../../ota/boot/merge');
      const { createProgress } = require('../../util/progress') as typeof import('../../util/progress');
      const { createLogger } = require('../../util/log') as typeof import('../../util/log');
      const bar = opts.wait && !opts.json ? createProgress('merge', 100) : undefined;
      let shown = 0;
      const onPercent = (percent: number): void => {
        if (opts.json) process.stdout.write(`${JSON.stringify({ merge_percent: percent })}\n`);
        const whole = Math.floor(percent);
        if (bar && whole > shown) {
          bar.advance(whole - shown);
          shown = whole;
        }
      };
      const abort = new AbortController();
      void nextSignal().then(() => abort.abort());
      const outcome = await mergeDevice({ device: opts.device, run: opts.run, wait: opts.wait, onPercent, signal: abort.signal, logger: createLogger('merge', { level: 'warn' }) }).finally(() => bar?.finish());
      if (opts.json) process.stdout.write(`${JSON.stringify(outcome)}\n`);
      else if (outcome.failure) process.stdout.write(`vab merge: the merge failed (${outcome.failure}); the update is ${outcome.state}\n`);
      else if (!opts.wait) process.stdout.write(`vab merge: ${outcome.initiated ? 'merge initiated' : 'already merging'}; vab status shows progress, vab merge --wait finishes it\n`);
      else process.stdout.write(`vab merge: done; the update is ${outcome.state}\n`);
      if (outcome.failure || (opts.wait && outcome.state !== 'none')) process.exitCode = 1;
    });
}
