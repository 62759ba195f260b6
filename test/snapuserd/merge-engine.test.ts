import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CowReader } from '../../src/cow/reader';
import { ReadAheadState } from '../../src/cow/format';
import { vab } from '../support/cli';
import { BS, FaultPlan, mergeCase, serveForMerge, waitForStatus } from './support/merge-fixture';

jest.setTimeout(120_000);

let dir: string;
beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vab-merge-engine-'));
});
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

describe('snapuserd merge engine (in-memory dm-user channels, real files)', () => {
  it('merges in place while every read during the merge sees the new image', async () => {
    const c = await mergeCase(dir, 1600);
    const plan = new FaultPlan();
    plan.delayMs = 2;
    const { registry, read, sectors } = await serveForMerge(dir, c, plan);
    expect(registry.mergeStatus('system')).toBe('snapshot');
    await registry.initiateMerge('system');
    let reads = 0;
    let seed = 7;
    while (registry.mergeStatus('system') === 'snapshot-merge') {
      seed = (seed * 1103515245 + 12345) >>> 0;
      const block = seed % (c.newImage.length / BS - 8);
      const data = await read((block * BS) / 512, 8 * BS);
      expect(data.equals(c.newImage.subarray(block * BS, (block + 8) * BS))).toBe(true);
      reads++;
    }
    expect(reads).toBeGreaterThan(20);
    expect(registry.mergeStatus('system')).toBe('snapshot-merge-complete');
    expect(registry.mergePercent()).toBe(100);
    expect((await fs.readFile(c.base)).equals(c.newImage)).toBe(true);
    expect((await read(0, sectors * 512)).equals(c.newImage)).toBe(true);
    await registry.stopAll();
  });

  it('dies at every write and fsync of a merge; each restart reads the new image, resumes and finishes', async () => {
    const c = await mergeCase(dir, 700);
    const pristine = { base: await fs.readFile(c.base), cow: await fs.readFile(c.cow) };
    let failAt = 1;
    for (;; failAt++) {
      await fs.writeFile(c.base, pristine.base);
      await fs.writeFile(c.cow, pristine.cow);
      const plan = new FaultPlan();
      plan.failAt = failAt;
      const first = await serveForMerge(dir, c, plan);
      await first.registry.initiateMerge('system');
      await waitForStatus(first.registry, 'system', ['snapshot-merge-failed', 'snapshot-merge-complete']);
      const finished = first.registry.mergeStatus('system') === 'snapshot-merge-complete';
      // What a reader sees after the failure, before any restart: still the new image.
      expect([failAt, (await first.read(0, first.sectors * 512)).equals(c.newImage)]).toEqual([failAt, true]);
      await first.registry.stopAll();
      if (finished) break;
      const again = await serveForMerge(dir, c);
      // Android's rule: not initiated yet, so `snapshot`, unless the header already says complete.
      const reader = await CowReader.open(c.cow);
      const expected = reader.header.numMergeOps === reader.index.order.length ? 'snapshot-merge-complete' : 'snapshot';
      await reader.close();
      expect([failAt, again.registry.mergeStatus('system')]).toEqual([failAt, expected]);
      expect([failAt, (await again.read(0, again.sectors * 512)).equals(c.newImage)]).toEqual([failAt, true]);
      await again.registry.initiateMerge('system');
      await waitForStatus(again.registry, 'system', 'snapshot-merge-complete');
      expect([failAt, (await fs.readFile(c.base)).equals(c.newImage)]).toEqual([failAt, true]);
      await again.registry.stopAll();
    }
    expect(failAt).toBeGreaterThan(10);
  });

  it('a failed write makes the handler snapshot-merge-failed; reads stay right; a retry resumes', async () => {
    const c = await mergeCase(dir, 1200);
    const plan = new FaultPlan();
    plan.failAt = 9;
    plan.error = () => Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' });
    const { registry, read, sectors } = await serveForMerge(dir, c, plan);
    await registry.initiateMerge('system');
    await waitForStatus(registry, 'system', 'snapshot-merge-failed');
    expect((await read(0, sectors * 512)).equals(c.newImage)).toBe(true);
    plan.failAt = Infinity;
    await registry.initiateMerge('system');
    await waitForStatus(registry, 'system', 'snapshot-merge-complete');
    expect((await fs.readFile(c.base)).equals(c.newImage)).toBe(true);
    await registry.stopAll();
  });

  it('pause stops at a safe point and resume wakes it (Android forgets the wake-up)', async () => {
    const c = await mergeCase(dir, 1600);
    const plan = new FaultPlan();
    plan.delayMs = 1;
    const { registry } = await serveForMerge(dir, c, plan);
    await registry.initiateMerge('system');
    while (plan.count < 3) await new Promise((resolve) => setTimeout(resolve, 2));
    registry.pauseMerge();
    await new Promise((resolve) => setTimeout(resolve, 300));
    const frozen = plan.count;
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(plan.count).toBe(frozen);
    expect(registry.mergeStatus('system')).toBe('snapshot-merge');
    expect(registry.mergePercent()).toBeLessThan(100);
    registry.resumeMerge();
    await waitForStatus(registry, 'system', 'snapshot-merge-complete');
    await registry.stopAll();
  });

  it('after a restart the handler reports snapshot until initiate_merge is sent again, then resumes where the header says', async () => {
    const c = await mergeCase(dir, 1600);
    const plan = new FaultPlan();
    plan.delayMs = 1;
    const first = await serveForMerge(dir, c, plan);
    await first.registry.initiateMerge('system');
    while (first.registry.mergePercent() === 0) await new Promise((resolve) => setTimeout(resolve, 2));
    await first.registry.stopAll();
    const reader = await CowReader.open(c.cow);
    const merged = reader.header.numMergeOps;
    await reader.close();
    expect(merged).toBeGreaterThan(0);
    const second = await serveForMerge(dir, c);
    expect(second.registry.mergeStatus('system')).toBe('snapshot');
    expect(second.registry.mergePercent()).toBeGreaterThan(0);
    await second.registry.initiateMerge('system');
    await waitForStatus(second.registry, 'system', 'snapshot-merge-complete');
    expect((await fs.readFile(c.base)).equals(c.newImage)).toBe(true);
    await second.registry.stopAll();
  });

  it('merges a COW without a scratch region through a scratch file beside it', async () => {
    const c = await mergeCase(dir, 600, { scratchSpace: false });
    const { registry } = await serveForMerge(dir, c);
    await registry.initiateMerge('system');
    await waitForStatus(registry, 'system', 'snapshot-merge-complete');
    expect((await fs.readFile(c.base)).equals(c.newImage)).toBe(true);
    expect((await fs.readdir(dir)).filter((f) => f.includes('scratch'))).toEqual([]);
    await registry.stopAll();
  });

  it('refuses initiate_merge for an unknown or unstarted handler', async () => {
    const c = await mergeCase(dir, 64);
    const { registry } = await serveForMerge(dir, c);
    await expect(registry.initiateMerge('nope')).rejects.toThrow(/no handler for nope/);
    await registry.stopAll();
  });

  it('leaves a half-merged COW whose header Android reads the same way: num_merge_ops at byte 26, read-ahead state after the header', async () => {
    const c = await mergeCase(dir, 1600);
    const plan = new FaultPlan();
    plan.delayMs = 1;
    const { registry } = await serveForMerge(dir, c, plan);
    await registry.initiateMerge('system');
    while (registry.mergePercent() === 0) await new Promise((resolve) => setTimeout(resolve, 2));
    await registry.stopAll();
    const bytes = await fs.readFile(c.cow);
    const reader = await CowReader.open(c.cow);
    await reader.close();
    const merged = Number(bytes.readBigUInt64LE(26));
    expect(merged).toBe(reader.header.numMergeOps);
    expect(merged).toBeGreaterThan(0);
    expect(merged).toBeLessThan(reader.index.order.length);
    expect([ReadAheadState.InProgress, ReadAheadState.Done]).toContain(bytes[reader.header.headerSize]);
    const inspected = await vab(['cow', 'inspect', c.cow, '--json']);
    expect(inspected.code).toBe(0);
    expect(JSON.stringify(JSON.parse(inspected.stdout))).toContain(`${merged}`);
  });
});
