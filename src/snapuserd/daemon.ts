import { VabError } from '../util/errors';
import type { Logger } from '../util/log';
import { HandlerRegistry } from './registry';

export const DEFAULT_SNAPUSERD_CHANNELS = 4;

/** One `misc,cow,backing,base` argument of the boot daemon (Android's -no_socket form). */
export interface HandlerSpec {
  misc: string;
  cow: string;
  backing: string;
  base: string;
}

export function parseHandlerSpec(arg: string): HandlerSpec {
  const parts = arg.split(',');
  if (parts.length !== 4 || parts.some((p) => p.length === 0)) {
    throw new VabError('EINVAL_INPUT', `handler "${arg}": expected misc,cow,backing,base (4 non-empty parts, got ${parts.length})`);
  }
  const [misc, cow, backing, base] = parts;
  return { misc, cow, backing, base };
}

export interface SnapuserdOptions {
  runDir: string;
  channels?: number;
  logger: Logger;
  /** Handlers added and started at startup (the boot daemon). */
  handlers: HandlerSpec[];
  // The control socket (`--socket PATH`, default <run>/snapuserd.sock) plugs in here: its server
  // takes this registry and answers init/start/delete with it.
}

export interface SnapuserdDaemon {
  readonly registry: HandlerRegistry;
  /** Stops every handler: their channels close, what they held fails (or is requeued) in the kernel. */
  stop(): Promise<void>;
}

/**
 * The snapuserd process's core: a handler registry, filled at startup with the given handlers as
 * Android's `snapuserd -no_socket` does (AddHandler + StartHandler for each). If one of them fails
 * the daemon does not start at all, so a boot never runs with half its partitions unserved.
 */
export async function startSnapuserd(options: SnapuserdOptions): Promise<SnapuserdDaemon> {
  const registry = new HandlerRegistry({ runDir: options.runDir, channels: options.channels ?? DEFAULT_SNAPUSERD_CHANNELS, logger: options.logger });
  try {
    for (const h of options.handlers) {
      const sectors = await registry.init(h.misc, h.cow, h.backing, h.base);
      await registry.start(h.misc);
      options.logger.info(`snapuserd: ${h.misc}: started (${sectors} sectors)`, { misc: h.misc, sectors });
    }
  } catch (err) {
    await registry.stopAll();
    throw err;
  }
  return {
    registry,
    stop: () => registry.stopAll(),
  };
}
