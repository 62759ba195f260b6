import { promises as fs } from 'node:fs';
import path from 'node:path';
import { DeviceLayout, SnapshotManager, SnapshotStore, UpdateState } from '../../src/snapshot';
import { ChildHandle, Exit } from '../../src/util/exec';
import { compileForChild, spawnCompiled } from '../fuse/support/child';
import { snapshotTree, tempDevice, writeImageAndCow } from './support/device';

/** Real second processes: lock contention, stale locks after SIGKILL, crashes inside an atomic write. */

process.env.VAB_PROTO_DIR = path.resolve(__dirname, '../../proto');
let script: string;
const dirs: string[] = [];
const children: ChildHandle[] = [];

beforeAll(async () => {
  script = await compileForChild('test/snapshot/support/child.ts');
});
afterAll(async () => {
  for (const child of children) child.signal('SIGKILL');
  for (const dir of dirs) await fs.rm(dir, { recursive: true, force: true });
});

interface Started {
  child: ChildHandle;
  next(event: string): Promise<{ event: string; [key: string]: unknown }>;
  exited: Promise<Exit>;
}

/** The child prints one JSON event a line; `next` waits for the first of a kind (or its error event). */
function start(args: string[]): Started {
  const child = spawnCompiled(script, args);
  children.push(child);
  const parse = (line: string): { event: string; [key: string]: unknown } | undefined => {
    try {
      return JSON.parse(line);
    } catch {
      return undefined;
    }
  };
  const next = async (event: string) => {
    const line = await child.waitForLine((l) => [event, 'error'].includes(parse(l)?.event ?? ''), 30_000);
    const found = parse(line)!;
    if (found.event === 'error') throw new Error(`child failed: ${String(found.message)}`);
    return found;
  };
  return { child, next, exited: child.exited };
}

async function device(): Promise<string> {
  const dir = await tempDevice();
  dirs.push(dir);
  return dir;
}

/** A device whose update has its snapshots and COWs written: state Initiated. */
async function initiatedWithCows(dir: string): Promise<void> {
  const manager = new SnapshotManager({ device: dir });
  await manager.beginUpdate();
  await manager.createUpdateSnapshots([{ name: 'system', deviceSize: 16 * 4096, oldPartitionSize: 16 * 4096 }]);
  await writeImageAndCow(dir, 'system', 16, 3);
}

describe('metadata lock between processes', () => {
  it('a second command gets a clear error naming the holder and changes nothing', async () => {
    const dir = await device();
    const holder = start(['hold', dir]);
    const { pid } = await holder.next('locked');
    const before = await snapshotTree(dir);
    const manager = new SnapshotManager({ device: dir });
    await expect(manager.beginUpdate()).rejects.toMatchObject({ code: 'ESTATE', message: expect.stringContaining(`locked by vab process ${pid} (test holder)`) });
    expect(await snapshotTree(dir)).toEqual(before);

    const second = start(['hold', dir]);
    expect((await second.next('busy')).message).toContain(String(pid));
    expect((await second.exited).code).toBe(0);

    holder.child.stdin.end();
    expect((await holder.exited).code).toBe(0);
    await manager.beginUpdate();
    expect(await manager.updateState()).toBe(UpdateState.Initiated);
    await expect(fs.access(new DeviceLayout(dir).lockFile)).rejects.toThrow();
  });

  it('a lock left by a SIGKILLed command is taken over', async () => {
    const dir = await device();
    const holder = start(['hold', dir]);
    await holder.next('locked');
    holder.child.signal('SIGKILL');
    expect((await holder.exited).signal).toBe('SIGKILL');
    const manager = new SnapshotManager({ device: dir });
    await manager.beginUpdate();
    expect(await manager.updateState()).toBe(UpdateState.Initiated);
  });

  it('of several processes racing for a stale lock exactly one wins', async () => {
    const dir = await device();
    const dead = start(['hold', dir]);
    await dead.next('locked');
    dead.child.signal('SIGKILL');
    await dead.exited;
    const racers = Array.from({ length: 4 }, () => start(['hold', dir]));
    const outcomes = await Promise.all(racers.map((r) => Promise.race([r.next('locked'), r.next('busy')])));
    expect(outcomes.filter((o) => o.event === 'locked')).toHaveLength(1);
    for (const r of racers) r.child.stdin.end();
    await Promise.all(racers.map((r) => r.exited));
    await expect(fs.access(new DeviceLayout(dir).lockFile)).rejects.toThrow();
  });
});

describe('a crash inside a state change', () => {
  it('between the temporary write and the rename leaves the old state, and the call can be repeated', async () => {
    const dir = await device();
    await initiatedWithCows(dir);
    const layout = new DeviceLayout(dir);
    const store = new SnapshotStore(layout);
    const stateBefore = await fs.readFile(layout.stateFile);

    // Write 1 of finishedSnapshotWrites is snapshot-boot, write 2 the state.
    for (const n of [1, 2]) {
      const child = start(['crash', dir, 'finish', String(n)]);
      await child.next('killing');
      expect((await child.exited).signal).toBe('SIGKILL');
      expect(await fs.readFile(layout.stateFile)).toEqual(stateBefore);
      expect((await store.readUpdateStatus()).state).toBe(UpdateState.Initiated);
      expect(await fs.access(layout.bootIndicator).then(() => true, () => false)).toBe(n === 2);
      // The killed write left its temporary file behind, hidden.
      expect((await fs.readdir(layout.metadataDir)).some((f) => f.startsWith('.') && f.includes('.tmp-'))).toBe(true);
    }

    const manager = new SnapshotManager({ device: dir });
    await manager.finishedSnapshotWrites(); // takes over the dead child's lock
    expect(await manager.updateState()).toBe(UpdateState.Unverified);

    const cancel = start(['crash', dir, 'cancel', '1']);
    await cancel.next('killing');
    await cancel.exited;
    expect(await manager.updateState()).toBe(UpdateState.Unverified);
    expect(await store.listSnapshots()).toEqual(['system']);
    await fs.access(layout.cow('system'));
    await manager.cancelUpdate();
    expect(await manager.updateState()).toBe(UpdateState.None);
  });

  it('an uninterrupted child run completes (the harness itself works)', async () => {
    const dir = await device();
    await initiatedWithCows(dir);
    const child = start(['crash', dir, 'finish', '99']);
    expect((await child.next('done')).writes).toBe(2);
    expect((await child.exited).code).toBe(0);
    expect(await new SnapshotManager({ device: dir }).updateState()).toBe(UpdateState.Unverified);
  });
});
