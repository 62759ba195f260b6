import type { DeviceLayout } from '../snapshot/layout';
import { VabError } from '../util/errors';
import { PostinstallEntry, readUpdateRecord, updateRecordPath } from './apply/update-record';

/** The post-install programs of the update written to this device (by `vab apply`). */
export async function readPostinstallConfig(layout: DeviceLayout): Promise<PostinstallEntry[]> {
  const record = await readUpdateRecord(layout);
  if (!record) throw new VabError('ESTATE', `no update written by vab apply on this device (no ${updateRecordPath(layout)})`);
  return record.postinstall;
}
