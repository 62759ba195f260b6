import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runChecked } from '../../../src/util/exec';
import { REPO, vab } from '../../support/cli';

/** scripts/make-device.sh's two versions of a small device, and a signed incremental payload between them. */
export interface TestDevice {
  dir: string;
  old: string;
  new: string;
  payload: string;
  privateKey: string;
  publicKey: string;
}

export async function makeTestDevice(prefix: string, dataFiles = 24): Promise<TestDevice> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), prefix));
  await runChecked('bash', [path.join(REPO, 'scripts/make-device.sh'), dir, String(dataFiles)], { timeoutMs: 120_000 });
  const d: TestDevice = { dir, old: path.join(dir, 'old'), new: path.join(dir, 'new'), payload: path.join(dir, 'payload.bin'), privateKey: path.join(dir, 'keys/ota.pem'), publicKey: path.join(dir, 'keys/ota.pub') };
  const generated = await vab(['payload', 'generate', '--source', d.old, '--target', d.new, '-o', d.payload, '--key', d.privateKey, '--postinstall', 'system:bin/postinst:erofs'], { timeoutMs: 300_000 });
  if (generated.code !== 0) throw new Error(`payload generate failed: ${generated.stderr}`);
  return d;
}

/** A fresh device directory holding the old images. */
export async function freshDevice(d: TestDevice, name: string): Promise<string> {
  const device = path.join(d.dir, name);
  await fs.rm(device, { recursive: true, force: true });
  await fs.mkdir(path.join(device, 'super'), { recursive: true });
  for (const p of ['system', 'vendor']) await fs.copyFile(path.join(d.old, `${p}.img`), path.join(device, 'super', `${p}.img`));
  return device;
}

/** Every file under `dir` with its bytes: a device's exact state, to show a refused command changed nothing. */
export async function snapshotTree(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (at: string): Promise<void> => {
    for (const entry of await fs.readdir(at, { withFileTypes: true })) {
      const full = path.join(at, entry.name);
      if (entry.isDirectory()) await walk(full);
      else out[path.relative(dir, full)] = (await fs.readFile(full)).toString('base64');
    }
  };
  await walk(dir);
  return out;
}
