import path from 'node:path';
import { VabError } from './errors';

/**
 * Resolves `relative` under `root`, refusing anything that could leave it: an absolute path, a NUL
 * (the kernel would cut the name there), or `..` that climbs out. Symlinks are not followed here;
 * callers that open the result must realpath it and check again.
 */
export function containedPath(root: string, relative: string): string {
  if (relative === '' || relative.includes('\0')) {
    throw new VabError('EINVAL_INPUT', `path ${JSON.stringify(relative)} is empty or contains NUL`);
  }
  if (path.isAbsolute(relative)) {
    throw new VabError('EINVAL_INPUT', `path ${JSON.stringify(relative)} must be relative to ${root}`);
  }
  const base = path.resolve(root);
  const resolved = path.resolve(base, relative);
  if (!isInside(base, resolved)) {
    throw new VabError('EINVAL_INPUT', `path ${JSON.stringify(relative)} leaves ${root}`);
  }
  return resolved;
}

/** True when `candidate` is `root` itself or below it (both absolute and normalised). */
export function isInside(root: string, candidate: string): boolean {
  const rel = path.relative(root, candidate);
  // `..foo` is a name inside root; only `..` itself or `../...` climbs out.
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel));
}
