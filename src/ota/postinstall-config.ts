// PENDING: replaced by vab apply's record of the post-install fields.
import type { DeviceLayout } from '../snapshot/layout';
export interface PostinstallConfigEntry { name: string; path?: string; filesystemType?: string; optional?: boolean }
export async function readPostinstallConfig(_layout: DeviceLayout): Promise<PostinstallConfigEntry[]> { return []; }
