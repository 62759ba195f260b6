import path from 'node:path';
import { VabError } from './errors';

/**
 * Names that arrive from files and sockets (payload manifests, control commands, status files)
 * end up as file names, socket names and device names. Each check returns what is wrong with a
 * name, in words an error message can quote, or undefined when the name is fine; callers pick
 * the error code, because the same bad name is a corrupt file in one place and a bad argument in
 * another.
 */

/** Longest dm-user target name: dm's DM_NAME_LEN is 128 bytes with the terminating NUL. */
const TARGET_NAME_MAX = 127;

/**
 * liblp keeps a partition name in a 36-byte field (LpMetadataPartition.name, the length of a GPT
 * name), and it stores it with the slot suffix ("_a"/"_b") that update_engine appends to the
 * payload's name. So a payload partition name has 36 - 2 characters to itself.
 */
export const PARTITION_NAME_MAX = 36 - '_a'.length;

export function targetNameProblem(name: string): string | undefined {
  if (name.length === 0) return 'a target name must not be empty';
  if (name.length > TARGET_NAME_MAX) return `a target name has at most ${TARGET_NAME_MAX} characters (this one has ${name.length})`;
  if (name.startsWith('.') || name.startsWith('-')) return 'a target name must not start with "." or "-"';
  const bad = firstBadCharacter(name);
  if (bad !== undefined) return `a target name may only hold letters, digits, "_", "." and "-" (found ${bad})`;
  return undefined;
}

/**
 * Android partition names: liblp allows only letters, digits and "_"; "-" and "." are accepted
 * as well because GPT partitions outside super (which payloads also update) use them. A leading
 * "." would make a hidden file and leaves room for "." and "..".
 */
export function partitionNameProblem(name: string): string | undefined {
  if (name.length === 0) return 'a partition name must not be empty';
  if (name.length > PARTITION_NAME_MAX) return `a partition name has at most ${PARTITION_NAME_MAX} characters (this one has ${name.length})`;
  if (name.startsWith('.')) return 'a partition name must not start with "."';
  const bad = firstBadCharacter(name);
  if (bad !== undefined) return `a partition name may only hold letters, digits, "_", "-" and "." (found ${bad})`;
  return undefined;
}

/** The first character outside [A-Za-z0-9_.-], spelled so that NUL and "/" are visible in a message. */
function firstBadCharacter(name: string): string | undefined {
  const match = /[^A-Za-z0-9_.-]/u.exec(name);
  if (!match) return undefined;
  const code = match[0].codePointAt(0)!;
  return code < 0x20 || code === 0x7f || code > 0x7e ? `U+${code.toString(16).toUpperCase().padStart(4, '0')} at ${match.index}` : `"${match[0]}" at ${match.index}`;
}

/**
 * `root` joined with an untrusted relative path, refused unless the result stays inside `root`
 * (or is `root` itself). The check is on the text of the path: it does not follow symbolic links,
 * so a caller that opens the result inside a tree it does not control must still guard that.
 */
export function containedPath(root: string, relative: string): string {
  if (relative.length === 0) throw new VabError('EINVAL_INPUT', `an empty path names nothing inside ${root}`);
  if (relative.includes('\0')) throw new VabError('EINVAL_INPUT', `path ${JSON.stringify(relative)} contains a NUL byte`);
  if (path.isAbsolute(relative)) throw new VabError('EINVAL_INPUT', `path ${JSON.stringify(relative)} must be relative to ${root}, not absolute`);
  const base = path.resolve(root);
  const resolved = path.resolve(base, relative);
  if (!isInside(base, resolved)) {
    throw new VabError('EINVAL_INPUT', `path ${JSON.stringify(relative)} leads outside ${root}`);
  }
  return resolved;
}

/** True when `candidate` is `root` itself or below it (both absolute and normalised). */
export function isInside(root: string, candidate: string): boolean {
  const rel = path.relative(root, candidate);
  // `..foo` is a name inside root; only `..` itself or `../...` climbs out.
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel));
}
