import net from 'node:net';
import { VabError, errnoCode, isVabErrorCode } from '../util/errors';
import { ControlRequest, ControlResponse, KernelStatus, controlSocketPath } from './control';
import type { KernelParams } from './params';
import type { MappedTargetInfo } from './kernel';

/** How long a control request may take; they are all quick, so a hang means a stuck kernel. */
const REQUEST_TIMEOUT_MS = 10_000;

/** Sends one request to the kernel serving `runDir` and returns its result (or throws its error). */
export function callKernel(runDir: string, request: ControlRequest, timeoutMs = REQUEST_TIMEOUT_MS): Promise<unknown> {
  const file = controlSocketPath(runDir);
  return new Promise((resolve, reject) => {
    const socket = net.createConnection({ path: file });
    let buffered = '';
    let settled = false;
    const finish = (err: Error | undefined, value?: unknown): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(value);
    };
    const timer = setTimeout(() => finish(new VabError('ETIMEDOUT', `vab kernel at ${file} did not answer within ${timeoutMs} ms`)), timeoutMs);
    socket.once('connect', () => socket.write(JSON.stringify(request) + '\n'));
    socket.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('utf8');
      const newline = buffered.indexOf('\n');
      if (newline < 0) return;
      let response: ControlResponse;
      try {
        response = JSON.parse(buffered.slice(0, newline)) as ControlResponse;
      } catch {
        finish(new VabError('EPROTO', `vab kernel at ${file} sent a malformed answer`));
        return;
      }
      if (response.ok) finish(undefined, response.result);
      else if (isVabErrorCode(response.code)) finish(new VabError(response.code, response.message));
      else finish(new VabError('EPROTO', `vab kernel at ${file} answered with an unknown error code ${JSON.stringify(response.code)}: ${response.message}`));
    });
    socket.on('error', (err) => {
      const code = errnoCode(err);
      if (code === 'ENOENT' || code === 'ECONNREFUSED') {
        finish(new VabError('ESTATE', `vab kernel is not running (no control socket at ${file})`));
      } else {
        finish(new VabError('EIO', `cannot reach vab kernel at ${file}: ${err.message}`));
      }
    });
    socket.on('close', () => finish(new VabError('EPROTO', `vab kernel at ${file} closed the connection without answering`)));
  });
}

export async function createTarget(runDir: string, name: string, size: number): Promise<MappedTargetInfo> {
  return (await callKernel(runDir, { op: 'create', name, size })) as MappedTargetInfo;
}

/** A target mapping `file` straight through (dm-linear); its size is the file's unless given. */
export async function createLinearTarget(runDir: string, name: string, file: string, size?: number): Promise<MappedTargetInfo> {
  return (await callKernel(runDir, { op: 'create', name, linear: file, size })) as MappedTargetInfo;
}

/** How long a reload may take: it waits for the old daemon's held IO, each bounded by io_timeout_ms. */
const RELOAD_TIMEOUT_MS = 5 * 60_000;

/** Moves block file `name` onto a new dm-user misc name (a daemon handoff) or onto a file. */
export async function reloadTarget(runDir: string, name: string, to: { misc?: string; linear?: string }): Promise<MappedTargetInfo> {
  return (await callKernel(runDir, { op: 'reload', name, ...to }, RELOAD_TIMEOUT_MS)) as MappedTargetInfo;
}

export async function removeTarget(runDir: string, name: string): Promise<void> {
  await callKernel(runDir, { op: 'remove', name });
}

export async function kernelStatus(runDir: string): Promise<KernelStatus> {
  return (await callKernel(runDir, { op: 'list' })) as KernelStatus;
}

export async function setKernelParam(runDir: string, param: string, value: number): Promise<KernelParams> {
  return (await callKernel(runDir, { op: 'set', param, value })) as KernelParams;
}

/** True when a live kernel answers on `runDir`'s control socket. */
export async function kernelIsRunning(runDir: string): Promise<boolean> {
  try {
    await kernelStatus(runDir);
    return true;
  } catch (err) {
    if (err instanceof VabError && err.code === 'ESTATE') return false;
    throw err;
  }
}
