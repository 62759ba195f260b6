import { Command } from 'commander';
import path from 'node:path';

/** `vab apply` and `vab cancel`: write an update into snapshots, or drop one not yet merged. */
export function registerApplyCommands(program: Command): void {
  program
    .command('apply <payload>')
    .description('install an OTA payload into COW snapshots beside the untouched base images (run it again to resume a killed apply)')
    .requiredOption('--device <dir>', 'device directory (super/<p>.img are the running images)')
    .option('--key <pub.pem>', 'public key: the payload and metadata signatures must verify before anything is written')
    .option('--compression <algorithm>', "COW compression instead of the payload's vabc_compression_param (none, gz, brotli, lz4, zstd[,level])")
    .option('--json', 'print progress and the summary as JSON lines')
    .action(async (payload: string, opts: { device: string; key?: string; compression?: string; json?: boolean }) => {
      const { applyPayload } = require('../../ota/apply/apply') as typeof import('../../ota/apply/apply');
      const { loadPublicKey } = require('../../payload/signing') as typeof import('../../payload/signing');
      const { createProgress } = require('../../util/progress') as typeof import('../../util/progress');
      const { createLogger } = require('../../util/log') as typeof import('../../util/log');
      const publicKey = opts.key ? await loadPublicKey(opts.key) : undefined;
      let bar: import('../../util/progress').Progress | undefined;
      let shown = 0;
      const summary = await applyPayload({
        payload,
        device: opts.device,
        publicKey,
        compression: opts.compression,
        logger: createLogger('apply', { level: 'warn' }),
        onProgress: (e) => {
          if (opts.json) {
            process.stdout.write(`${JSON.stringify({ event: 'progress', ...e })}\n`);
            return;
          }
          bar ??= createProgress('apply', e.totalBytes);
          bar.advance(e.bytes - shown);
          shown = e.bytes;
        },
      }).finally(() => bar?.finish());
      if (opts.json) {
        process.stdout.write(`${JSON.stringify({ event: 'done', ...summary })}\n`);
        return;
      }
      if (summary.partitions.length === 0 && summary.resumed) {
        process.stdout.write(`vab apply: this update is already written (state ${summary.state})\n`);
        return;
      }
      for (const p of summary.partitions) {
        process.stdout.write(`${p.name}: ${p.newSize} bytes, COW ${p.cowBytes} bytes from ${p.ops} ops${p.resumedAt > 0 ? ` (resumed at op ${p.resumedAt})` : ''}, verified\n`);
      }
      process.stdout.write(`vab apply: update written${summary.resumed ? ' (resumed)' : ''}; state ${summary.state}\n`);
    });

  program
    .command('cancel')
    .description('drop an update that is written but not merging: its COWs and snapshot statuses go (Android\'s cancelUpdate)')
    .requiredOption('--device <dir>', 'device directory')
    .option('--run <dir>', 'run directory of a running vab boot: refused while its snapuserd serves the snapshots')
    .action(async (opts: { device: string; run?: string }) => {
      const { SnapshotManager } = require('../../snapshot/manager') as typeof import('../../snapshot/manager');
      const { removeUpdateRecord } = require('../../ota/apply/update-record') as typeof import('../../ota/apply/update-record');
      const { DeviceLayout } = require('../../snapshot/layout') as typeof import('../../snapshot/layout');
      const { daemonControl } = require('../../snapuserd/control/client') as typeof import('../../snapuserd/control/client');
      const daemon = opts.run ? daemonControl(path.join(opts.run, 'snapuserd.sock'), 2000) : undefined;
      const manager = new SnapshotManager({ device: opts.device, command: 'vab cancel', daemon });
      await manager.cancelUpdate();
      await removeUpdateRecord(new DeviceLayout(opts.device));
      process.stdout.write('vab cancel: the update is cancelled; state none\n');
    });
}
