import { createHash } from 'crypto';
import { promises as fsp } from 'fs';
import os from 'os';
import path from 'path';
import { ChildHandle, run, start } from '../../../src/util/exec';
import type { ServerConfig } from './server';

/**
 * Runs a TypeScript entry point in a child process. jest's ts transform only exists inside jest,
 * and dist/ may be stale or half-built while other areas are being edited, so the entry and what
 * it imports are compiled with tsc into a temporary directory (about 2 s, once). NODE_PATH lets the
 * compiled files find the repository's node_modules from there.
 *
 * Other layers reuse this to serve their own providers: write an entry like support/server.ts,
 * call `compileForChild('test/<area>/support/<entry>.ts')`, then `spawnCompiled(...)`.
 */
const REPO = path.resolve(__dirname, '../../..');
const compiled = new Map<string, Promise<string>>();

export function compileForChild(entry: string): Promise<string> {
  let result = compiled.get(entry);
  if (!result) {
    result = compile(entry);
    compiled.set(entry, result);
  }
  return result;
}

/**
 * Output goes to a directory named by a hash of every source it could import, so repeated runs
 * reuse it; a new build is made aside and renamed into place, so concurrent runs never see half.
 */
async function compile(entry: string): Promise<string> {
  const outDir = path.join(os.tmpdir(), `vab-child-${await sourceHash(entry)}`);
  const script = path.join(outDir, entry.replace(/\.ts$/, '.js'));
  if (await fsp.stat(script).then(() => true, () => false)) return script;
  const buildDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'vab-child-build-'));
  const tsc = path.join(REPO, 'node_modules/typescript/bin/tsc');
  const args = [tsc, '--ignoreConfig', '--outDir', outDir, '--rootDir', REPO, '--module', 'node16', '--moduleResolution', 'node16',
    '--target', 'ES2022', '--strict', '--esModuleInterop', '--skipLibCheck', '--types', 'node', path.join(REPO, entry)];
  args[args.indexOf('--outDir') + 1] = buildDir;
  const result = await run(process.execPath, args, { cwd: REPO, timeoutMs: 60_000 });
  if (result.code !== 0) {
    await fsp.rm(buildDir, { recursive: true, force: true });
    throw new Error(`compiling ${entry} failed:\n${result.stdout}${result.stderr}`);
  }
  // Losing the race to another run that built the same sources is fine: its output is identical.
  await fsp.rename(buildDir, outDir).catch(() => fsp.rm(buildDir, { recursive: true, force: true }));
  return script;
}

async function sourceHash(entry: string): Promise<string> {
  const hash = createHash('sha256');
  const roots = [path.join(REPO, 'src'), path.join(REPO, path.dirname(entry))];
  for (const root of roots) {
    for (const file of (await fsp.readdir(root, { recursive: true })).filter((f) => f.endsWith('.ts')).sort()) {
      hash.update(file).update(await fsp.readFile(path.join(root, file)));
    }
  }
  return hash.digest('hex').slice(0, 16);
}

export function spawnCompiled(script: string, args: readonly string[]): ChildHandle {
  return start(process.execPath, [script, ...args], {
    stdin: 'pipe',
    env: { ...process.env, NODE_PATH: path.join(REPO, 'node_modules') },
    label: path.basename(script),
  });
}

export interface ServerEvent {
  event: string;
  [key: string]: unknown;
}

/** A running support/server.ts child and the events (one JSON object per stdout line) it has printed so far. */
export class FuseServerProcess {
  readonly exited: Promise<number | null>;

  constructor(readonly child: ChildHandle) {
    this.exited = child.exited.then((exit) => exit.code);
  }

  get events(): ServerEvent[] {
    return this.child.lines.map((line) => JSON.parse(line) as ServerEvent);
  }

  get stderr(): string {
    return this.child.stderr;
  }

  count(event: string, file?: string): number {
    return this.events.filter((e) => e.event === event && (file === undefined || e.file === file)).length;
  }

  /** Resolves with the first event matching, failing after `timeoutMs` or if the child exits first. */
  async waitFor(match: (e: ServerEvent) => boolean, timeoutMs = 10_000): Promise<ServerEvent> {
    const line = await this.child.waitForLine((l) => match(JSON.parse(l) as ServerEvent), timeoutMs);
    return JSON.parse(line) as ServerEvent;
  }

  /** Asks for a clean unmount and waits for the process to exit. */
  async stop(): Promise<number | null> {
    if (this.child.running) this.child.stdin.write('unmount\n');
    return this.exited;
  }
}

export async function startFuseServer(config: ServerConfig): Promise<FuseServerProcess> {
  const script = await compileForChild('test/fuse/support/server.ts');
  const server = new FuseServerProcess(spawnCompiled(script, [JSON.stringify(config)]));
  await server.waitFor((e) => e.event === 'ready');
  return server;
}
