import { promises as fs } from 'node:fs';
import path from 'node:path';
import { DeviceLayout, emptySnapshotStatus, encodeSnapshotStatus, SnapshotStore, UpdateState } from '../../src/snapshot';
import { tempDevice } from './support/device';

let dir: string;
let layout: DeviceLayout;
let store: SnapshotStore;

beforeEach(async () => {
  dir = await tempDevice();
  layout = new DeviceLayout(dir);
  store = new SnapshotStore(layout);
  await fs.mkdir(layout.snapshotsDir, { recursive: true });
});
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

describe('device layout', () => {
  it('places every file where ARCHITECTURE.md says', () => {
    expect(path.relative(dir, layout.image('system'))).toBe('super/system.img');
    expect(path.relative(dir, layout.cow('system'))).toBe('data/ota/system.cow');
    expect(path.relative(dir, layout.stateFile)).toBe('metadata/ota/state');
    expect(path.relative(dir, layout.snapshotStatus('system'))).toBe('metadata/ota/snapshots/system');
    expect(path.relative(dir, layout.bootIndicator)).toBe('metadata/ota/snapshot-boot');
    expect(path.relative(dir, layout.rollbackIndicator)).toBe('metadata/ota/rollback-indicator');
  });

  it('refuses names that would leave their directory', () => {
    for (const name of ['..', '.', '../x', 'a/b', '/abs', 'nul\0x', '', '.hidden', 'x'.repeat(37), 'sp ace']) {
      for (const where of [layout.image.bind(layout), layout.cow.bind(layout), layout.snapshotStatus.bind(layout)]) {
        expect(() => where(name)).toThrow(expect.objectContaining({ code: 'EINVAL_INPUT' }));
      }
    }
    expect(layout.cow('vendor_dlkm-1.x')).toBe(path.join(dir, 'data/ota/vendor_dlkm-1.x.cow'));
  });
});

describe('status files read back', () => {
  it('a status whose name differs from its file name is corrupt', async () => {
    await fs.writeFile(layout.snapshotStatus('system'), await encodeSnapshotStatus(emptySnapshotStatus('vendor')));
    await expect(store.readSnapshotStatus('system')).rejects.toMatchObject({
      code: 'ECORRUPT',
      message: expect.stringMatching(/snapshots\/system: status names partition "vendor", but its file is for system/),
    });
  });

  it('garbage is ECORRUPT naming the file; a missing status is ENOTFOUND', async () => {
    await fs.writeFile(layout.snapshotStatus('system'), Buffer.from([0x0a, 0x20, 0x41]));
    await expect(store.readSnapshotStatus('system')).rejects.toMatchObject({ code: 'ECORRUPT', file: layout.snapshotStatus('system') });
    await expect(store.readSnapshotStatus('vendor')).rejects.toMatchObject({ code: 'ENOTFOUND' });
  });

  it('a file in snapshots/ that is no partition name is corrupt; hidden temporaries are skipped', async () => {
    await fs.writeFile(path.join(layout.snapshotsDir, '.system.tmp-1-2'), 'half');
    await fs.writeFile(layout.snapshotStatus('system'), await encodeSnapshotStatus(emptySnapshotStatus('system')));
    expect(await store.listSnapshots()).toEqual(['system']);
    await fs.writeFile(path.join(layout.snapshotsDir, 'bad name'), '');
    await expect(store.listSnapshots()).rejects.toMatchObject({ code: 'ECORRUPT', message: expect.stringContaining('"bad name"') });
  });

  it('reads the legacy text state file, and a missing one as None', async () => {
    expect((await store.readUpdateStatus()).state).toBe(UpdateState.None);
    await fs.writeFile(layout.stateFile, 'merge-needs-reboot');
    expect((await store.readUpdateStatus()).state).toBe(UpdateState.MergeNeedsReboot);
    await fs.writeFile(layout.stateFile, 'nonsense!');
    await expect(store.readUpdateStatus()).rejects.toMatchObject({ code: 'ECORRUPT', file: layout.stateFile });
  });
});
