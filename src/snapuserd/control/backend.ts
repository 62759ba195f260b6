import type { MergeStatusString } from './protocol';

/**
 * What the control server asks of the daemon: the handler registry's operations, plus the merge's
 * once the registry has them. A backend without merge hooks answers initiate_merge `fail` and
 * merge_percent 0.
 */
export interface SnapuserdBackend {
  init(misc: string, cowPath: string, backingPath: string, basePath: string): Promise<number>;
  start(misc: string): Promise<void>;
  delete(misc: string): Promise<void>;
  has(misc: string): boolean;
  isStarted(misc: string): boolean;
  names(): string[];
  stopAll(): Promise<void>;
  /** Resolves when no handler is left serving (each one's target went away, or was deleted). */
  whenIdle(): Promise<void>;
  initiateMerge?(misc: string): Promise<void>;
  mergePercent?(): number;
  /** undefined for an unknown misc name. */
  mergeStatus?(misc: string): MergeStatusString | undefined;
  pauseMerge?(): void;
  resumeMerge?(): void;
}
