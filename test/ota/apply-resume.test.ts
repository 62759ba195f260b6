import { promises as fs } from 'node:fs';
import path from 'node:path';
import { applyPayload } from '../../src/ota/apply/apply';
import { CowReader } from '../../src/cow/reader';
import { SnapshotReader } from '../../src/cow/snapshot-reader';
import { startVab, vab } from '../support/cli';
import { freshDevice, makeTestDevice, TestDevice } from './support/device';

jest.setTimeout(300_000);

class Killed extends Error {}

/**
 * A killed apply resumes from its last label. Each run here dies right after payload op k (the
 * process is gone: what it wrote stays, anything it would do next never happens), for every k of
 * a small update; running apply again must give the update one clean apply gives.
 */
describe('vab apply resumes after being killed at any op', () => {
  let d: TestDevice;
  beforeAll(async () => {
    d = await makeTestDevice('vab-apply-resume-', 8);
  });
  afterAll(async () => {
    await fs.rm(d.dir, { recursive: true, force: true });
  });

  async function views(device: string): Promise<Record<string, Buffer>> {
    const out: Record<string, Buffer> = {};
    for (const p of ['system', 'vendor']) {
      const size = (await fs.stat(path.join(d.new, `${p}.img`))).size;
      const reader = await SnapshotReader.open(path.join(device, 'data/ota', `${p}.cow`), path.join(device, 'super', `${p}.img`), { deviceBytes: size });
      const data = Buffer.alloc(size);
      await reader.readBlocks(0, size / 4096, data);
      await reader.close();
      out[p] = data;
    }
    return out;
  }

  it('at every op of the update', async () => {
    let total = 0;
    const clean = await freshDevice(d, 'clean');
    await applyPayload({ payload: d.payload, device: clean, onProgress: (e) => (total = e.totalOps) });
    const expected = await views(clean);
    expect(total).toBeGreaterThan(20);
    for (let k = 1; k < total; k++) {
      const device = await freshDevice(d, 'killed');
      await expect(
        applyPayload({
          payload: d.payload,
          device,
          onProgress: (e) => {
            if (e.ops === k) throw new Killed(`killed after op ${k}`);
          },
        }),
      ).rejects.toThrow(Killed);
      const resumed = await applyPayload({ payload: d.payload, device });
      expect([k, resumed.resumed, resumed.state]).toEqual([k, true, 'unverified']);
      const got = await views(device);
      for (const p of ['system', 'vendor']) expect([k, p, got[p].equals(expected[p])]).toEqual([k, p, true]);
      // The resumed COW is one Android's reader parses: every op once, the merge order safe.
      for (const p of ['system', 'vendor']) {
        const cow = await CowReader.open(path.join(device, 'data/ota', `${p}.cow`));
        expect([k, p, cow.verifyMergeOrder()]).toEqual([k, p, undefined]);
        await cow.close();
      }
    }
  });

  it('a real process SIGKILLed part way: running vab apply again finishes the same update', async () => {
    const device = await freshDevice(d, 'sigkill');
    const first = startVab(['apply', d.payload, '--device', device, '--json']);
    await first.waitForLine((l) => l.includes('"event":"progress"') && (JSON.parse(l) as { ops: number }).ops >= 12, 60_000);
    first.signal('SIGKILL');
    await first.exited;
    const again = await vab(['apply', d.payload, '--device', device]);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/resumed at op \d+/);
    const clean = await freshDevice(d, 'clean2');
    await applyPayload({ payload: d.payload, device: clean });
    const [a, b] = [await views(device), await views(clean)];
    for (const p of ['system', 'vendor']) expect(a[p].equals(b[p])).toBe(true);
  });
});
