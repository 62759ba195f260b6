import { Bytes } from './bytes';

/** Raw FUSE requests as the kernel would write them, built independently of the codecs under test. */
let nextUnique = 2n;

export function request(opcode: number, nodeid: number, body: Buffer = Buffer.alloc(0), unique = (nextUnique += 2n)): Buffer {
  const header = new Bytes().u32(40 + body.length).u32(opcode).u64(unique).u64(nodeid).u32(0).u32(0).u32(1234).u16(0).u16(0).build();
  return Buffer.concat([header, body]);
}

export const ioBody = (fh: number, offset: number, size: number) => new Bytes().u64(fh).u64(offset).u32(size).u32(0).u64(0).u32(0).u32(0).build();
export const openBody = (flags: number) => new Bytes().u32(flags).u32(0).build();
export const nameBody = (name: string) => new Bytes().text(name).u8(0).build();
export const fsyncBody = (fh: number) => new Bytes().u64(fh).u32(0).u32(0).build();
export const fallocateBody = (fh: number, offset: number, length: number, mode: number) =>
  new Bytes().u64(fh).u64(offset).u64(length).u32(mode).u32(0).build();

export function setattrBody(valid: number, size: bigint, mode = 0): Buffer {
  return new Bytes().u32(valid).u32(0).u64(0).u64(size).u64(0).u64(0).u64(0).u64(0).u32(0).u32(0).u32(0).u32(mode).u32(0).u32(0).u32(0).u32(0).build();
}

export function initBody(minor: number, flags: number, full: boolean, major = 7): Buffer {
  const b = new Bytes().u32(major).u32(minor).u32(131072).u32(flags);
  if (full) b.u32(0).zeros(44);
  return b.build();
}
