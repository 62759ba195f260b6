import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { DaemonControl } from '../../snapshot/merge-state';
import { UpdateState } from '../../snapshot/proto';
import { VabError } from '../../util/errors';
import type { ChildHandle, Exit } from '../../util/exec';
import type { Logger } from '../../util/log';
import { nullLogger } from '../../util/log';
import { spawnKernel, spawnSnapuserd } from '../vab-processes';
import { BootPlan, BootTarget, planBoot } from './plan';
import { resumeInterruptedMerge } from './merge-link';
import { BootRecord, bootRecordPath, writeBootRecord } from './record';
import { RuntimeLink } from './runtime-link';

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
  /** Resolves when the kernel dies (the boot cannot go on); `stop` resolves it too. */
  readonly ended: Promise<string>;
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
  let daemon: ChildHandle | undefined;
  let control: DaemonControl | undefined;
  let stopping = false;
  let restarts = 0;
  const record: BootRecord = { device: plan.device, mount, run, kernel_pid: kernel.pid, snapuserd_pid: 0, targets: [] };
  const snapshots = plan.targets.filter((t): t is Extract<BootTarget, { kind: 'snapshot' }> => t.kind === 'snapshot');

  /**
   * Starts a snapuserd and gives it every partition still served from a snapshot. The device
   * state is read again each time: a partition merged since boot maps its base by now.
   */
  const startDaemon = async (): Promise<void> => {
    const current = await planBoot(plan.device);
    for (const entry of record.targets) {
      const now = current.targets.find((t) => t.name === entry.name);
      if (entry.kind === 'snapshot' && now?.kind === 'linear') entry.kind = 'linear';
    }
    const child = await spawnSnapuserd(run, path.join(run, 'snapuserd.log'));
    daemon = child;
    record.snapuserd_pid = child.pid;
    const client = await link.connectDaemon();
    control = client;
    for (const entry of record.targets) {
      if (entry.kind !== 'snapshot') continue;
      const target = snapshots.find((s) => s.name === entry.name)!;
      const reply = await client.request(`init,${entry.misc},${target.cow},${target.image},${target.image}`);
      if (!reply.startsWith('success,')) throw new VabError('ESTATE', `snapuserd refused partition ${entry.name} (init: ${reply}); see ${path.join(run, 'snapuserd.log')}`);
      const started = await client.request(`start,${entry.misc}`);
      if (started !== 'success') throw new VabError('ESTATE', `snapuserd could not start partition ${entry.name} (start: ${started})`);
    }
    await writeBootRecord(record);
    void child.exited.then((exit) => onDaemonExit(exit));
  };

  const onDaemonExit = (exit: Exit): void => {
    if (stopping) return;
    const how = exit.signal ?? `exit ${exit.code}`;
    if (!options.supervise) {
      logger.error('snapuserd died; IO on the snapshots fails until a daemon is started', { exit: how });
      print(`vab boot: snapuserd died (${how}); not restarting it (no --supervise)`);
      return;
    }
    restarts++;
    logger.warn('snapuserd died; starting a new one', { exit: how, restart: restarts });
    print(`vab boot: snapuserd died (${how}); restart ${restarts}`);
    void startDaemon()
      .then(() => resumeMerges())
      .catch((err: Error) => {
        logger.error('could not restart snapuserd', { error: err.message });
        print(`vab boot: could not restart snapuserd: ${err.message}`);
      });
  };

  /** Merges the daemon reports as not running (it forgot them when it restarted) are initiated again. */
  const resumeMerges = async (): Promise<void> => {
    if (!control) return;
    const r = await resumeInterruptedMerge({ device: plan.device, run, control, link, logger });
    if (r) logger.info('merge state after boot', { state: UpdateState[r.state] });
  };

  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    await daemon?.stop('SIGTERM');
    for (const target of record.targets) await link.removeTarget(target.name).catch((err: Error) => logger.warn('could not remove target', { target: target.name, error: err.message }));
    await kernel.stop('SIGTERM');
    await fs.rm(bootRecordPath(run), { force: true });
    await fs.rm(path.join(run, 'kernel.pid'), { force: true });
    await fs.rm(path.join(run, 'snapuserd.pid'), { force: true });
  };

  try {
    for (const target of plan.targets) {
      if (target.kind === 'linear') await link.createLinear(target.name, target.image);
      else await link.createDmUser(target.name, target.size);
      record.targets.push({ name: target.name, kind: target.kind, misc: target.name, image: target.image, size: target.size, block_file: path.join(mount, target.name) });
    }
    if (snapshots.length > 0) await startDaemon();
    else await writeBootRecord(record);
    if (snapshots.some((s) => s.merging) || plan.state === UpdateState.Merging) await resumeMerges();
  } catch (err) {
    await stop();
    throw err;
  }
  const ended = kernel.exited.then((exit) => (stopping ? 'stopped' : `kernel exited (${exit.signal ?? exit.code})`));
  return { plan, record, ended, stop };
}
