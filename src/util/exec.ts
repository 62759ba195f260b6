import { ChildProcess, spawn, StdioNull, StdioPipe } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { errnoCode, VabError } from './errors';

/**
 * The one way vab starts other programs. Asynchronous only, on purpose: a process that serves a
 * FUSE mount must never wait synchronously for a child, since a child touching that mount would
 * wait for a reply the blocked event loop can never send.
 */

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface StartOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** 'pipe' to write to the child's stdin (`stdin` property); default 'ignore'. */
  stdin?: 'pipe' | 'ignore';
  /** Extra descriptors from fd 3 on: an fd of this process to inherit, or 'pipe' (see `fd`). */
  extraFds?: ReadonlyArray<number | 'pipe'>;
  /** Names the child in errors; default the command. */
  label?: string;
  /**
   * Keep at most this many characters of `stdout` and `stderr` (the newest): a long-running child
   * must not grow this process without bound. Default 1 MiB for `start`, everything for `run`.
   */
  maxOutput?: number;
  /**
   * Start the child as the leader of a new process group, so `signalGroup` reaches everything it
   * spawned (a shell script's background jobs would otherwise outlive a kill of the script).
   */
  newProcessGroup?: boolean;
}

/** How long output may still arrive after the child exited (see `exited`). */
const STREAM_DRAIN_MS = 2_000;

/** How long `stop` waits after its first signal before SIGKILL. */
export const DEFAULT_STOP_GRACE_MS = 10_000;

/** A running child with what it printed so far, line by line on stdout. */
export class ChildHandle {
  readonly exited: Promise<Exit>;
  readonly lines: string[] = [];
  private out = '';
  private err = '';
  private partial = '';
  private exit: Exit | undefined;
  private spawnError: Error | undefined;
  private wakers: Array<() => void> = [];
  private drainTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly child: ChildProcess,
    readonly label: string,
    private readonly maxOutput: number,
    private readonly groupLeader = false,
  ) {
    child.stdout?.setEncoding('utf8').on('data', (text: string) => this.onStdout(text));
    child.stderr?.setEncoding('utf8').on('data', (text: string) => (this.err = this.keep(this.err + text)));
    // Finished at 'close', when both streams are drained and the output is complete; but a
    // grandchild that inherited stdout can hold it open for ever, so 'exit' bounds that wait.
    this.exited = new Promise((resolve) => {
      child.on('error', (error) => {
        // Spawning failed (ENOENT, EACCES): no 'close' follows when nothing was ever started. The
        // other 'error's (a signal that could not be sent) change nothing about the child.
        if (child.pid !== undefined) return;
        this.spawnError = error;
        this.finish({ code: null, signal: null }, resolve);
      });
      child.once('exit', (code, signal) => {
        this.drainTimer = setTimeout(() => this.finish({ code, signal }, resolve), STREAM_DRAIN_MS);
      });
      child.once('close', (code, signal) => this.finish({ code, signal }, resolve));
    });
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get running(): boolean {
    return this.exit === undefined && this.spawnError === undefined;
  }

  get stdout(): string {
    return this.out;
  }

  get stderr(): string {
    return this.err;
  }

  /** Why the program could not be started, if it could not. */
  get startError(): Error | undefined {
    return this.spawnError;
  }

  get stdin(): Writable {
    if (!this.child.stdin) throw new VabError('ESTATE', `${this.label} was started without a stdin pipe`);
    return this.child.stdin;
  }

  /** The pipe on descriptor `n` (3 or above) when it was started as 'pipe'. */
  fd(n: number): Readable & Writable {
    const stream = this.child.stdio[n] as (Readable & Writable) | null | undefined;
    if (!stream) throw new VabError('ESTATE', `${this.label} has no pipe on fd ${n}`);
    return stream;
  }

  /**
   * Resolves with the first complete stdout line matching `pattern` (a string matches as a
   * substring); fails when the child exits without printing it or after `timeoutMs`.
   */
  async waitForLine(pattern: RegExp | string | ((line: string) => boolean), timeoutMs = 20_000): Promise<string> {
    const matches = (line: string): boolean =>
      typeof pattern === 'string' ? line.includes(pattern) : typeof pattern === 'function' ? pattern(line) : pattern.test(line);
    const what = typeof pattern === 'function' ? 'the awaited condition' : String(pattern);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.lines.find(matches);
      if (found !== undefined) return found;
      if (!this.running) {
        const why = this.spawnError ? `could not start: ${this.spawnError.message}` : describeExit(this.exit);
        throw new VabError('ESTATE', `${this.label} ${why} before printing a line matching ${what}; stderr: ${this.err.slice(-2000).trim()}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new VabError('ETIMEDOUT', `${this.label} printed no line matching ${what} within ${timeoutMs} ms; stdout: ${this.out.slice(-2000).trim()}; stderr: ${this.err.slice(-2000).trim()}`);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wakers.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Sends `signal` unless the child has already exited. */
  signal(signal: NodeJS.Signals): void {
    if (this.running) this.child.kill(signal);
  }

  /**
   * Sends `signal` to the child's whole process group (started with `newProcessGroup`). Unlike
   * `signal`, this also acts after the child exited: its descendants may still be running. Returns
   * false when no process of the group is left.
   */
  signalGroup(signal: NodeJS.Signals): boolean {
    if (!this.groupLeader) throw new VabError('ESTATE', `${this.label} was not started in its own process group`);
    if (this.child.pid === undefined) return false;
    try {
      process.kill(-this.child.pid, signal);
      return true;
    } catch (err) {
      if (errnoCode(err) === 'ESRCH') return false;
      throw err;
    }
  }

  /**
   * Sends `signal` and waits for the exit; a child still running `graceMs` later gets SIGKILL,
   * so this always ends (unless the child is stuck in the kernel, where no signal helps).
   */
  async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = DEFAULT_STOP_GRACE_MS): Promise<Exit> {
    this.signal(signal);
    const timer = setTimeout(() => this.signal('SIGKILL'), graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  private onStdout(text: string): void {
    this.out = this.keep(this.out + text);
    const parts = (this.partial + text).split('\n');
    this.partial = parts.pop() ?? '';
    if (parts.length > 0) {
      this.lines.push(...parts);
      this.wake();
    }
  }

  private finish(exit: Exit, resolve: (exit: Exit) => void): void {
    if (this.exit) return;
    clearTimeout(this.drainTimer);
    if (this.partial) this.lines.push(this.partial);
    this.partial = '';
    this.exit = exit;
    resolve(exit);
    this.wake();
  }

  private keep(text: string): string {
    return text.length > this.maxOutput ? text.slice(text.length - this.maxOutput) : text;
  }

  private wake(): void {
    for (const wake of this.wakers.splice(0)) wake();
  }
}

/** Starts `command` with stdout and stderr captured. A program that cannot start shows in `exited` and `startError`. */
export function start(command: string, args: readonly string[], options: StartOptions = {}): ChildHandle {
  const stdio: Array<StdioPipe | StdioNull | number> = [options.stdin ?? 'ignore', 'pipe', 'pipe', ...(options.extraFds ?? [])];
  const detached = options.newProcessGroup ?? false;
  const child = spawn(command, args, { cwd: options.cwd, env: options.env, stdio, detached });
  return new ChildHandle(child, options.label ?? command, options.maxOutput ?? 1 << 20, detached);
}

export interface RunResult extends Exit {
  stdout: string;
  stderr: string;
  /** Wall-clock time from spawn to exit. */
  elapsedMs: number;
  /** The child was killed because `timeoutMs` ran out (then `signal` is SIGKILL). */
  timedOut: boolean;
}

export interface RunOptions extends StartOptions {
  /** Kill the child (SIGKILL) after this long. */
  timeoutMs?: number;
  /** Written to the child's stdin, which is then closed. */
  input?: string | Buffer;
}

/** Runs a program to its end and collects its output. Fails (EIO) only when it cannot be started. */
export async function run(command: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const started = performance.now();
  const child = start(command, args, { maxOutput: Infinity, ...options, stdin: options.input === undefined ? options.stdin : 'pipe' });
  if (options.input !== undefined) child.stdin.end(options.input);
  let timedOut = false;
  const timer =
    options.timeoutMs === undefined
      ? undefined
      : setTimeout(() => {
          timedOut = true;
          child.signal('SIGKILL');
        }, options.timeoutMs);
  const exit = await child.exited.finally(() => clearTimeout(timer));
  if (child.startError) throw new VabError('EIO', `cannot run ${command}: ${child.startError.message}`, { cause: child.startError });
  return { ...exit, stdout: child.stdout, stderr: child.stderr, elapsedMs: performance.now() - started, timedOut };
}

/** Like `run`, but a non-zero exit or a signal is an error carrying the program's stderr. */
export async function runChecked(command: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const result = await run(command, args, options);
  if (result.code !== 0) {
    throw new VabError('EIO', `${command} ${args.join(' ')} ${describeExit(result)}: ${result.stderr.trim() || result.stdout.trim()}`);
  }
  return result;
}

function describeExit(exit: Exit | undefined): string {
  if (!exit) return 'still running';
  return exit.signal ? `was killed by ${exit.signal}` : `exited with ${exit.code}`;
}
