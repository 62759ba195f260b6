import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { forceUnmountUnder } from '../fuse';
import { VabError } from '../util/errors';
import { PACKAGE_ROOT } from '../util/package-root';
import { ChildHandle, runChecked } from '../util/exec';
import { mountReadOnly, unmountReadOnly } from './mount-readonly';
import { SnapuserdClient } from '../snapuserd/control/client';
import { spawnVab, vab } from './vab-processes';
import { sha256File } from '../util/file-hash';


/**
 * `npm start`: the whole update lifecycle on a small device made on the spot, narrated on stdout.
 * Every step is the `vab` command a user would type, run as a child process.
 */
export interface LifecycleDemoOptions {
  workDir?: string;
  print?: (line: string) => void;
}

const PARTITIONS = ['system', 'vendor'];

export async function runLifecycleDemo(options: LifecycleDemoOptions = {}): Promise<void> {
  const print = options.print ?? ((line: string) => process.stdout.write(`${line}\n`));
  const work = options.workDir ?? (await fsp.mkdtemp(path.join(os.tmpdir(), 'vab-lifecycle-')));
  const d = {
    images: path.join(work, 'images'),
    device: path.join(work, 'device'),
    mount: path.join(work, 'blocks'),
    run: path.join(work, 'run'),
    payload: path.join(work, 'payload.bin'),
    fs: path.join(work, 'fs'),
  };
  const children: ChildHandle[] = [];
  const cmd = async (args: string[], timeoutMs = 120_000): Promise<string> => (await vab(args, timeoutMs)).stdout.trimEnd();
  const status = async (): Promise<string> => JSON.parse(await cmd(['status', '--device', d.device, '--json'])).state as string;
  try {
    print(`work directory: ${work}`);
    print('\n== 1. two versions of a device: system (erofs, with a program and a post-install script), vendor (ext4, grows)');
    await runChecked('bash', [path.join(PACKAGE_ROOT, 'scripts/make-device.sh'), d.images, '128']);
    await fsp.mkdir(path.join(d.device, 'super'), { recursive: true });
    for (const p of PARTITIONS) await fsp.copyFile(path.join(d.images, 'old', `${p}.img`), path.join(d.device, 'super', `${p}.img`));
    print(`device ${d.device}: super/system.img, super/vendor.img hold version 1.0`);

    print('\n== 2. a signed incremental payload (vab payload generate)');
    print(await cmd(['payload', 'generate', '--source', path.join(d.images, 'old'), '--target', path.join(d.images, 'new'), '-o', d.payload, '--key', path.join(d.images, 'keys/ota.pem'), '--postinstall', 'system:bin/postinst:erofs']));

    print('\n== 3. vab apply: the payload goes into COW snapshots; the running images are not touched');
    print(await cmd(['apply', d.payload, '--device', d.device, '--key', path.join(d.images, 'keys/ota.pub')]));
    print(`update state: ${await status()}`);

    print('\n== 4. vab boot: the updated partitions as block files, served by snapuserd from base + COW');
    const boot = spawnVab(['boot', '--device', d.device, '--mount', d.mount, '--run', d.run, '--supervise', '--daemon-timeout-ms', '4000', '--log', path.join(work, 'boot.log')], 'vab boot');
    children.push(boot);
    await boot.waitForLine(/^vab boot: ready/, 60_000);
    for (const p of PARTITIONS) {
      const same = (await sha256File(path.join(d.mount, p))) === (await sha256File(path.join(d.images, 'new', `${p}.img`)));
      const untouched = (await sha256File(path.join(d.device, 'super', `${p}.img`), (await fsp.stat(path.join(d.images, 'old', `${p}.img`))).size)) === (await sha256File(path.join(d.images, 'old', `${p}.img`)));
      if (!same || !untouched) throw new VabError('EIO', `${p}: block file equals new image: ${same}; base untouched: ${untouched}`);
      print(`${d.mount}/${p} is byte-identical to the new ${p}.img; super/${p}.img still holds 1.0`);
    }
    await fsp.mkdir(d.fs, { recursive: true });
    const mounted = await mountReadOnly(path.join(d.mount, 'system'), d.fs, 'erofs');
    try {
      const hello = await runChecked(path.join(d.fs, 'bin/hello'), []);
      print(`mounted the system block file; bin/hello from it says: ${hello.stdout.trim()}`);
    } finally {
      await unmountReadOnly(mounted);
    }

    print('\n== 5. post-install, with the daemon killed in the middle (Android mode: IO fails fast)');
    const killed = await postinstallWith(d, children, async () => {
      const pid = Number((await fsp.readFile(path.join(d.run, 'snapuserd.pid'), 'utf8')).trim());
      process.kill(pid, 'SIGKILL');
      return `SIGKILLed snapuserd (pid ${pid})`;
    });
    if (killed.code === 0) throw new VabError('ESTATE', 'post-install succeeded although its daemon was killed');
    print(`${killed.action} at ${killed.percent}% of post-install: it failed ${killed.afterMs} ms later: ${killed.error}`);
    await boot.waitForLine(/restart \d+/, 30_000);
    print(`vab boot --supervise started a new snapuserd; the update is still ${await status()}, so post-install can run again`);

    print('\n== 5b. post-install again, with snapuserd restarted by handoff (Android\'s way: no IO fails)');
    const handed = await postinstallWith(d, children, async () => {
      boot.signal('SIGHUP');
      return 'handed snapuserd off to a new daemon (SIGHUP to vab boot)';
    });
    if (handed.code !== 0) throw new VabError('EIO', `post-install failed across a handoff: ${handed.error}`);
    print(`${handed.action} at ${handed.percent}% of post-install: it finished with no error`);

    print('\n== 6. vab merge, with the daemon killed mid-merge');
    // Watched over one connection, so the kill can land while the merge is under way.
    const watch = await SnapuserdClient.connect(path.join(d.run, 'snapuserd.sock'));
    const pid = Number((await fsp.readFile(path.join(d.run, 'snapuserd.pid'), 'utf8')).trim());
    print(await cmd(['merge', '--device', d.device, '--run', d.run]));
    let percent = 0;
    try {
      while (percent === 0) percent = Number.parseFloat(await watch.send('merge_percent'));
    } finally {
      watch.close();
    }
    process.kill(pid, 'SIGKILL');
    print(`SIGKILLed snapuserd at ${percent.toFixed(1)}% merged${percent >= 100 ? ' (the merge was already done)' : ''}`);
    await boot.waitForLine(/restart 2\b/, 30_000);
    print('vab boot --supervise started a new snapuserd, which resumes the merge from the COW header');
    print(await cmd(['merge', '--device', d.device, '--run', d.run, '--wait']));

    print('\n== 7. the result');
    for (const p of PARTITIONS) {
      const newImage = path.join(d.images, 'new', `${p}.img`);
      const base = path.join(d.device, 'super', `${p}.img`);
      const equal = (await sha256File(base, (await fsp.stat(newImage)).size)) === (await sha256File(newImage));
      if (!equal) throw new VabError('EIO', `super/${p}.img does not equal the new image after the merge`);
      print(`super/${p}.img now equals the new ${p}.img`);
    }
    print(`update state: ${await status()}`);
    await boot.stop('SIGTERM');
    print('\ndemo complete');
  } finally {
    for (const child of children.reverse()) await child.stop('SIGTERM');
    await forceUnmountUnder(work);
    if (!options.workDir) await fsp.rm(work, { recursive: true, force: true });
  }
}

/** Runs `vab postinstall --json`, does `act` once the program is a quarter through, and reports. */
async function postinstallWith(d: { device: string; mount: string; run: string }, children: ChildHandle[], act: () => Promise<string>): Promise<{ code: number | null; action: string; percent: number; afterMs: number; error: string }> {
  const child = spawnVab(['postinstall', '--device', d.device, '--mount', d.mount, '--run', d.run, '--json', '--log', path.join(d.run, 'postinstall.log')], 'vab postinstall');
  children.push(child);
  const line = await child.waitForLine((l) => l.startsWith('{') && (JSON.parse(l) as { overall?: number }).overall! >= 0.25, 60_000);
  const percent = Math.round((JSON.parse(line) as { overall: number }).overall * 100);
  const action = await act();
  const at = Date.now();
  const exit = await child.exited;
  const error = child.stderr.split('\n').filter((l) => l.startsWith('vab: ')).join(' ').replace(/^vab: /, '');
  return { code: exit.code, action, percent, afterMs: Date.now() - at, error };
}

