import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { DaemonControl } from '../../snapshot/merge-state';
import { UpdateState } from '../../snapshot/proto';
import type { Logger } from '../../util/log';
import { nullLogger } from '../../util/log';
import { spawnKernel } from '../vab-processes';
import { resumeInterruptedMerge } from './merge-link';
import { BootPlan, planBoot } from './plan';
import { BootRecord, bootRecordPath, writeBootRecord } from './record';
import { RuntimeLink } from './runtime-link';
import { SnapuserdSupervisor } from './supervisor';

export interface BootOptions {
  device: string;
  mount: string;
  run: string;
  daemonTimeoutMs?: number;
  restartGraceMs?: number;
  /** Start a new snapuserd whenever the running one dies, and give it the handlers again. */
  supervise?: boolean;
  logger?: Logger;
  /** Human lines (stdout). */
  print?: (line: string) => void;
}

export interface BootedDevice {
  readonly plan: BootPlan;
  readonly record: BootRecord;
  /** Resolves when the kernel dies (the boot cannot go on). */
  readonly ended: Promise<string>;
  /** Restarts snapuserd the way Android does, without failing IO (new misc names, then the old daemon goes). */
  handoff(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * `vab boot`: the device's partitions as block files. `vab kernel` and `vab snapuserd` run as
 * children; this process serves nothing, so it may read the block files and run the merge check.
 * Snapshotted partitions are served by snapuserd (init + start over its control socket); the rest
 * map their images straight through. A merge that was running when the device went down is
 * resumed, as libsnapshot's ProcessUpdateState does after a reboot.
 */
export async function bootDevice(options: BootOptions): Promise<BootedDevice> {
  const logger = options.logger ?? nullLogger;
  const print = options.print ?? (() => undefined);
  const plan = await planBoot(options.device);
  const mount = path.resolve(options.mount);
  const run = path.resolve(options.run);
  await fs.mkdir(run, { recursive: true, mode: 0o700 });
  const kernel = await spawnKernel({ mount, run, daemonTimeoutMs: options.daemonTimeoutMs, restartGraceMs: options.restartGraceMs, logFile: path.join(run, 'kernel.log') });
  const link = new RuntimeLink(run);
  const record: BootRecord = { device: plan.device, mount, run, boot_pid: process.pid, kernel_pid: kernel.pid, snapuserd_pid: 0, targets: [] };
  const resumeMerges = async (control: DaemonControl): Promise<void> => {
    const r = await resumeInterruptedMerge({ device: plan.device, run, control, link, logger });
    if (r) logger.info('merge state checked after the daemon started', { state: UpdateState[r.state] });
  };
  const supervisor = new SnapuserdSupervisor({
    run,
    record,
    link,
    logger,
    print,
    supervise: options.supervise === true,
    resumeMerges,
    snapshots: async () => {
      const files = new Map<string, { cow: string; image: string }>();
      for (const t of (await planBoot(plan.device)).targets) if (t.kind === 'snapshot') files.set(t.name, { cow: t.cow, image: t.image });
      return files;
    },
  });
  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    await supervisor.stop();
    for (const target of record.targets) await link.removeTarget(target.name).catch((err: Error) => logger.warn('could not remove target', { target: target.name, error: err.message }));
    await kernel.stop('SIGTERM');
    for (const file of [bootRecordPath(run), path.join(run, 'boot.pid'), path.join(run, 'kernel.pid'), path.join(run, 'snapuserd.pid')]) await fs.rm(file, { force: true });
  };

  try {
    for (const target of plan.targets) {
      if (target.kind === 'linear') await link.createLinear(target.name, target.image, target.size);
      else await link.createDmUser(target.name, target.size);
      record.targets.push({ name: target.name, kind: target.kind, misc: target.name, image: target.image, size: target.size, block_file: path.join(mount, target.name) });
    }
    if (plan.targets.some((t) => t.kind === 'snapshot')) {
      await supervisor.start();
      if (plan.state === UpdateState.Merging) await resumeMerges(supervisor.control!);
    } else {
      await writeBootRecord(record);
    }
  } catch (err) {
    await stop();
    throw err;
  }
  const ended = kernel.exited.then((exit) => (stopping ? 'stopped' : `kernel exited (${exit.signal ?? exit.code})`));
  return { plan, record, ended, handoff: () => supervisor.handoff(), stop };
}
