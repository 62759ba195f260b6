/**
 * A FUSE server for tests, run as a CHILD process: the test process must never touch a mount it
 * serves. Files are backed by real files, so the test can check what reached the provider without
 * going through the mount. Protocol with the parent:
 *   argv[2]  JSON ServerConfig
 *   stdout   one JSON line per event: {"event":"ready","connection":N}, {"event":"flush","file":..},
 *            {"event":"discard","file":..,"offset":..,"length":..}, {"event":"slow-read",..} when a
 *            delayed read starts, {"event":"closed"} when the session has ended
 *   stdin    "unmount\n" unmounts cleanly and exits; SIGTERM does the same. "exit\n" exits (3) at
 *            once while still serving.
 */
import { promises as fsp } from 'fs';
import { BlockFile, BlockFileProvider, FuseErrnoError, mountBlockFiles } from '../../../src/fuse';
import { createLogger } from '../../../src/util/log';

export interface ServedFile {
  name: string;
  /** Existing file holding the content; its size is the block file's size. */
  backing: string;
  writable: boolean;
  /** Reads fail: with this errno (FuseErrnoError), or with a plain Error when errno is 0. */
  readErrno?: number;
  /** Every read waits this long before it is served. */
  readDelayMs?: number;
}

export interface ServerConfig {
  mountpoint: string;
  files: ServedFile[];
  directIo?: boolean;
  maxIo?: number;
  logFile?: string;
}

function emit(event: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify(event) + '\n');
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function main(): Promise<void> {
  const config = JSON.parse(process.argv[2]) as ServerConfig;
  const files: (BlockFile & { spec: ServedFile })[] = [];
  for (const [index, spec] of config.files.entries()) {
    const { size } = await fsp.stat(spec.backing);
    files.push({ id: index + 10, name: spec.name, size, writable: spec.writable, spec });
  }
  const handles = new Map<number, fsp.FileHandle>();
  for (const f of files) handles.set(f.id, await fsp.open(f.spec.backing, f.writable ? 'r+' : 'r'));
  const specOf = (file: BlockFile) => files.find((f) => f.id === file.id)!.spec;

  const provider: BlockFileProvider = {
    list: () => files,
    lookup: (name) => files.find((f) => f.name === name),
    async read(file, offset, length) {
      const spec = specOf(file);
      if (spec.readDelayMs) {
        emit({ event: 'slow-read', file: file.name, offset, length });
        await sleep(spec.readDelayMs);
      }
      if (spec.readErrno !== undefined) {
        throw spec.readErrno === 0 ? new Error('plain failure') : new FuseErrnoError(spec.readErrno, 'configured failure');
      }
      const out = Buffer.alloc(length);
      const { bytesRead } = await handles.get(file.id)!.read(out, 0, length, offset);
      return out.subarray(0, bytesRead);
    },
    async write(file, offset, data) {
      await handles.get(file.id)!.write(data, 0, data.length, offset);
    },
    async flush(file) {
      await handles.get(file.id)!.sync();
      emit({ event: 'flush', file: file.name });
    },
    async discard(file, offset, length) {
      await handles.get(file.id)!.write(Buffer.alloc(length), 0, length, offset);
      emit({ event: 'discard', file: file.name, offset, length });
    },
  };

  const logger = config.logFile ? createLogger('fuse-test-server', { file: config.logFile, level: 'debug' }) : undefined;
  const session = await mountBlockFiles({ mountpoint: config.mountpoint, provider, directIo: config.directIo, maxIo: config.maxIo, logger });
  emit({ event: 'ready', connection: session.connection, mountpoint: session.mountpoint });

  const stop = () => void session.unmount();
  process.on('SIGTERM', stop);
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (chunk: string) => {
    if (chunk.includes('unmount')) stop();
    if (chunk.includes('exit')) process.exit(3);
  });
  await session.closed;
  emit({ event: 'closed' });
  for (const handle of handles.values()) await handle.close();
  process.exit(0);
}

main().catch((err) => {
  emit({ event: 'error', message: String(err instanceof Error ? err.stack : err) });
  process.exit(1);
});
