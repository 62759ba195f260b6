import { defineStruct } from './layout';

/** The fixed-size structs of the FUSE protocol, in wire order (little-endian, no implicit padding). */

export const inHeader = defineStruct('fuse_in_header', [
  ['len', 'u32'],
  ['opcode', 'u32'],
  ['unique', 'big64'],
  ['nodeid', 'u64'],
  ['uid', 'u32'],
  ['gid', 'u32'],
  ['pid', 'u32'],
  ['totalExtlen', 'u16'],
  ['padding', 'pad16'],
] as const);
export type InHeader = ReturnType<typeof inHeader.decode>;

export const outHeader = defineStruct('fuse_out_header', [
  ['len', 'u32'],
  ['error', 'i32'],
  ['unique', 'big64'],
] as const);
export type OutHeader = ReturnType<typeof outHeader.decode>;

export const attr = defineStruct('fuse_attr', [
  ['ino', 'u64'],
  ['size', 'u64'],
  ['blocks', 'u64'],
  ['atime', 'u64'],
  ['mtime', 'u64'],
  ['ctime', 'u64'],
  ['atimensec', 'u32'],
  ['mtimensec', 'u32'],
  ['ctimensec', 'u32'],
  ['mode', 'u32'],
  ['nlink', 'u32'],
  ['uid', 'u32'],
  ['gid', 'u32'],
  ['rdev', 'u32'],
  ['blksize', 'u32'],
  ['flags', 'u32'],
] as const);
export type Attr = ReturnType<typeof attr.decode>;

/** fuse_entry_out without its trailing fuse_attr (see composite.ts). */
export const entryOutHead = defineStruct('fuse_entry_out', [
  ['nodeid', 'u64'],
  ['generation', 'u64'],
  ['entryValid', 'u64'],
  ['attrValid', 'u64'],
  ['entryValidNsec', 'u32'],
  ['attrValidNsec', 'u32'],
] as const);

/** fuse_attr_out without its trailing fuse_attr (see composite.ts). */
export const attrOutHead = defineStruct('fuse_attr_out', [
  ['attrValid', 'u64'],
  ['attrValidNsec', 'u32'],
  ['dummy', 'pad32'],
] as const);

export const getattrIn = defineStruct('fuse_getattr_in', [
  ['getattrFlags', 'u32'],
  ['dummy', 'pad32'],
  ['fh', 'u64'],
] as const);

export const setattrIn = defineStruct('fuse_setattr_in', [
  ['valid', 'u32'],
  ['padding', 'pad32'],
  ['fh', 'u64'],
  ['size', 'big64'],
  ['lockOwner', 'big64'],
  ['atime', 'big64'],
  ['mtime', 'big64'],
  ['ctime', 'big64'],
  ['atimensec', 'u32'],
  ['mtimensec', 'u32'],
  ['ctimensec', 'u32'],
  ['mode', 'u32'],
  ['unused4', 'pad32'],
  ['uid', 'u32'],
  ['gid', 'u32'],
  ['unused5', 'pad32'],
] as const);
export type SetattrIn = ReturnType<typeof setattrIn.decode>;

export const openIn = defineStruct('fuse_open_in', [
  ['flags', 'u32'],
  ['openFlags', 'u32'],
] as const);

export const openOut = defineStruct('fuse_open_out', [
  ['fh', 'u64'],
  ['openFlags', 'u32'],
  ['backingId', 'i32'],
] as const);

/** fuse_read_in and fuse_write_in share one layout; `ioFlags` is read_flags or write_flags. */
export const ioIn = defineStruct('fuse_read_in/fuse_write_in', [
  ['fh', 'u64'],
  ['offset', 'u64'],
  ['size', 'u32'],
  ['ioFlags', 'u32'],
  ['lockOwner', 'big64'],
  ['flags', 'u32'],
  ['padding', 'pad32'],
] as const);
export type IoIn = ReturnType<typeof ioIn.decode>;

export const writeOut = defineStruct('fuse_write_out', [
  ['size', 'u32'],
  ['padding', 'pad32'],
] as const);

export const releaseIn = defineStruct('fuse_release_in', [
  ['fh', 'u64'],
  ['flags', 'u32'],
  ['releaseFlags', 'u32'],
  ['lockOwner', 'big64'],
] as const);

export const flushIn = defineStruct('fuse_flush_in', [
  ['fh', 'u64'],
  ['unused', 'pad32'],
  ['padding', 'pad32'],
  ['lockOwner', 'big64'],
] as const);

export const fsyncIn = defineStruct('fuse_fsync_in', [
  ['fh', 'u64'],
  ['fsyncFlags', 'u32'],
  ['padding', 'pad32'],
] as const);

export const accessIn = defineStruct('fuse_access_in', [
  ['mask', 'u32'],
  ['padding', 'pad32'],
] as const);

export const interruptIn = defineStruct('fuse_interrupt_in', [['unique', 'big64']] as const);

export const forgetIn = defineStruct('fuse_forget_in', [['nlookup', 'big64']] as const);

export const batchForgetHead = defineStruct('fuse_batch_forget_in', [
  ['count', 'u32'],
  ['dummy', 'pad32'],
] as const);

export const forgetOne = defineStruct('fuse_forget_one', [
  ['nodeid', 'big64'],
  ['nlookup', 'big64'],
] as const);

export const fallocateIn = defineStruct('fuse_fallocate_in', [
  ['fh', 'u64'],
  ['offset', 'u64'],
  ['length', 'u64'],
  ['mode', 'u32'],
  ['padding', 'pad32'],
] as const);

export const statfsOut = defineStruct('fuse_kstatfs', [
  ['blocks', 'u64'],
  ['bfree', 'u64'],
  ['bavail', 'u64'],
  ['files', 'u64'],
  ['ffree', 'u64'],
  ['bsize', 'u32'],
  ['namelen', 'u32'],
  ['frsize', 'u32'],
  ['padding', 'pad32'],
  ['spare0', 'pad32'],
  ['spare1', 'pad32'],
  ['spare2', 'pad32'],
  ['spare3', 'pad32'],
  ['spare4', 'pad32'],
  ['spare5', 'pad32'],
] as const);
export type Statfs = ReturnType<typeof statfsOut.decode>;

/** The full (7.36+) fuse_init_in; older kernels send only the first 16 bytes (see composite.ts). */
export const initIn = defineStruct('fuse_init_in', [
  ['major', 'u32'],
  ['minor', 'u32'],
  ['maxReadahead', 'u32'],
  ['flags', 'u32'],
  ['flags2', 'u32'],
  ['unused0', 'pad32'],
  ['unused1', 'pad32'],
  ['unused2', 'pad32'],
  ['unused3', 'pad32'],
  ['unused4', 'pad32'],
  ['unused5', 'pad32'],
  ['unused6', 'pad32'],
  ['unused7', 'pad32'],
  ['unused8', 'pad32'],
  ['unused9', 'pad32'],
  ['unused10', 'pad32'],
] as const);
export type InitIn = ReturnType<typeof initIn.decode>;

export const initOut = defineStruct('fuse_init_out', [
  ['major', 'u32'],
  ['minor', 'u32'],
  ['maxReadahead', 'u32'],
  ['flags', 'u32'],
  ['maxBackground', 'u16'],
  ['congestionThreshold', 'u16'],
  ['maxWrite', 'u32'],
  ['timeGran', 'u32'],
  ['maxPages', 'u16'],
  ['mapAlignment', 'u16'],
  ['flags2', 'u32'],
  ['maxStackDepth', 'u32'],
  ['requestTimeout', 'u16'],
  ['unused0', 'pad16'],
  ['unused1', 'pad64'],
  ['unused2', 'pad64'],
  ['unused3', 'pad32'],
] as const);
export type InitOut = ReturnType<typeof initOut.decode>;

/** The fixed head of a fuse_dirent; the name follows (see composite.ts). */
export const direntHead = defineStruct('fuse_dirent', [
  ['ino', 'u64'],
  ['off', 'u64'],
  ['namelen', 'u32'],
  ['type', 'u32'],
] as const);
