import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { DeviceLayout } from '../../snapshot/layout';
import { writeFileAtomic } from '../../util/atomic';
import { VabError, errnoCode } from '../../util/errors';

/** A partition's post-install program, as the payload gave it (update_metadata.proto fields 2, 3, 4, 9). */
export interface PostinstallEntry {
  name: string;
  path?: string;
  filesystemType?: string;
  optional?: boolean;
}

/**
 * What `vab apply` keeps beside libsnapshot's files (`metadata/ota/vab-update.json`): which
 * payload the snapshots are being written from (the SHA-256 of its signed metadata), so a rerun
 * resumes only the same update, and the post-install programs the payload asked for, for
 * `vab postinstall` (update_engine keeps them in its own state, not in libsnapshot's).
 */
export interface UpdateRecord {
  payload_metadata_sha256: string;
  payload_file: string;
  postinstall: PostinstallEntry[];
}

export function updateRecordPath(layout: DeviceLayout): string {
  return path.join(layout.metadataDir, 'vab-update.json');
}

export async function writeUpdateRecord(layout: DeviceLayout, record: UpdateRecord): Promise<void> {
  await fs.mkdir(layout.metadataDir, { recursive: true });
  await writeFileAtomic(updateRecordPath(layout), Buffer.from(JSON.stringify(record, null, 2) + '\n'));
}

export async function readUpdateRecord(layout: DeviceLayout): Promise<UpdateRecord | undefined> {
  const file = updateRecordPath(layout);
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const r = JSON.parse(text) as UpdateRecord;
    if (typeof r.payload_metadata_sha256 !== 'string' || !Array.isArray(r.postinstall)) throw new Error('fields missing');
    return r;
  } catch (err) {
    throw new VabError('ECORRUPT', `update record is not valid: ${(err as Error).message}`, { file });
  }
}

export async function removeUpdateRecord(layout: DeviceLayout): Promise<void> {
  await fs.rm(updateRecordPath(layout), { force: true });
}
