import { VabError } from '../util/errors';

/**
 * The fixed header of payload.bin, major version 2 (all integers big-endian):
 *
 *   offset  size  field
 *        0     4  magic "CrAU"
 *        4     8  major version (2)
 *       12     8  manifest_size
 *       20     4  metadata_signature_size (0 when unsigned)
 *
 * The manifest follows at 24; "metadata" in update_engine's sense is header + manifest, and the
 * metadata signature (if any) follows it. The data area starts right after that signature.
 */
export const PAYLOAD_MAGIC = Buffer.from('CrAU', 'ascii');
export const PAYLOAD_MAJOR_VERSION = 2;
export const PAYLOAD_HEADER_SIZE = 24;
/**
 * Refuse manifests above this before allocating for them. Real manifests are at most a few MiB
 * (tens of thousands of operations); 64 MiB leaves room while keeping a hostile size harmless.
 */
export const MAX_MANIFEST_SIZE = 64 * 1024 * 1024;
/** A metadata signature is one Signatures message: a few hundred bytes per key. */
export const MAX_METADATA_SIGNATURE_SIZE = 1024 * 1024;

export interface PayloadHeader {
  major_version: number;
  manifest_size: number;
  metadata_signature_size: number;
}

export function encodeHeader(header: PayloadHeader): Buffer {
  const out = Buffer.alloc(PAYLOAD_HEADER_SIZE);
  PAYLOAD_MAGIC.copy(out, 0);
  out.writeBigUInt64BE(BigInt(header.major_version), 4);
  out.writeBigUInt64BE(BigInt(header.manifest_size), 12);
  out.writeUInt32BE(header.metadata_signature_size, 20);
  return out;
}

/** Decodes and validates the header; `file` and `fileSize` make the errors point somewhere. */
export function decodeHeader(bytes: Buffer, file?: string, fileSize?: number): PayloadHeader {
  if (bytes.length < PAYLOAD_HEADER_SIZE) {
    throw new VabError('ETRUNCATED', `payload header needs ${PAYLOAD_HEADER_SIZE} bytes, the file has ${bytes.length}`, { file, offset: 0 });
  }
  if (!bytes.subarray(0, 4).equals(PAYLOAD_MAGIC)) {
    throw new VabError('ECORRUPT', `not a payload: magic is ${bytes.subarray(0, 4).toString('hex')}, expected 43724155 ("CrAU")`, { file, offset: 0 });
  }
  const major = bytes.readBigUInt64BE(4);
  if (major !== BigInt(PAYLOAD_MAJOR_VERSION)) {
    throw new VabError('EUNSUPPORTED', `payload major version ${major} is not supported (only ${PAYLOAD_MAJOR_VERSION})`, { file, offset: 4 });
  }
  const manifestSize = bytes.readBigUInt64BE(12);
  if (manifestSize === 0n || manifestSize > BigInt(MAX_MANIFEST_SIZE)) {
    throw new VabError('ECORRUPT', `manifest size ${manifestSize} is absurd (limit ${MAX_MANIFEST_SIZE})`, { file, offset: 12 });
  }
  const metadataSignatureSize = bytes.readUInt32BE(20);
  if (metadataSignatureSize > MAX_METADATA_SIGNATURE_SIZE) {
    throw new VabError('ECORRUPT', `metadata signature size ${metadataSignatureSize} is absurd (limit ${MAX_METADATA_SIGNATURE_SIZE})`, { file, offset: 20 });
  }
  const header = { major_version: PAYLOAD_MAJOR_VERSION, manifest_size: Number(manifestSize), metadata_signature_size: metadataSignatureSize };
  if (fileSize !== undefined && dataOffset(header) > fileSize) {
    throw new VabError('ETRUNCATED', `header declares ${dataOffset(header)} bytes of metadata, the file has ${fileSize}`, { file, offset: 12 });
  }
  return header;
}

/** Header + manifest: the bytes the metadata signature covers. */
export function metadataSize(header: PayloadHeader): number {
  return PAYLOAD_HEADER_SIZE + header.manifest_size;
}

/** Where operation blobs (and the payload signature) are counted from. */
export function dataOffset(header: PayloadHeader): number {
  return metadataSize(header) + header.metadata_signature_size;
}
