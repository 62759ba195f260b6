import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runChecked } from '../../util/exec';
import { PACKAGE_ROOT } from '../../util/package-root';
import { vab } from '../vab-processes';


export const DEVICE_PARTITIONS = ['system', 'vendor'] as const;

/**
 * The two-version device of scripts/make-device.sh and its signed incremental payload, made once
 * per run and shared by the rounds (each round copies the old images into a device of its own).
 */
export interface DeviceFixture {
  dir: string;
  oldDir: string;
  newDir: string;
  payload: string;
  publicKey: string;
}

let shared: Promise<DeviceFixture> | undefined;

export function deviceFixture(): Promise<DeviceFixture> {
  shared ??= makeFixture();
  return shared;
}

export async function disposeDeviceFixture(): Promise<void> {
  const made = shared;
  shared = undefined;
  if (made) await fs.rm((await made).dir, { recursive: true, force: true }).catch(() => undefined);
}

async function makeFixture(): Promise<DeviceFixture> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vab-crashtest-device-'));
  await runChecked('bash', [path.join(PACKAGE_ROOT, 'scripts/make-device.sh'), dir, '96'], { timeoutMs: 120_000 });
  const f: DeviceFixture = { dir, oldDir: path.join(dir, 'old'), newDir: path.join(dir, 'new'), payload: path.join(dir, 'payload.bin'), publicKey: path.join(dir, 'keys/ota.pub') };
  await vab(['payload', 'generate', '--source', f.oldDir, '--target', f.newDir, '-o', f.payload, '--key', path.join(dir, 'keys/ota.pem'), '--postinstall', 'system:bin/postinst:erofs'], 300_000);
  return f;
}

/** A fresh device holding the old images. */
export async function makeDevice(fixture: DeviceFixture, device: string): Promise<void> {
  await fs.mkdir(path.join(device, 'super'), { recursive: true });
  for (const p of DEVICE_PARTITIONS) await fs.copyFile(path.join(fixture.oldDir, `${p}.img`), path.join(device, 'super', `${p}.img`));
}

