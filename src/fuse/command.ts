import { spawn } from 'child_process';

export interface CommandResult {
  /** Exit code, or null when the command was killed (by signal or by the timeout). */
  code: number | null;
  stderr: string;
  timedOut: boolean;
}

/**
 * Runs a system tool asynchronously. The serving process must never use spawnSync/execSync: a tool
 * that touches the mount would wait for a reply the blocked event loop can never send.
 * `extraFd` is inherited by the child as fd 3 (how `mount` receives the /dev/fuse fd).
 */
export function runCommand(command: string, args: readonly string[], options: { timeoutMs?: number; extraFd?: number } = {}): Promise<CommandResult> {
  return new Promise((resolve) => {
    const stdio: ('ignore' | 'pipe' | number)[] = ['ignore', 'ignore', 'pipe'];
    if (options.extraFd !== undefined) stdio.push(options.extraFd);
    const child = spawn(command, args, { stdio });
    let stderr = '';
    let timedOut = false;
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      if (stderr.length < 4096) stderr += chunk;
    });
    const timer =
      options.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            child.kill('SIGKILL');
          }, options.timeoutMs);
    child.on('error', (err) => {
      if (timer) clearTimeout(timer);
      resolve({ code: null, stderr: err.message, timedOut });
    });
    child.on('close', (code) => {
      if (timer) clearTimeout(timer);
      resolve({ code, stderr: stderr.trim(), timedOut });
    });
  });
}
