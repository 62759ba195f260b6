import path from 'node:path';
import type { SocketTransport } from '../dmuser/socket-channel';
import { VabError } from '../util/errors';
import type { Logger } from '../util/log';
import { ensurePrivateRunDir } from '../util/private-socket';
import { ControlServer, startControlServer } from './control/server';
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

export function defaultSocketPath(runDir: string): string {
  return path.join(runDir, 'snapuserd.sock');
}

export interface SnapuserdOptions {
  runDir: string;
  channels?: number;
  /** dm-user socket transport (default `auto`: shared memory when both sides can). */
  transport?: SocketTransport;
  logger: Logger;
  /** Handlers added and started at startup (the boot daemon). */
  handlers: HandlerSpec[];
  /** The control socket; none in the boot daemon's form (Android's -no_socket). */
  socketPath?: string;
}

export interface SnapuserdDaemon {
  readonly registry: HandlerRegistry;
  readonly control?: ControlServer;
  /**
   * Resolves when the daemon should exit by its own decision: `stop` was sent, or `detach` was
   * sent and every handler has since ended.
   */
  readonly finished: Promise<'stop' | 'detach'>;
  /** Stops every handler: their channels close, what they held fails (or is requeued) in the kernel. */
  stop(): Promise<void>;
}

/**
 * The snapuserd process's core: a handler registry, filled at startup with the given handlers as
 * Android's `snapuserd -no_socket` does (AddHandler + StartHandler for each), and, with a socket,
 * the control server that adds, starts, merges and deletes handlers on request. If a startup
 * handler fails the daemon does not start at all, so a boot never runs with half its partitions
 * unserved.
 */
export async function startSnapuserd(options: SnapuserdOptions): Promise<SnapuserdDaemon> {
  const registry = new HandlerRegistry({ runDir: options.runDir, channels: options.channels ?? DEFAULT_SNAPUSERD_CHANNELS, transport: options.transport, logger: options.logger });
  let finish: (how: 'stop' | 'detach') => void = () => undefined;
  const finished = new Promise<'stop' | 'detach'>((resolve) => (finish = resolve));
  let control: ControlServer | undefined;
  try {
    for (const h of options.handlers) {
      const sectors = await registry.init(h.misc, h.cow, h.backing, h.base);
      await registry.start(h.misc);
      options.logger.info(`snapuserd: ${h.misc}: started (${sectors} sectors)`, { misc: h.misc, sectors });
    }
    if (options.socketPath) {
      await ensurePrivateRunDir(path.dirname(options.socketPath), 'socket directory');
      control = await startControlServer({
        socketPath: options.socketPath,
        backend: registry,
        logger: options.logger,
        onStop: () => finish('stop'),
        onDetach: () => {
          // Android: merges stop, the listener goes, the handlers serve until their devices are destroyed.
          options.logger.info('snapuserd: detached; exiting once every handler has ended');
          void registry.stopMerges().then(() => control?.close()).then(() => registry.whenIdle()).then(() => finish('detach'));
        },
      });
    }
  } catch (err) {
    await registry.stopAll();
    throw err;
  }
  return {
    registry,
    control,
    finished,
    async stop() {
      await control?.close();
      await registry.stopAll();
    },
  };
}
