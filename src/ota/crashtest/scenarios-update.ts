import { promises as fs } from 'node:fs';
import path from 'node:path';
import { sha256File } from '../../util/file-hash';
import { spawnVab, vab } from '../vab-processes';
import { DEVICE_PARTITIONS } from './device-fixture';
import { DeviceRound } from './device-world';
import { Figures, Scenario, check, sleep } from './scenario';

/**
 * SIGKILL snapuserd at chosen moments of a merge; `vab boot --supervise` restarts it and resumes
 * the merge. Readers compare random blocks with the new images all along: not one wrong byte, and
 * (restart_grace_ms > 0) not one error.
 */
export const mergeKill: Scenario = {
  name: 'merge-kill',
  description: 'SIGKILL snapuserd at chosen points of a merge; it restarts and resumes; readers see only new content; base == new',
  async run({ world, rng, note }): Promise<Figures> {
    const round = await DeviceRound.create(world);
    await round.apply();
    const boot = await round.startBoot({ supervise: true, restartGraceMs: 8000 });
    const readers = DEVICE_PARTITIONS.map((p) => world.startReader(round.blockFile(p), round.newImage(p), { mode: 'random', count: 0, stopOnError: false }));
    await vab(['merge', '--device', round.device, '--run', world.run]);
    const kills = rng.int(1, 3);
    let done = 0;
    for (let k = 1; k <= kills; k++) {
      await sleep(rng.int(10, 300));
      if ((await round.state()) !== 'merging') break;
      const pid = await round.daemonPid();
      process.kill(pid, 'SIGKILL');
      done++;
      note(`kill ${k}: SIGKILLed snapuserd ${pid}`);
      await boot.waitForLine(new RegExp(`restart ${done}\\b`), 30_000);
    }
    const wait = await vab(['merge', '--device', round.device, '--run', world.run, '--wait'], 300_000);
    note(wait.stdout.trim());
    for (const reader of readers) reader.child.signal('SIGTERM');
    await Promise.all(readers.map((r) => r.child.exited));
    for (const [i, reader] of readers.entries()) {
      check(reader.mismatches() === 0, `a reader of ${DEVICE_PARTITIONS[i]} saw bytes that are not the new image's during the merge`);
      check(reader.firstError() === undefined, `a reader of ${DEVICE_PARTITIONS[i]} got ${reader.firstError()?.code} during the merge`);
      check(reader.goodReads > 0, `the reader of ${DEVICE_PARTITIONS[i]} read nothing`);
    }
    await round.checkMerged();
    check((await round.state()) === 'none', `the update is ${await round.state()} after the merge, not none`);
    return { kills: done, reads_during_merge: readers.reduce((n, r) => n + r.goodReads, 0) };
  },
};

/** SIGKILL `vab apply` after a chosen number of ops, run it again: the update is the same as a clean one. */
export const applyKill: Scenario = {
  name: 'apply-kill',
  description: 'SIGKILL vab apply after a chosen op; running it again gives the same update as one clean apply',
  async run({ world, rng, note }): Promise<Figures> {
    const round = await DeviceRound.create(world);
    const first = spawnVab(['apply', round.fixture.payload, '--device', round.device, '--key', round.fixture.publicKey, '--json'], 'vab apply');
    world.children.push(first);
    const progress = (): { ops: number; totalOps: number } | undefined => {
      const last = [...first.lines].reverse().find((l) => l.startsWith('{"event":"progress"'));
      return last ? (JSON.parse(last) as { ops: number; totalOps: number }) : undefined;
    };
    await first.waitForLine((l) => l.startsWith('{"event":"progress"'), 60_000);
    const killAt = rng.int(1, Math.max(1, progress()!.totalOps - 1));
    await Promise.race([first.waitForLine((l) => l.startsWith('{"event":"progress"') && (JSON.parse(l) as { ops: number }).ops >= killAt, 60_000), first.exited]);
    first.signal('SIGKILL');
    await first.exited;
    const killedAt = progress()?.ops ?? 0;
    note(`SIGKILLed vab apply after op ${killedAt} of ${progress()?.totalOps}`);
    const again = await vab(['apply', round.fixture.payload, '--device', round.device, '--key', round.fixture.publicKey], 300_000);
    note(again.stdout.trim().split('\n').pop() ?? '');
    check((await round.state()) === 'unverified', `after the second apply the update is ${await round.state()}, not unverified`);
    for (const p of DEVICE_PARTITIONS) {
      const view = world.path(`${p}.view`);
      const size = (await fs.stat(round.newImage(p))).size;
      await vab(['cow', 'apply', path.join(round.device, 'data/ota', `${p}.cow`), '--base', path.join(round.device, 'super', `${p}.img`), '-o', view, '--size', String(size)], 120_000);
      check((await sha256File(view)) === (await sha256File(round.newImage(p))), `${p}: base + COW after the resumed apply is not the new image`);
    }
    return { killed_after_op: killedAt };
  },
};
