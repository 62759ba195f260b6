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

/**
 * Where the kernel's deadlines come from: the no-daemon timer, the restart grace and io_timeout.
 * Production uses the monotonic clock; a test injects one it moves by hand, to check exactly when
 * a timer fires.
 */
export interface Clock {
  now(): number;
  fireAt(at: number, fire: () => void): Deadline;
}

export const monotonicClock: Clock = { now, fireAt };

/**
 * A clock that moves only when told (`advance`), firing due timers in time order; for tests of
 * timer behaviour that must not depend on how loaded the machine is.
 */
export class ManualClock implements Clock {
  private time = 0;
  private timers: Array<{ at: number; fire: () => void; id: number }> = [];
  private nextId = 0;

  now(): number {
    return this.time;
  }

  fireAt(at: number, fire: () => void): Deadline {
    const id = this.nextId++;
    this.timers.push({ at, fire, id });
    return { cancel: () => (this.timers = this.timers.filter((t) => t.id !== id)) };
  }

  /** Moves time forward by `ms`, firing each timer due by then, earliest first (ties: first armed). */
  advance(ms: number): void {
    const until = this.time + ms;
    for (;;) {
      const due = this.timers.filter((t) => t.at <= until).sort((a, b) => a.at - b.at || a.id - b.id)[0];
      if (!due) break;
      this.timers = this.timers.filter((t) => t !== due);
      this.time = Math.max(this.time, due.at);
      due.fire();
    }
    this.time = until;
  }

  get pending(): number {
    return this.timers.length;
  }
}
