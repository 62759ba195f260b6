import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { DaemonControl } from '../../snapshot/merge-state';
import { VabError } from '../../util/errors';
import type { ChildHandle, Exit } from '../../util/exec';
import type { Logger } from '../../util/log';
import { spawnSnapuserd } from '../vab-processes';
import { BootRecord, BootedTarget, writeBootRecord } from './record';
import { RuntimeLink } from './runtime-link';

export interface SupervisorOptions {
  run: string;
  record: BootRecord;
  link: RuntimeLink;
  logger: Logger;
  print: (line: string) => void;
  /** Start a new daemon whenever the running one dies. */
  supervise: boolean;
  /** Which partitions still need the daemon (read from the device each time), and their COWs. */
  snapshots: () => Promise<Map<string, { cow: string; image: string }>>;
  /** After a new daemon took over: merges it does not know about yet are initiated again. */
  resumeMerges: (control: DaemonControl) => Promise<void>;
}

interface Running {
  child: ChildHandle;
  control: DaemonControl;
  /** Exits of this daemon are expected (it is being stopped or handed off). */
  retiring: boolean;
}

/**
 * The boot's snapuserd: started with the boot, restarted when it dies (with --supervise), and
 * replaced on purpose by a handoff, Android's way to restart it without failing IO (spec §3.4):
 * every snapshot target is reloaded onto a new dm-user misc name served by the new daemon, IO the
 * old one had taken drains through it, and only then is it stopped.
 */
export class SnapuserdSupervisor {
  private current: Running | undefined;
  private generation = 0;
  private stopping = false;
  restarts = 0;

  constructor(private readonly o: SupervisorOptions) {}

  get control(): DaemonControl | undefined {
    return this.current?.control;
  }

  get socket(): string {
    return path.join(this.o.run, 'snapuserd.sock');
  }

  /**
   * Starts a daemon and gives it the snapshots under their current misc names. It listens on a
   * socket of its own until then, and only takes the usual name once every handler is started:
   * a client retrying the socket of a dead daemon never meets one that does not know its handlers.
   */
  async start(): Promise<void> {
    const pending = path.join(this.o.run, 'snapuserd-starting.sock');
    const running = await this.launch(pending, await this.o.snapshots(), (t) => t.misc);
    await fs.rename(pending, this.socket);
    this.current = running;
    await writeBootRecord(this.o.record);
  }

  /** Android's restart: new misc names on a new daemon, then the old daemon goes. */
  async handoff(): Promise<void> {
    const old = this.current;
    this.generation++;
    const next = path.join(this.o.run, `snapuserd-${this.generation}.sock`);
    const snapshots = await this.o.snapshots();
    const misc = (t: BootedTarget): string => `${t.name}-${this.generation}`;
    const running = await this.launch(next, snapshots, misc, async (t) => this.o.link.reloadDmUser(t.name, misc(t)));
    if (old) {
      old.retiring = true;
      await old.child.stop('SIGTERM');
    }
    // The old daemon removed its socket on the way out; the new one takes the usual name.
    await fs.rename(next, this.socket);
    this.current = running;
    this.o.record.snapuserd_pid = running.child.pid;
    await writeBootRecord(this.o.record);
    this.o.logger.info('snapuserd handed off', { generation: this.generation, pid: running.child.pid });
    this.o.print(`vab boot: snapuserd handed off to pid ${running.child.pid} (misc names *-${this.generation})`);
    await this.o.resumeMerges(running.control);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (this.current) {
      this.current.retiring = true;
      await this.current.child.stop('SIGTERM');
    }
  }

  /**
   * Starts a daemon on `socket` and hands it the snapshots: for each, `prepare` (the handoff's
   * table reload) then init and start under the misc name `misc` gives.
   */
  private async launch(socket: string, snapshots: Map<string, { cow: string; image: string }>, misc: (t: BootedTarget) => string, prepare?: (t: BootedTarget) => Promise<void>): Promise<Running> {
    const child = await spawnSnapuserd(this.o.run, path.join(this.o.run, 'snapuserd.log'), socket);
    // Requests go to the usual name: the socket is renamed there once the handlers are started.
    const setup = await this.o.link.connectDaemon(socket);
    const running: Running = { child, control: this.o.link.daemonAt(this.socket), retiring: false };
    try {
      for (const target of this.o.record.targets) {
        const files = snapshots.get(target.name);
        if (!files) {
          target.kind = 'linear';
          continue;
        }
        await prepare?.(target);
        target.misc = misc(target);
        const reply = await setup.request(`init,${target.misc},${files.cow},${files.image},${files.image}`);
        if (!reply.startsWith('success,')) throw new VabError('ESTATE', `snapuserd refused partition ${target.name} (init: ${reply}); see ${path.join(this.o.run, 'snapuserd.log')}`);
        const started = await setup.request(`start,${target.misc}`);
        if (started !== 'success') throw new VabError('ESTATE', `snapuserd could not start partition ${target.name} (start: ${started})`);
      }
    } catch (err) {
      await child.stop('SIGKILL');
      throw err;
    }
    this.o.record.snapuserd_pid = child.pid;
    void child.exited.then((exit) => this.exited(running, exit));
    return running;
  }

  private exited(running: Running, exit: Exit): void {
    if (running.retiring || this.stopping || running !== this.current) return;
    const how = exit.signal ?? `exit ${exit.code}`;
    if (!this.o.supervise) {
      this.o.logger.error('snapuserd died; IO on the snapshots fails until a daemon is started', { exit: how });
      this.o.print(`vab boot: snapuserd died (${how}); not restarting it (no --supervise)`);
      return;
    }
    this.restarts++;
    this.o.logger.warn('snapuserd died; starting a new one', { exit: how, restart: this.restarts });
    this.o.print(`vab boot: snapuserd died (${how}); restart ${this.restarts}`);
    void this.start()
      .then(() => this.o.resumeMerges(this.current!.control))
      .catch((err: Error) => {
        this.o.logger.error('could not restart snapuserd', { error: err.message });
        this.o.print(`vab boot: could not restart snapuserd: ${err.message}`);
      });
  }
}
