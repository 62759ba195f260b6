import { Command } from 'commander';
import type { DeviceStatusReport } from '../../snapshot';

/** vab status: the update state and each snapshot's progress, read from the device's files. */
export function registerStatusCommand(program: Command): void {
  program
    .command('status')
    .requiredOption('--device <dir>', 'device directory (super/, data/ota/, metadata/ota/)')
    .option('--json', 'print one JSON object (see docs/snapshot.md)')
    .description('show the update state, and per snapshot its state, sizes and merge progress')
    .action(async (opts: { device: string; json?: boolean }) => {
      const { readDeviceStatus } = require('../../snapshot') as typeof import('../../snapshot');
      const report = await readDeviceStatus(opts.device);
      process.stdout.write(opts.json ? `${JSON.stringify(report, null, 2)}\n` : formatStatus(report));
      if (report.snapshots.some((s) => s.error !== undefined)) process.exitCode = 1;
    });
}

export function formatStatus(r: DeviceStatusReport): string {
  const lines = [`update state: ${r.state}`];
  if (r.merge_phase !== 'none') lines.push(`merge phase: ${r.merge_phase}`);
  if (r.merge_failure_code) lines.push(`merge failure: ${r.merge_failure_code}`);
  if (r.merge_percent !== null) lines.push(`merge: ${r.merge_percent.toFixed(1)}%`);
  for (const s of r.snapshots) {
    lines.push(`${s.name}: ${s.state}, ${s.device_size} bytes (was ${s.old_partition_size}), ${s.compression || 'no'} compression`);
    if (s.cow) lines.push(`  cow ${s.cow.path}: v${s.cow.version}, ${s.cow.size} bytes, ${s.cow.merged_ops}/${s.cow.ops} ops merged (${s.merge_percent?.toFixed(1)}%)`);
    else if (!s.error) lines.push('  no cow yet');
    if (s.error) lines.push(`  error: ${s.error}`);
  }
  return `${lines.join('\n')}\n`;
}
