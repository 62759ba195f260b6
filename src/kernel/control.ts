import { promises as fs } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { VabError, isVabError } from '../util/errors';
import type { Logger } from '../util/log';
import type { Kernel, MappedTargetInfo } from './kernel';
import type { KernelParams } from './params';
import { listenPrivate } from '../util/private-socket';

/**
 * The kernel's control socket `<run>/kernel.sock`: what `dmsetup` and the module parameters are to
 * the real driver. One JSON object per line each way; every request gets exactly one response.
 *
 *   {"op":"create","name":"system","size":1048576}  → {"ok":true,"result":MappedTargetInfo}
 *   {"op":"create","name":"vendor","linear":"/abs/vendor.img"} (size optional) → the same
 *   {"op":"reload","name":"system","misc":"system-1"} or {..., "linear":"/abs/system.img"} → the same
 *   {"op":"remove","name":"system"}                 → {"ok":true,"result":null}
 *   {"op":"list"}                                   → {"ok":true,"result":KernelStatus}
 *   {"op":"set","param":"daemon_timeout_ms","value":1000} → {"ok":true,"result":KernelParams}
 *   failure                                         → {"ok":false,"code":"EEXIST","message":"..."}
 */
export type ControlRequest =
  | { op: 'create'; name: string; size?: number; linear?: string }
  | { op: 'reload'; name: string; misc?: string; linear?: string }
  | { op: 'remove'; name: string }
  | { op: 'list' }
  | { op: 'set'; param: string; value: number };

export interface KernelStatus {
  mount: string;
  run: string;
  pid: number;
  params: KernelParams;
  targets: MappedTargetInfo[];
}

export type ControlResponse = { ok: true; result: unknown } | { ok: false; code: string; message: string };

export function controlSocketPath(runDir: string): string {
  return path.join(runDir, 'kernel.sock');
}

/** Longest request line accepted; anything longer is a confused client. */
const MAX_LINE = 64 * 1024;

export interface ControlServer {
  close(): Promise<void>;
}

export async function startControlServer(kernel: Kernel, mountDir: string, logger: Logger): Promise<ControlServer> {
  const file = controlSocketPath(kernel.runDir);
  await fs.rm(file, { force: true });
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let pending = '';
    let chain = Promise.resolve();
    socket.on('data', (chunk: Buffer) => {
      pending += chunk.toString('utf8');
      if (pending.length > MAX_LINE && !pending.includes('\n')) {
        socket.end(JSON.stringify({ ok: false, code: 'EINVAL_INPUT', message: 'request line too long' }) + '\n');
        return;
      }
      let newline: number;
      while ((newline = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, newline);
        pending = pending.slice(newline + 1);
        if (line.trim() === '') continue;
        // Requests on one connection are answered in order.
        chain = chain.then(async () => {
          const response = await handle(kernel, mountDir, line);
          if (!socket.destroyed) socket.write(JSON.stringify(response) + '\n');
        });
      }
    });
  });
  await listenPrivate(server, file);
  logger.info('kernel control socket listening', { socket: file });
  return {
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      await closed;
      await fs.rm(file, { force: true });
    },
  };
}

async function handle(kernel: Kernel, mountDir: string, line: string): Promise<ControlResponse> {
  try {
    const request = parseRequest(line);
    switch (request.op) {
      case 'create':
        return { ok: true, result: await kernel.createTarget(request.name, request.size, request.linear) };
      case 'reload':
        return { ok: true, result: await kernel.reloadTarget(request.name, { misc: request.misc, linear: request.linear }) };
      case 'remove':
        await kernel.removeTarget(request.name);
        return { ok: true, result: null };
      case 'list': {
        const status: KernelStatus = { mount: mountDir, run: kernel.runDir, pid: process.pid, params: { ...kernel.params }, targets: kernel.targets() };
        return { ok: true, result: status };
      }
      case 'set':
        kernel.setParam(request.param, request.value);
        return { ok: true, result: { ...kernel.params } };
    }
  } catch (err) {
    if (isVabError(err)) return { ok: false, code: err.code, message: err.message };
    return { ok: false, code: 'EIO', message: err instanceof Error ? err.message : String(err) };
  }
}

function parseRequest(line: string): ControlRequest {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw new VabError('EINVAL_INPUT', 'control request is not JSON');
  }
  const r = (typeof value === 'object' && value !== null ? value : {}) as Record<string, unknown>;
  const text = (key: string): string => {
    if (typeof r[key] !== 'string') throw new VabError('EINVAL_INPUT', `control request "${String(r.op)}" needs a string "${key}"`);
    return r[key] as string;
  };
  const number = (key: string): number => {
    if (typeof r[key] !== 'number') throw new VabError('EINVAL_INPUT', `control request "${String(r.op)}" needs a number "${key}"`);
    return r[key] as number;
  };
  const optional = <T>(key: string, read: (key: string) => T): T | undefined => (r[key] === undefined ? undefined : read(key));
  switch (r.op) {
    case 'create': {
      const linear = optional('linear', text);
      return { op: 'create', name: text('name'), size: linear === undefined ? number('size') : optional('size', number), linear };
    }
    case 'reload':
      return { op: 'reload', name: text('name'), misc: optional('misc', text), linear: optional('linear', text) };
    case 'remove':
      return { op: 'remove', name: text('name') };
    case 'list':
      return { op: 'list' };
    case 'set':
      return { op: 'set', param: text('param'), value: number('value') };
    default:
      throw new VabError('EINVAL_INPUT', `unknown control op ${JSON.stringify(r.op)}`);
  }
}
