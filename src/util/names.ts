/** Target and misc names become file and socket names: keep them plain (the kernel's rule). */
const NAME_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,126}$/;

/** Why `name` cannot name a target or misc device, or undefined when it can. */
export function targetNameProblem(name: string): string | undefined {
  if (NAME_PATTERN.test(name)) return undefined;
  return `invalid name "${name}" (letters, digits, "_", "." and "-", at most 127, not starting with "." or "-")`;
}
