import { Command, InvalidArgumentError } from 'commander';

/** vab cow inspect | create | apply: thin wrappers over src/cow, loaded only when one of them runs. */
export function registerCowCommands(program: Command): void {
  const cow = program.command('cow').description("Android COW files (libsnapshot's v3 format; v2 read)");

  cow
    .command('inspect')
    .argument('<file>', 'COW file')
    .option('--json', 'print the report as JSON')
    .option('--ops', 'list every op')
    .option('--decompress', 'decompress every payload to check it')
    .description('show header fields, op counts, merge order and whether the COW is valid')
    .action(async (file: string, opts: { json?: boolean; ops?: boolean; decompress?: boolean }) => {
      const { formatInspection, inspectCow } = require('../../cow') as typeof import('../../cow');
      const report = await inspectCow(file, { ops: opts.ops, decompress: opts.decompress });
      process.stdout.write(opts.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatInspection(report)}\n`);
      if (!report.valid) process.exitCode = 1;
    });

  cow
    .command('create')
    .requiredOption('--base <old>', 'old image')
    .requiredOption('--target <new>', 'new image')
    .requiredOption('-o, --output <file>', 'COW file to write')
    .option('--compression <algorithm>', 'none, gz, brotli, lz4 or zstd (optionally ",level")', 'none')
    .option('--compression-factor <bytes>', 'largest replace unit: 4096 to 262144', parseInteger, 4096)
    .option('--xor', 'use xor ops for blocks similar to their old content')
    .description('write the COW that turns OLD into NEW')
    .action(async (opts: { base: string; target: string; output: string; compression: string; compressionFactor: number; xor?: boolean }) => {
      const { createCow } = require('../../cow') as typeof import('../../cow');
      const result = await createCow(opts.base, opts.target, opts.output, {
        compression: opts.compression,
        compressionFactor: opts.compressionFactor,
        xor: opts.xor ?? false,
        progress: true,
      });
      const o = result.ops;
      process.stdout.write(
        `${opts.output}: ${result.cowSize} bytes, ${result.opCount} ops (copy ${o.copy}, xor ${o.xor}, zero ${o.zero}, replace ${o.replace}), ` +
          `${result.sequenceLength} in sequence, new image ${result.blockCount} blocks\n`,
      );
    });

  cow
    .command('apply')
    .argument('<file>', 'COW file')
    .requiredOption('--base <old>', 'old image')
    .requiredOption('-o, --output <new>', 'new image to write')
    .option('--size <bytes>', 'size of the new image (default: the base size, or the COW extent if larger)', parseInteger)
    .option('--fsync', 'durable (fsync before rename); without it the image is complete under its name but not fsynced')
    .description('write the new image a COW describes over OLD (OLD is not modified)')
    .action(async (file: string, opts: { base: string; output: string; size?: number; fsync?: boolean }) => {
      const { applyCow } = require('../../cow') as typeof import('../../cow');
      const result = await applyCow(file, opts.base, opts.output, { size: opts.size, progress: true, fsync: opts.fsync ?? false });
      process.stdout.write(`${opts.output}: ${result.bytes} bytes (${result.blocks} blocks)\n`);
    });
}

function parseInteger(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError(`"${value}" is not a non-negative integer`);
  return n;
}
