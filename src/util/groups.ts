import { VabError } from './errors';
import { run } from './exec';

/** The gid of group `name` (or a numeric gid as given), through the system's group database. */
export async function resolveGroupId(name: string): Promise<number> {
  if (/^\d+$/.test(name)) return Number(name);
  const result = await run('getent', ['group', name], { timeoutMs: 10_000 });
  const gid = Number(result.stdout.split(':')[2]);
  if (result.code !== 0 || !Number.isSafeInteger(gid)) throw new VabError('ENOTFOUND', `no group named "${name}" (getent group ${name} found nothing)`);
  return gid;
}
