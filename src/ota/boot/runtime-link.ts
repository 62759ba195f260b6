import { createTarget, removeTarget } from '../../kernel/control-client';
import type { DaemonControl } from '../../snapshot/merge-state';
import path from 'node:path';
import { SnapuserdClient, daemonControl } from '../../snapuserd/control/client';
import { VabError } from '../../util/errors';

/** PENDING: filled in once the kernel's linear targets and snapuserd's control client land. */
export class RuntimeLink {
  constructor(readonly run: string) {}

  async createDmUser(name: string, size: number): Promise<void> {
    await createTarget(this.run, name, size);
  }

  async createLinear(name: string, _file: string): Promise<void> {
    throw new VabError('EUNSUPPORTED', `linear ${name}: pending`);
  }

  async reloadLinear(name: string, _file: string): Promise<void> {
    throw new VabError('EUNSUPPORTED', `reload ${name}: pending`);
  }

  async reloadDmUser(name: string, misc: string): Promise<void> {
    throw new VabError('EUNSUPPORTED', `reload ${name} ${misc}: pending`);
  }

  async removeTarget(name: string): Promise<void> {
    await removeTarget(this.run, name);
  }

  /** snapuserd's control socket (its default place unless told), checked to answer before it is used. */
  async connectDaemon(socket = path.join(this.run, 'snapuserd.sock')): Promise<DaemonControl> {
    (await SnapuserdClient.connect(socket)).close();
    return daemonControl(socket);
  }
}
