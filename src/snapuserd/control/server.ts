import { promises as fs } from 'node:fs';
import net from 'node:net';
import { VabError, isVabError } from '../../util/errors';
import type { Logger } from '../../util/log';
import { listenPrivate } from '../../util/private-socket';
import type { SnapuserdBackend } from './backend';
import { ControlCommand, MAX_REQUEST_BYTES, SOCKET_HANDOFF_FEATURE, formatMergePercent, initReply, parseRequest, requestText } from './protocol';

export interface ControlServerOptions {
  socketPath: string;
  backend: SnapuserdBackend;
  logger: Logger;
  /** `stop`: the daemon stops every handler and exits. */
  onStop: () => void;
  /** `detach`: the listener is gone; the daemon exits once its handlers have ended. */
  onDetach: () => void;
}

export interface ControlServer {
  readonly socketPath: string;
  /** False after detach/stop: `query` would answer `passive`. */
  readonly active: boolean;
  close(): Promise<void>;
}

/**
 * snapuserd's control socket. Like Android's server, each read from a client is one request
 * (Android does one recv of up to 512 bytes per poll): there is no framing, so a request that
 * arrives in two pieces is taken as two requests, and a read longer than 512 bytes is refused
 * (Android would cut it). Requests of one client are answered in order; a client that sends an
 * unknown command gets `fail` and is disconnected, as on Android. Nothing a client sends reaches
 * another client or a handler it did not name.
 */
export async function startControlServer(options: ControlServerOptions): Promise<ControlServer> {
  const { backend, logger } = options;
  let active = true;
  const clients = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    clients.add(socket);
    let chain = Promise.resolve();
    socket.on('error', (err) => logger.warn('snapuserd control: client error', { error: err.message }));
    socket.on('close', () => clients.delete(socket));
    socket.on('data', (chunk: Buffer) => {
      chain = chain.then(() => handleChunk(socket, chunk));
    });
  });

  const handleChunk = async (socket: net.Socket, chunk: Buffer): Promise<void> => {
    if (socket.destroyed) return;
    if (chunk.length > MAX_REQUEST_BYTES + 1) {
      logger.error('snapuserd control: request too long, client dropped', { bytes: chunk.length });
      socket.end('fail');
      return;
    }
    // People typing at the socket send a line at a time; one read may then hold a few.
    const texts = requestText(chunk).split('\n').map((t) => t.replace(/\r$/, ''));
    for (const text of texts) {
      if (text === '' && texts.length > 1) continue;
      const parsed = parseRequest(text);
      if (!parsed.ok && parsed.kind === 'unknown') {
        logger.error(`snapuserd control: ${parsed.reason}; client dropped`);
        socket.end('fail');
        return;
      }
      if (!parsed.ok) {
        logger.error(`snapuserd control: malformed ${parsed.command}: ${parsed.reason}`, { command: parsed.command });
        write(socket, parsed.reply);
        continue;
      }
      const reply = await execute(parsed.command);
      if (reply !== undefined) write(socket, reply);
    }
  };

  const write = (socket: net.Socket, reply: string): void => {
    if (!socket.destroyed) socket.write(reply);
  };

  const execute = async (command: ControlCommand): Promise<string | undefined> => {
    const misc = 'misc' in command ? command.misc : undefined;
    try {
      switch (command.kind) {
        case 'query':
          return active ? 'active' : 'passive';
        case 'init':
          return initReply(await backend.init(command.misc, command.cow, command.backing, command.base));
        case 'start':
          await backend.start(command.misc);
          return 'success';
        case 'delete':
          // Android answers success for a handler it no longer has (it may have exited on its own).
          if (backend.has(command.misc)) await backend.delete(command.misc);
          return 'success';
        case 'detach':
          active = false;
          options.onDetach();
          return undefined;
        case 'stop':
          active = false;
          options.onStop();
          return undefined;
        case 'supports':
          return command.feature === SOCKET_HANDOFF_FEATURE ? 'success' : 'fail';
        case 'initiate_merge':
          if (!backend.initiateMerge) throw new Error('this daemon cannot merge');
          await backend.initiateMerge(command.misc);
          return 'success';
        case 'merge_percent':
          return formatMergePercent(backend.mergePercent?.() ?? 0);
        case 'getstatus':
          if (!backend.has(command.misc)) return 'snapshot-merge-failed';
          return backend.mergeStatus?.(command.misc) ?? 'snapshot';
        case 'update-verify':
          // Android: every handler must be running (verification itself is off with a socket).
          return backend.names().every((name) => backend.isStarted(name)) ? 'success' : 'fail';
        case 'pause_merge':
          backend.pauseMerge?.();
          return 'success';
        case 'resume_merge':
          backend.resumeMerge?.();
          return 'success';
      }
    } catch (err) {
      const message = (err as Error).message;
      logger.error(`snapuserd control: ${command.kind}${misc ? ` ${misc}` : ''} failed: ${message}`, { command: command.kind, misc, code: isVabError(err) ? err.code : undefined });
      return 'fail';
    }
  };

  await removeStaleSocket(options.socketPath);
  await listenPrivate(server, options.socketPath);
  logger.info('snapuserd control socket listening', { socket: options.socketPath });
  let closed = false;
  return {
    socketPath: options.socketPath,
    get active() {
      return active;
    },
    async close() {
      if (closed) return;
      closed = true;
      active = false;
      const done = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const client of clients) client.destroy();
      await done;
      await fs.rm(options.socketPath, { force: true });
    },
  };
}

/** A socket file left by a dead daemon is removed; one a live daemon answers on is not taken over. */
async function removeStaleSocket(file: string): Promise<void> {
  const live = await new Promise<boolean>((resolve) => {
    const probe = net.createConnection({ path: file });
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (live) throw new VabError('EEXIST', `another snapuserd is listening on ${file}`);
  await fs.rm(file, { force: true });
}
