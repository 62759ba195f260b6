import { FuseDecodeError, need } from './layout';
import { attr, Attr, attrOutHead, batchForgetHead, direntHead, entryOutHead, forgetOne, initIn, InitIn, initOut, InitOut } from './structs';

/** Structs that embed another struct, carry a variable part, or change size with the protocol minor. */

export interface EntryOut {
  nodeid: number;
  generation: number;
  entryValid: number;
  attrValid: number;
  entryValidNsec: number;
  attrValidNsec: number;
  attr: Attr;
}

export const ENTRY_OUT_SIZE = entryOutHead.size + attr.size; // 128
export const ATTR_OUT_SIZE = attrOutHead.size + attr.size; // 104

export function encodeEntryOut(value: EntryOut, target = Buffer.alloc(ENTRY_OUT_SIZE), offset = 0): Buffer {
  entryOutHead.encode(value, target, offset);
  attr.encode(value.attr, target, offset + entryOutHead.size);
  return target;
}

export function decodeEntryOut(source: Buffer, offset = 0): EntryOut {
  need(source, offset, ENTRY_OUT_SIZE, 'fuse_entry_out');
  return { ...entryOutHead.decode(source, offset), attr: attr.decode(source, offset + entryOutHead.size) };
}

export interface AttrOut {
  attrValid: number;
  attrValidNsec: number;
  attr: Attr;
}

export function encodeAttrOut(value: AttrOut, target = Buffer.alloc(ATTR_OUT_SIZE), offset = 0): Buffer {
  attrOutHead.encode(value, target, offset);
  attr.encode(value.attr, target, offset + attrOutHead.size);
  return target;
}

export function decodeAttrOut(source: Buffer, offset = 0): AttrOut {
  need(source, offset, ATTR_OUT_SIZE, 'fuse_attr_out');
  return { ...attrOutHead.decode(source, offset), attr: attr.decode(source, offset + attrOutHead.size) };
}

/** One directory entry; `entry` is present only in READDIRPLUS records. */
export interface Dirent {
  ino: number;
  /** Cookie the kernel sends back as the READDIR offset to continue after this entry. */
  off: number;
  type: number;
  name: string;
  entry?: EntryOut;
}

const align8 = (n: number): number => (n + 7) & ~7;

export function direntSize(nameBytes: number, plus: boolean): number {
  return align8((plus ? ENTRY_OUT_SIZE : 0) + direntHead.size + nameBytes);
}

/**
 * Packs whole entries until the next would not fit in `maxBytes` (the kernel's buffer): a partial
 * entry would be a protocol error, and the kernel asks again from the last cookie it got.
 */
export function encodeDirents(entries: readonly Dirent[], maxBytes: number, plus: boolean): Buffer {
  const names = entries.map((e) => Buffer.from(e.name, 'utf8'));
  let total = 0;
  let count = 0;
  for (const name of names) {
    const size = direntSize(name.length, plus);
    if (total + size > maxBytes) break;
    total += size;
    count++;
  }
  const out = Buffer.alloc(total);
  let at = 0;
  for (let i = 0; i < count; i++) {
    const e = entries[i];
    const name = names[i];
    if (plus) {
      encodeEntryOut(e.entry ?? emptyEntry(), out, at);
    }
    const head = at + (plus ? ENTRY_OUT_SIZE : 0);
    direntHead.encode({ ino: e.ino, off: e.off, namelen: name.length, type: e.type }, out, head);
    name.copy(out, head + direntHead.size);
    at += direntSize(name.length, plus);
  }
  return out;
}

export function decodeDirents(source: Buffer, plus: boolean): Dirent[] {
  const out: Dirent[] = [];
  let at = 0;
  while (at < source.length) {
    const entry = plus ? decodeEntryOut(source, at) : undefined;
    const head = at + (plus ? ENTRY_OUT_SIZE : 0);
    const d = direntHead.decode(source, head);
    need(source, head + direntHead.size, d.namelen, 'fuse_dirent name');
    const name = source.toString('utf8', head + direntHead.size, head + direntHead.size + d.namelen);
    out.push({ ino: d.ino, off: d.off, type: d.type, name, ...(entry ? { entry } : {}) });
    at += direntSize(d.namelen, plus);
  }
  return out;
}

/** READDIRPLUS entries the server gives no attributes for ("." and ".."): nodeid 0 tells the kernel to skip them. */
function emptyEntry(): EntryOut {
  const zeroAttr = attr.decode(Buffer.alloc(attr.size));
  return { nodeid: 0, generation: 0, entryValid: 0, attrValid: 0, entryValidNsec: 0, attrValidNsec: 0, attr: zeroAttr };
}

export interface ForgetOne {
  nodeid: bigint;
  nlookup: bigint;
}

export function encodeBatchForget(items: readonly ForgetOne[]): Buffer {
  const out = Buffer.alloc(batchForgetHead.size + items.length * forgetOne.size);
  batchForgetHead.encode({ count: items.length }, out, 0);
  items.forEach((item, i) => forgetOne.encode(item, out, batchForgetHead.size + i * forgetOne.size));
  return out;
}

export function decodeBatchForget(source: Buffer): ForgetOne[] {
  const { count } = batchForgetHead.decode(source);
  need(source, batchForgetHead.size, count * forgetOne.size, `fuse_batch_forget_in with ${count} entries`);
  const items: ForgetOne[] = [];
  for (let i = 0; i < count; i++) items.push(forgetOne.decode(source, batchForgetHead.size + i * forgetOne.size));
  return items;
}

/** Kernels before 7.36 send only major, minor, max_readahead and flags. */
export const INIT_IN_COMPAT_SIZE = 16;

export function decodeInitIn(source: Buffer): InitIn {
  if (source.length >= initIn.size) return initIn.decode(source);
  need(source, 0, 8, 'fuse_init_in');
  const padded = Buffer.alloc(initIn.size);
  source.copy(padded, 0, 0, Math.min(source.length, INIT_IN_COMPAT_SIZE));
  const minor = source.readUInt32LE(4);
  // Only a kernel older than 7.6 may stop after the version; its max_readahead and flags read as 0.
  if (minor >= 6) need(source, 0, INIT_IN_COMPAT_SIZE, `fuse_init_in of protocol 7.${minor}`);
  return initIn.decode(padded);
}

export function encodeInitIn(value: InitIn, compat = false): Buffer {
  const full = initIn.encode(value);
  return compat ? full.subarray(0, INIT_IN_COMPAT_SIZE) : full;
}

/** The INIT reply is as long as the negotiated minor defines it (FUSE_COMPAT_INIT_OUT_SIZE and _22_). */
export function initOutSize(minor: number): number {
  if (minor < 5) return 8;
  if (minor < 23) return 24;
  return initOut.size;
}

export function encodeInitOut(value: InitOut): Buffer {
  return initOut.encode(value).subarray(0, initOutSize(value.minor));
}

export function decodeInitOut(source: Buffer): InitOut {
  need(source, 0, 8, 'fuse_init_out');
  const minor = source.readUInt32LE(4);
  const size = initOutSize(minor);
  need(source, 0, size, `fuse_init_out of protocol 7.${minor}`);
  const padded = Buffer.alloc(initOut.size);
  source.copy(padded, 0, 0, size);
  return initOut.decode(padded);
}

/** A NUL-terminated name (LOOKUP, GETXATTR); a name without its NUL is malformed. */
export function decodeName(source: Buffer, offset = 0): string {
  const end = source.indexOf(0, offset);
  if (end < 0) throw new FuseDecodeError('name is not NUL-terminated', offset, true);
  return source.toString('utf8', offset, end);
}

export function encodeName(name: string): Buffer {
  return Buffer.concat([Buffer.from(name, 'utf8'), Buffer.alloc(1)]);
}
