/**
 * READ answers lent out of a channel's shared memory, by the exact Buffer handed up to the FUSE
 * layer. The region goes back to its channel when the reply carrying it has been written (the
 * provider's recycle hook) and not before: until then the daemon must not be given it for another
 * answer. A view whose reply is never written (the request failed on the way) keeps its region;
 * the channel then runs short of memory and sends its answers inline, which always works.
 */
const lent = new WeakMap<Buffer, () => void>();

export function lendRegion(view: Buffer, release: () => void): void {
  lent.set(view, release);
}

/** The lease passes to `narrower`, a view of the same region that goes up instead. */
export function moveLease(from: Buffer, narrower: Buffer): void {
  const release = lent.get(from);
  if (!release) return;
  lent.delete(from);
  lent.set(narrower, release);
}

/** The reply carrying `view` has left: its region may be reused. False when it is no lent region. */
export function returnRegion(view: Buffer): boolean {
  const release = lent.get(view);
  if (!release) return false;
  lent.delete(view);
  release();
  return true;
}
