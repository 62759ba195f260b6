import { existsSync } from 'node:fs';
import path from 'node:path';
import { runChecked } from '../../src/util/exec';
import { REPO } from './cli';

/**
 * Test inputs. Real Android data lives beside the repo (../shared/fixtures, present in CI, absent
 * in a user's clone; VAB_SHARED_FIXTURES points elsewhere, e.g. from a git worktree); what the
 * repo makes itself is always available.
 */
export const SHARED_FIXTURES = path.resolve(process.env.VAB_SHARED_FIXTURES ?? path.join(REPO, '../shared/fixtures'));
export const AOSP_FIXTURES = path.join(SHARED_FIXTURES, 'aosp');

/**
 * `describe` when every path exists, otherwise `describe.skip` with a title naming the missing
 * path, so a clone without ../shared skips instead of failing. jest lists no titles for a file
 * whose tests are all skipped, hence the warning too.
 */
export function describeWithFiles(title: string, paths: readonly string[], body: () => void): void {
  const missing = paths.filter((p) => !existsSync(p));
  if (missing.length === 0) return describe(title, body);
  // A missing directory is named once rather than every file in it.
  const named = [...new Set(missing.map((p) => (existsSync(path.dirname(p)) ? p : path.dirname(p))))];
  const why = `skipped: missing ${named.join(', ')}`;
  console.warn(`"${title}" ${why}`);
  describe.skip(`${title} [${why}]`, body);
}

export interface RepoImages {
  /** erofs image of fixtures/rootfs plus a 2 MiB incompressible file. */
  erofs: string;
  /** ext4 image (4 KiB blocks, 8 MiB) of the same tree. */
  ext4: string;
}

/** Builds the repo's own filesystem images (scripts/make-fixtures.sh) into `dir`. */
export async function makeRepoImages(dir: string): Promise<RepoImages> {
  await runChecked('bash', [path.join(REPO, 'scripts/make-fixtures.sh'), dir], { timeoutMs: 120_000 });
  return { erofs: path.join(dir, 'system.erofs'), ext4: path.join(dir, 'system.ext4') };
}
