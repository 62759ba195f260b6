import { promises as fs } from 'node:fs';
import path from 'node:path';
import { createCow } from '../../../src/cow/create';
import { ChildHandle, start } from '../../../src/util/exec';
import { Runtime, vabChild } from '../../kernel/support/runtime';

/** A partition served by `vab snapuserd --no-socket` from base + COW: the paths the daemon takes. */
export interface ServedSnapshot {
  name: string;
  base: string;
  cow: string;
  block: string;
}

/** Builds a zstd COW taking `base` to `target` (same size) and creates the target in the kernel. */
export async function prepareSnapshot(rt: Runtime, name: string, base: string, target: string): Promise<ServedSnapshot> {
  const cow = path.join(rt.dir, `${name}.cow`);
  await createCow(base, target, cow, { compression: 'zstd', compressionFactor: 65536, xor: true });
  const size = (await fs.stat(base)).size;
  const created = await rt.dmctl(['create', name, '--size', String(size)]);
  if (created.code !== 0) throw new Error(`dmctl create ${name} failed: ${created.stderr}`);
  return { name, base, cow, block: path.join(rt.mount, name) };
}

/** Starts `vab snapuserd --no-socket` for the snapshots and waits for its ready line. */
export async function startSnapuserd(rt: Runtime, snapshots: ServedSnapshot[], channels = 4): Promise<ChildHandle> {
  const specs = snapshots.map((s) => `${s.name},${s.cow},${s.base},${s.base}`);
  const daemon = vabChild(['snapuserd', '--run', rt.run, '--channels', String(channels), '--log', path.join(rt.dir, 'snapuserd.log'), '--no-socket', ...specs]);
  rt.daemons.push(daemon);
  await daemon.waitForLine(/^vab snapuserd: ready/);
  return daemon;
}

/**
 * A sequential O_DIRECT reader of `blocks` blocks from `first`, in two halves: it prints "half" and
 * waits for a line on stdin before the second half, so the test can act at a known point.
 */
export function pausedReader(file: string, out: string, blockSize: number, first: number, blocks: number): ChildHandle {
  const half = blocks / 2;
  const dd = (skip: number, seek: number): string =>
    `dd if=${file} of=${out} bs=${blockSize} skip=${skip} seek=${seek} count=${half} iflag=direct conv=notrunc status=none`;
  const script = `${dd(first, 0)} && echo half && read go && ${dd(first + half, half)} && echo done`;
  return start('sh', ['-c', script], { stdin: 'pipe', label: 'paused reader' });
}
