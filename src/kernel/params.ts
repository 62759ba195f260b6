import { DEFAULT_DAEMON_TIMEOUT_MS } from '../dmuser/constants';
import { VabError } from '../util/errors';

/**
 * The emulated kernel's tunables, all changeable at run time (`vab dmctl set NAME N`), like the
 * dm-user module parameter. A change applies to timers armed after it; timers already armed keep
 * the delay they were armed with, as the real delayed work does.
 */
export interface KernelParams {
  /** How long IO on a target that never had a daemon waits for one (dm_user_daemon_timeout_msec). */
  daemon_timeout_ms: number;
  /**
   * Supervised mode when > 0: after the last channel closes, IO waits this long for a restarted
   * daemon instead of failing at once, and the reads the dead channels held are queued again.
   * 0 is Android's behaviour.
   */
  restart_grace_ms: number;
  /**
   * The bound on every IO from its submission: queued, held by a channel that never answers, or
   * behind a full window, it fails with EIO once this much time has passed. The real driver has no
   * such bound (an fd held open without reading keeps IO forever); vab's "no IO waits without a
   * bound" rule needs one.
   */
  io_timeout_ms: number;
  /** How many unanswered messages one channel may hold; the next message waits for a free slot. */
  channel_window: number;
  /**
   * The largest READ or WRITE one message carries, like the block queue's max_sectors_kb: a larger
   * IO on a block file is split into consecutive messages (consecutive seqs), spread over the
   * channels, and fails as a whole (EIO, once) if any piece fails. Splitting lets the daemon read
   * one piece while the previous one is still crossing the socket. A multiple of 512.
   */
  max_io_bytes: number;
}

export const DEFAULT_PARAMS: Readonly<KernelParams> = {
  daemon_timeout_ms: DEFAULT_DAEMON_TIMEOUT_MS,
  restart_grace_ms: 0,
  io_timeout_ms: 30_000,
  channel_window: 2,
  max_io_bytes: 1024 * 1024,
};

export type KernelParamName = keyof KernelParams;

const LIMITS: Record<KernelParamName, { min: number; max: number; multipleOf?: number }> = {
  daemon_timeout_ms: { min: 0, max: 3_600_000 },
  restart_grace_ms: { min: 0, max: 3_600_000 },
  io_timeout_ms: { min: 1, max: 3_600_000 },
  channel_window: { min: 1, max: 1024 },
  max_io_bytes: { min: 4096, max: 16 * 1024 * 1024, multipleOf: 512 },
};

export function isKernelParamName(name: string): name is KernelParamName {
  return Object.prototype.hasOwnProperty.call(LIMITS, name);
}

/** Checks one value; throws EINVAL_INPUT naming the parameter and its range. */
export function checkParam(name: string, value: number): KernelParamName {
  if (!isKernelParamName(name)) {
    throw new VabError('EINVAL_INPUT', `unknown kernel parameter "${name}" (known: ${Object.keys(LIMITS).join(', ')})`);
  }
  const { min, max, multipleOf = 1 } = LIMITS[name];
  if (!Number.isSafeInteger(value) || value < min || value > max || value % multipleOf !== 0) {
    const step = multipleOf > 1 ? ` in steps of ${multipleOf}` : '';
    throw new VabError('EINVAL_INPUT', `${name} must be an integer from ${min} to ${max}${step}, got ${value}`);
  }
  return name;
}

export function resolveParams(overrides: Partial<KernelParams> = {}): KernelParams {
  const params = { ...DEFAULT_PARAMS };
  for (const [name, value] of Object.entries(overrides)) {
    if (value === undefined) continue;
    params[checkParam(name, value)] = value;
  }
  return params;
}
