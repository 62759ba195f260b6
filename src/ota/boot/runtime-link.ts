import { createLinearTarget, createTarget, reloadTarget, removeTarget } from '../../kernel/control-client';
import type { DaemonControl } from '../../snapshot/merge-state';
import path from 'node:path';
import { SnapuserdClient, daemonControl } from '../../snapuserd/control/client';

/** What `vab boot` and `vab merge` ask of the running kernel and snapuserd. */
export class RuntimeLink {
  constructor(readonly run: string) {}

  async createDmUser(name: string, size: number): Promise<void> {
    await createTarget(this.run, name, size);
  }

  async createLinear(name: string, file: string, size?: number): Promise<void> {
    await createLinearTarget(this.run, name, file, size);
  }

  /** After a merge: the block file maps the merged base straight through. */
  async reloadLinear(name: string, file: string): Promise<void> {
    await reloadTarget(this.run, name, { linear: file });
  }

  /** A snapuserd handoff: the block file moves onto a new dm-user misc name. */
  async reloadDmUser(name: string, misc: string): Promise<void> {
    await reloadTarget(this.run, name, { misc });
  }

  async removeTarget(name: string): Promise<void> {
    await removeTarget(this.run, name);
  }

  /** A control connection per request to whatever daemon listens on `socket` then. */
  daemonAt(socket: string): DaemonControl {
    return daemonControl(socket);
  }

  /** snapuserd's control socket (its default place unless told), checked to answer before it is used. */
  async connectDaemon(socket = path.join(this.run, 'snapuserd.sock')): Promise<DaemonControl> {
    (await SnapuserdClient.connect(socket)).close();
    return daemonControl(socket);
  }
}
