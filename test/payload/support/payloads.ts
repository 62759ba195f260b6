import { encodeHeader } from '../../../src/payload/header';
import { DeltaArchiveManifest, decodeManifest, encodeManifest } from '../../../src/payload/manifest';

/** Where an unsigned payload's parts are, read straight from its big-endian header. */
export function layout(bytes: Buffer): { manifestEnd: number; dataStart: number } {
  const manifestEnd = 24 + Number(bytes.readBigUInt64BE(12));
  return { manifestEnd, dataStart: manifestEnd + bytes.readUInt32BE(20) };
}

/** The same payload with its manifest changed (data offsets count from the data area, so blobs stay valid). */
export function rewriteManifest(bytes: Buffer, mutate: (m: DeltaArchiveManifest) => void): Buffer {
  const { manifestEnd, dataStart } = layout(bytes);
  const manifest = decodeManifest(bytes.subarray(24, manifestEnd));
  mutate(manifest);
  const encoded = encodeManifest(manifest);
  const header = encodeHeader({ major_version: 2, manifest_size: encoded.length, metadata_signature_size: dataStart - manifestEnd });
  return Buffer.concat([header, encoded, bytes.subarray(manifestEnd)]);
}

export function manifestOf(bytes: Buffer): DeltaArchiveManifest {
  return decodeManifest(bytes.subarray(24, layout(bytes).manifestEnd));
}
