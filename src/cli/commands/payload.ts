import { Command, Option } from 'commander';
import type { PayloadCompression } from '../../payload/generate';
import type { Progress } from '../../util/progress';
import { integer } from '../options';

/** A progress callback that starts its bar on the first report (when the total is known). */
function progressReporter(label: string): { report: (done: number, total: number) => void; finish: () => void } {
  const { createProgress } = require('../../util/progress') as typeof import('../../util/progress');
  let bar: Progress | undefined;
  let shown = 0;
  return {
    report: (done, total) => {
      bar ??= createProgress(label, total);
      bar.advance(done - shown);
      shown = done;
    },
    finish: () => bar?.finish(),
  };
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function splitList(value: string): string[] {
  return value.split(',').map((s) => s.trim()).filter(Boolean);
}

/** What a command runs is required inside its action: starting `vab` loads only the command definitions. */
export function registerPayloadCommands(program: Command): void {
  const payload = program.command('payload').description('read, check, extract and generate Android OTA payloads (payload.bin)');

  payload
    .command('inspect')
    .description('show version, sizes, partitions, operations, VABC fields and signatures')
    .argument('<file>', 'payload.bin')
    .option('--json', 'print JSON instead of text')
    .option('--key <pub.pem>', 'public key (PEM) to verify the signatures with')
    .option('--strict', 'fail when an op is not allowed by the payload\'s minor version')
    .action(async (file: string, opts: { json?: boolean; key?: string; strict?: boolean }) => {
      const { loadPublicKey } = require('../../payload/signing') as typeof import('../../payload/signing');
      const { formatSummary, inspectPayload, requireAllowedOps } = require('../../payload/inspect') as typeof import('../../payload/inspect');
      const key = opts.key ? await loadPublicKey(opts.key) : undefined;
      const summary = await inspectPayload(file, key);
      process.stdout.write(opts.json ? `${JSON.stringify(summary, null, 2)}\n` : `${formatSummary(summary)}\n`);
      if (opts.strict) requireAllowedOps(summary);
      const failed = [summary.signatures.metadata.verified, summary.signatures.payload.verified].some((v) => v === 'invalid' || (key && v === 'absent'));
      if (failed) process.exitCode = 1;
    });

  payload
    .command('extract')
    .description('write <partition>.img for each partition, verifying every hash')
    .argument('<file>', 'payload.bin')
    .requiredOption('--out <dir>', 'directory for the new images')
    .option('--source <dir>', 'directory of old images (<partition>.img), for incremental payloads')
    .option('--partitions <names>', 'comma-separated partitions to extract (default: all)', splitList)
    .option('--key <pub.pem>', 'public key (PEM); the payload is refused unless its signatures verify')
    .option('--fsync', 'make each image durable (fsync before rename); by default an image is complete and verified when it appears, but a power cut soon after may lose it')
    .action(async (file: string, opts: { out: string; source?: string; partitions?: string[]; key?: string; fsync?: boolean }) => {
      const { loadPublicKey } = require('../../payload/signing') as typeof import('../../payload/signing');
      const { extractPayload } = require('../../payload/extract') as typeof import('../../payload/extract');
      const { createLogger } = require('../../util/log') as typeof import('../../util/log');
      const publicKey = opts.key ? await loadPublicKey(opts.key) : undefined;
      const progress = progressReporter('extract');
      const images = await extractPayload(file, {
          outDir: opts.out,
          sourceDir: opts.source,
          partitions: opts.partitions,
          publicKey,
          fsync: opts.fsync,
          onProgress: progress.report,
          logger: createLogger('payload', { level: 'warn' }),
        })
        .finally(progress.finish);
      for (const image of images) process.stdout.write(`${image.partition}: ${image.file} (${image.size} bytes, sha256 verified)\n`);
    });

  payload
    .command('generate')
    .description('make a payload from new images (full), or from old and new images (incremental)')
    .requiredOption('--target <dir>', 'directory of new images (<partition>.img)')
    .option('--source <dir>', 'directory of old images: makes an incremental payload')
    .requiredOption('-o, --output <file>', 'payload file to write')
    .option('--key <priv.pem>', 'private key (PEM, PKCS#1 or PKCS#8) to sign with')
    .option('--minor-version <n>', 'payload minor version: 0 (full) or 2..10 (incremental); default 0 full, 9 incremental', integer(0))
    .addOption(new Option('--compression <codec>', 'compression of replace operations (default: zstd at minor version 10, else xz)').choices(['zstd', 'xz', 'bz2']))
    .option('--partitions <names>', 'comma-separated partitions (default: every *.img in --target)', splitList)
    .option('--postinstall <spec>', 'run a program after install: PART:PATH[:FSTYPE][:optional], PATH relative to the partition root (repeatable)', collect, [])
    .action(async (opts: { target: string; source?: string; output: string; key?: string; minorVersion?: number; compression?: PayloadCompression; partitions?: string[]; postinstall: string[] }) => {
      const { loadPrivateKey } = require('../../payload/signing') as typeof import('../../payload/signing');
      const { generatePayload } = require('../../payload/generate') as typeof import('../../payload/generate');
      const { createLogger } = require('../../util/log') as typeof import('../../util/log');
      const { parsePostinstallSpec } = require('../../payload/postinstall-spec') as typeof import('../../payload/postinstall-spec');
      const postinstall = opts.postinstall.map(parsePostinstallSpec);
      const privateKey = opts.key ? await loadPrivateKey(opts.key) : undefined;
      const progress = progressReporter('generate');
      const summary = await generatePayload({
          targetDir: opts.target,
          sourceDir: opts.source,
          output: opts.output,
          privateKey,
          minorVersion: opts.minorVersion,
          compression: opts.compression,
          partitions: opts.partitions,
          postinstall,
          onProgress: progress.report,
          logger: createLogger('payload', { level: 'warn' }),
        })
        .finally(progress.finish);
      const parts = summary.partitions.map((p) => `${p.name} (${p.incremental ? 'incremental' : 'full'}, ${p.operations} ops)`).join(', ');
      process.stdout.write(`${summary.output}: ${summary.size} bytes${privateKey ? ', signed' : ''}; ${parts}; minor version ${summary.minorVersion}\n`);
    });
}
