/**
 * The power-of-two size class a buffer of `length` bytes is kept in, from `smallest` up: what lets
 * a freed buffer or region of a class serve the next request of the same class.
 */
export function sizeClass(length: number, smallest: number): number {
  let size = smallest;
  while (size < length) size *= 2;
  return size;
}
