/** dm-user wire constants (Android's uapi `linux/dm-user.h`); values are protocol facts. */

/** Size of the message header: five little-endian u64 fields, no padding. */
export const DM_USER_HEADER_SIZE = 40;

/** Request types the kernel writes into `type`. */
export enum DmUserRequest {
  Read = 0,
  Write = 1,
  Flush = 2,
  Discard = 3,
  SecureErase = 4,
  WriteSame = 5,
  WriteZeroes = 6,
  ZoneOpen = 7,
  ZoneClose = 8,
  ZoneFinish = 9,
  ZoneAppend = 10,
  ZoneReset = 11,
  ZoneResetAll = 12,
}

/** Response codes the daemon writes into `type`; anything but Success fails the IO with EIO. */
export enum DmUserResponse {
  Success = 0,
  Error = 1,
  Unsupported = 2,
}

/** Request flags (translated bio flags). */
export const DmUserFlag = {
  FailfastDev: 0x00001,
  FailfastTransport: 0x00002,
  FailfastDriver: 0x00004,
  Sync: 0x00008,
  Meta: 0x00010,
  Prio: 0x00020,
  NoMerge: 0x00040,
  Idle: 0x00080,
  Integrity: 0x00100,
  Fua: 0x00200,
  Preflush: 0x00400,
  Rahead: 0x00800,
  Background: 0x01000,
  NoWait: 0x02000,
  CgroupPunt: 0x04000,
  NoUnmap: 0x08000,
  Hipri: 0x10000,
  Drv: 0x20000,
  Swap: 0x40000,
} as const;

/** Sector size used by `sector` (block layer units). */
export const SECTOR_SIZE = 512;

/** Default wait for a daemon on a target that never had one (the module parameter's default). */
export const DEFAULT_DAEMON_TIMEOUT_MS = 4000;
