import type { KeyObject } from 'node:crypto';
import { VabError } from '../util/errors';
import { PayloadFile } from './payload-file';
import { verifyDigest } from './signing';

export type SignatureState = 'absent' | 'valid' | 'invalid';

export interface SignatureReport {
  metadata: SignatureState;
  payload: SignatureState;
}

/**
 * Checks the metadata signature (over header + manifest) and the payload signature (over the
 * metadata and the operation data) against `key`. The metadata signature is checked first, as
 * update_engine does, and costs nothing; the payload one reads the whole data area.
 */
export async function checkSignatures(payload: PayloadFile, key: KeyObject, onProgress?: (bytes: number) => void): Promise<SignatureReport> {
  return { metadata: checkMetadataSignature(payload, key), payload: await checkPayloadSignature(payload, key, onProgress) };
}

function checkMetadataSignature(payload: PayloadFile, key: KeyObject): SignatureState {
  const signatures = payload.decodeSignatureBlob('metadata');
  if (!signatures) return 'absent';
  return verifyDigest(payload.metadataHash(), signatures, key) ? 'valid' : 'invalid';
}

async function checkPayloadSignature(payload: PayloadFile, key: KeyObject, onProgress?: (bytes: number) => void): Promise<SignatureState> {
  const signatures = payload.decodeSignatureBlob('payload');
  if (!signatures) return 'absent';
  return verifyDigest(await payload.signedPayloadHash(onProgress), signatures, key) ? 'valid' : 'invalid';
}

/** Throws unless both signatures are present and verify under `key`; metadata first, as update_engine. */
export async function requireValidSignatures(payload: PayloadFile, key: KeyObject): Promise<void> {
  refuseUnlessValid(payload, 'metadata', checkMetadataSignature(payload, key));
  refuseUnlessValid(payload, 'payload', await checkPayloadSignature(payload, key));
}

function refuseUnlessValid(payload: PayloadFile, which: string, state: SignatureState): void {
  if (state === 'absent') throw new VabError('EHASH', `the payload has no ${which} signature, but a key was given`, { file: payload.file });
  if (state === 'invalid') throw new VabError('EHASH', `the ${which} signature does not verify against the given key`, { file: payload.file });
}
