import { promises as fs } from 'node:fs';
import { replaceFileAtomically } from '../../../src/util/atomic';
import { DeviceLayout, MetadataLock, SnapshotManager } from '../../../src/snapshot';

/**
 * A second vab process for the lock and crash tests (compiled with test/fuse/support/child.ts).
 *   hold DEVICE             take the metadata lock, print {"event":"locked"} or {"event":"busy"},
 *                           hold it until stdin closes
 *   crash DEVICE CALL N     run a SnapshotManager call whose N-th atomic write is killed (SIGKILL)
 *                           after its temporary file is durable and before the rename
 */
function say(event: object): void {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

async function hold(device: string): Promise<void> {
  let lock: MetadataLock;
  try {
    lock = await MetadataLock.acquire(new DeviceLayout(device).lockFile, 'test holder');
  } catch (err) {
    say({ event: 'busy', message: (err as Error).message });
    return;
  }
  say({ event: 'locked', pid: process.pid });
  process.stdin.resume();
  await new Promise((resolve) => process.stdin.on('end', resolve));
  await lock.release();
}

async function crash(device: string, call: string, n: number): Promise<void> {
  let writes = 0;
  const writer = (file: string, data: Uint8Array) =>
    replaceFileAtomically(file, async (temporary) => {
      await fs.writeFile(temporary, data, { flush: true });
      if (++writes === n) {
        say({ event: 'killing', file });
        process.kill(process.pid, 'SIGKILL');
        await new Promise(() => undefined);
      }
    });
  const manager = new SnapshotManager({ device, writer, command: `crash ${call}` });
  if (call === 'finish') await manager.finishedSnapshotWrites();
  else if (call === 'cancel') await manager.cancelUpdate();
  else if (call === 'begin') await manager.beginUpdate();
  else throw new Error(`unknown call ${call}`);
  say({ event: 'done', writes });
}

const [mode, device, call, n] = process.argv.slice(2);
(mode === 'hold' ? hold(device) : crash(device, call, Number(n))).catch((err: unknown) => {
  say({ event: 'error', message: String(err) });
  process.exitCode = 1;
});
