import { constants, createPrivateKey, createPublicKey, KeyObject, privateEncrypt, publicDecrypt } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { VabError } from '../util/errors';
import { Signatures, encodeSignatures } from './manifest';

/**
 * Payload signatures as update_engine makes and checks them: RSA with PKCS#1 v1.5 padding built
 * by hand around a SHA-256 digest, then a raw RSA operation (private-encrypt to sign,
 * public-decrypt to verify). Only 2048- and 4096-bit keys are accepted, as on Android.
 */

/** DER DigestInfo prefix for SHA-256 (RFC 8017 §9.2, note 1). */
const SHA256_DIGEST_INFO = Buffer.from('3031300d060960864801650304020105000420', 'hex');
const ACCEPTED_MODULUS_BITS = [2048, 4096];

export function paddedDigest(sha256: Buffer, modulusBytes: number): Buffer {
  if (sha256.length !== 32) throw new VabError('EINVAL_INPUT', `a SHA-256 digest has 32 bytes, got ${sha256.length}`);
  const out = Buffer.alloc(modulusBytes, 0xff);
  out[0] = 0x00;
  out[1] = 0x01;
  const tail = modulusBytes - SHA256_DIGEST_INFO.length - sha256.length;
  out[tail - 1] = 0x00;
  SHA256_DIGEST_INFO.copy(out, tail);
  sha256.copy(out, tail + SHA256_DIGEST_INFO.length);
  return out;
}

function modulusBytes(key: KeyObject, file?: string): number {
  const bits = key.asymmetricKeyDetails?.modulusLength;
  if (key.asymmetricKeyType !== 'rsa' || bits === undefined || !ACCEPTED_MODULUS_BITS.includes(bits)) {
    throw new VabError('EUNSUPPORTED', `payload keys must be RSA-2048 or RSA-4096, this one is ${key.asymmetricKeyType} ${bits ?? '?'} bits`, { file });
  }
  return bits / 8;
}

/** A PEM private key, PKCS#1 ("BEGIN RSA PRIVATE KEY") or PKCS#8 ("BEGIN PRIVATE KEY"). */
export function loadPrivateKey(file: string): Promise<KeyObject> {
  return loadKey(file, 'private', createPrivateKey);
}

/** A PEM public key (SubjectPublicKeyInfo, as `openssl rsa -pubout` writes; PKCS#1 also works). */
export function loadPublicKey(file: string): Promise<KeyObject> {
  return loadKey(file, 'public', createPublicKey);
}

async function loadKey(file: string, kind: string, create: (options: { key: string; format: 'pem' }) => KeyObject): Promise<KeyObject> {
  const pem = await readPem(file);
  let key: KeyObject;
  try {
    key = create({ key: pem, format: 'pem' });
  } catch (err) {
    throw new VabError('EINVAL_INPUT', `not a PEM ${kind} key: ${(err as Error).message}`, { file, cause: err });
  }
  modulusBytes(key, file);
  return key;
}

async function readPem(file: string): Promise<string> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch (err) {
    throw new VabError('ENOTFOUND', `cannot read key: ${(err as Error).message}`, { file, cause: err });
  }
}

export function signatureSize(key: KeyObject): number {
  return modulusBytes(key);
}

export function signDigest(sha256: Buffer, key: KeyObject): Buffer {
  const size = modulusBytes(key);
  return privateEncrypt({ key, padding: constants.RSA_NO_PADDING }, paddedDigest(sha256, size));
}

/**
 * True when any signature in the message verifies under `key`. Each signature's data is cut to
 * its unpadded size first (the blob may be zero-padded so that its size was known in advance).
 */
export function verifyDigest(sha256: Buffer, signatures: Signatures, key: KeyObject): boolean {
  const size = modulusBytes(key);
  const expected = paddedDigest(sha256, size);
  for (const signature of signatures.signatures) {
    const unpadded = signature.unpadded_signature_size;
    if (unpadded !== undefined && unpadded > signature.data.length) continue;
    const data = unpadded !== undefined ? signature.data.subarray(0, unpadded) : signature.data;
    if (data.length !== size) continue;
    let decrypted: Buffer;
    try {
      decrypted = publicDecrypt({ key, padding: constants.RSA_NO_PADDING }, data);
    } catch {
      continue; // e.g. a value not below the modulus: not a signature under this key
    }
    if (decrypted.equals(expected)) return true;
  }
  return false;
}

/** A Signatures message holding one signature, zero-padded to `paddedSize` bytes of data. */
export function signaturesMessage(signature: Buffer, paddedSize = signature.length): Buffer {
  const data = Buffer.alloc(paddedSize);
  signature.copy(data);
  return encodeSignatures({ signatures: [{ data, unpadded_signature_size: signature.length }] });
}
