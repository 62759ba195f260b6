import { performance } from 'node:perf_hooks';

/** Monotonic milliseconds (never jumps with the wall clock). */
export const now = (): number => performance.now();

/** A cancellable one-shot timer that fires at an absolute monotonic time. */
export interface Deadline {
  cancel(): void;
}

/**
 * Runs `fire` at `at` (from `now()`), never before. A plain setTimeout counts from the event
 * loop's cached clock, which can lag behind real time by however long the current tick has run,
 * so it may fire early by that much; a timeout that must never fire early re-arms for the rest.
 */
export function fireAt(at: number, fire: () => void): Deadline {
  let timer: NodeJS.Timeout | undefined;
  const arm = (): void => {
    const remaining = at - now();
    if (remaining <= 0) {
      timer = undefined;
      fire();
      return;
    }
    timer = setTimeout(arm, Math.ceil(remaining));
  };
  const first = at - now();
  // Zero-delay failures still run asynchronously, like the kernel's workqueue.
  timer = setTimeout(arm, first > 0 ? Math.ceil(first) : 0);
  return {
    cancel() {
      if (timer) clearTimeout(timer);
      timer = undefined;
    },
  };
}
