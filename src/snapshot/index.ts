/**
 * libsnapshot's side of an update, for a device directory:
 *
 *   DeviceLayout      where super/, data/ota/ and metadata/ota/ files live; checked partition names
 *   SnapshotManager   the update state machine (begin, create, finish, merge, process, cancel)
 *   SnapshotStore     snapshot.proto status files, read and written atomically
 *   readDeviceStatus  what `vab status` reports
 */
export * from './proto';
export { DeviceLayout, checkPartitionName } from './layout';
export { SnapshotStore } from './store';
export type { AtomicWriter } from './store';
export { MetadataLock, LockBusyError } from './lock';
export { SnapshotManager } from './manager';
export type { SnapshotManagerOptions, PartitionSnapshot } from './manager';
export { decideMergePhase } from './merge-state';
export type { DaemonControl, MergeResult } from './merge-state';
export { readDeviceStatus } from './status';
export type { DeviceStatusReport, SnapshotReport } from './status';
