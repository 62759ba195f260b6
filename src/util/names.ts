/**
 * Names that come from files or sockets and become paths or device names. Both rules refuse
 * anything that could leave the directory it is joined to: no separators, no leading dot (so no
 * `.` or `..`), no NUL, bounded length.
 */

// liblp stores a partition name in a 36-byte field (LpMetadataPartition.name).
const PARTITION_NAME_MAX = 36;
const PARTITION_NAME = /^[A-Za-z0-9_-][A-Za-z0-9_.-]*$/;

const TARGET_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,126}$/;

/** Why `name` is not a valid Android partition name, or undefined when it is. */
export function partitionNameProblem(name: string): string | undefined {
  if (name.length === 0) return 'is empty';
  if (name.length > PARTITION_NAME_MAX) return `is longer than ${PARTITION_NAME_MAX} characters`;
  if (name.startsWith('.')) return 'starts with "."';
  if (!PARTITION_NAME.test(name)) return 'has a character other than letters, digits, "_", "-" and "."';
  return undefined;
}

/** Why `name` is not a valid target (dm-user misc) name, or undefined when it is. */
export function targetNameProblem(name: string): string | undefined {
  if (TARGET_NAME.test(name)) return undefined;
  return 'must be letters, digits, "_", "." and "-", at most 127, not starting with "." or "-"';
}
