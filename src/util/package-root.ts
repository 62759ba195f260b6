import { existsSync } from 'node:fs';
import path from 'node:path';

/**
 * The package's root directory, found by walking up from this file to the package.json named
 * "vab": the same answer from the build (dist/src/util) and from the sources under ts-jest
 * (src/util). Computed once at load, so the sync calls never run while a mount is served.
 */
function findRoot(start: string): string {
  for (let dir = start; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json')) && existsSync(path.join(dir, 'bin', 'vab'))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`vab's package root was not found above ${start}`);
  }
}

export const PACKAGE_ROOT = findRoot(__dirname);

/** A compiled module of the package (child processes run the build, never the sources). */
export function builtModule(relativeToSrc: string): string {
  return path.join(PACKAGE_ROOT, 'dist', 'src', relativeToSrc);
}
