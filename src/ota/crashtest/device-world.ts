import { promises as fs } from 'node:fs';
import path from 'node:path';
import { sha256File } from '../../util/file-hash';
import type { ChildHandle } from '../../util/exec';
import { spawnVab, vab } from '../vab-processes';
import { DEVICE_PARTITIONS, DeviceFixture, deviceFixture, makeDevice } from './device-fixture';
import { check } from './scenario';
import type { World } from './world';

export interface BootFlags {
  supervise?: boolean;
  restartGraceMs?: number;
  daemonTimeoutMs?: number;
}

/**
 * A round's device: the shared fixture's old images in `<world>/device`, the update applied, and
 * `vab boot` running on it, all through the CLI as a user runs them.
 */
export class DeviceRound {
  boot?: ChildHandle;

  private constructor(
    readonly world: World,
    readonly fixture: DeviceFixture,
  ) {}

  static async create(world: World): Promise<DeviceRound> {
    const round = new DeviceRound(world, await deviceFixture());
    await makeDevice(round.fixture, round.device);
    return round;
  }

  get device(): string {
    return this.world.path('device');
  }

  async apply(): Promise<void> {
    await vab(['apply', this.fixture.payload, '--device', this.device, '--key', this.fixture.publicKey], 300_000);
  }

  async startBoot(flags: BootFlags): Promise<ChildHandle> {
    const args = ['boot', '--device', this.device, '--mount', this.world.mount, '--run', this.world.run, '--log', this.world.path('boot.log')];
    if (flags.supervise) args.push('--supervise');
    args.push('--restart-grace-ms', String(flags.restartGraceMs ?? 0), '--daemon-timeout-ms', String(flags.daemonTimeoutMs ?? 4000));
    // Its own process group: whatever happens to the round, its kernel and daemons go with it.
    const boot = spawnVab(args, 'vab boot', { newProcessGroup: true });
    this.world.children.push(boot);
    this.world.groups.push(boot);
    this.boot = boot;
    await boot.waitForLine(/^vab boot: ready/, 60_000);
    return boot;
  }

  async daemonPid(): Promise<number> {
    return Number((await fs.readFile(path.join(this.world.run, 'snapuserd.pid'), 'utf8')).trim());
  }

  async state(): Promise<string> {
    return (JSON.parse((await vab(['status', '--device', this.device, '--json'])).stdout) as { state: string }).state;
  }

  /** `vab postinstall --json` started; `progress()` is the last overall fraction it reported. */
  startPostinstall(): { child: ChildHandle; progress: () => number } {
    const child = spawnVab(['postinstall', '--device', this.device, '--mount', this.world.mount, '--run', this.world.run, '--json', '--timeout-s', '120'], 'vab postinstall');
    this.world.children.push(child);
    const progress = (): number => {
      for (let i = child.lines.length - 1; i >= 0; i--) {
        if (!child.lines[i].startsWith('{')) continue;
        const overall = (JSON.parse(child.lines[i]) as { overall?: number }).overall;
        if (typeof overall === 'number') return overall;
      }
      return 0;
    };
    return { child, progress };
  }

  blockFile(partition: string): string {
    return path.join(this.world.mount, partition);
  }

  newImage(partition: string): string {
    return path.join(this.fixture.newDir, `${partition}.img`);
  }

  /** Every base image now holds exactly the new image (the merge is done). */
  async checkMerged(): Promise<void> {
    for (const p of DEVICE_PARTITIONS) {
      const size = (await fs.stat(this.newImage(p))).size;
      check((await sha256File(path.join(this.device, 'super', `${p}.img`), size)) === (await sha256File(this.newImage(p))), `super/${p}.img does not equal the new image after the merge`);
    }
  }
}
