import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { extractPayload } from '../../src/payload/extract';
import { generatePayload } from '../../src/payload/generate';
import { inspectPayload } from '../../src/payload/inspect';
import { decodeSignatures } from '../../src/payload/manifest';
import { loadPrivateKey, loadPublicKey, paddedDigest } from '../../src/payload/signing';
import { randomBytes, tempDir, writeImages } from './support/images';

const run = promisify(execFile);

describe('PKCS#1 v1.5 SHA-256 padding', () => {
  it('is 00 01 FF.. 00, the DigestInfo prefix, then the digest', () => {
    const digest = Buffer.alloc(32, 0x11);
    const padded = paddedDigest(digest, 256);
    const expected = Buffer.concat([
      Buffer.from([0x00, 0x01]),
      Buffer.alloc(256 - 3 - 19 - 32, 0xff),
      Buffer.from([0x00]),
      Buffer.from('30 31 30 0d 06 09 60 86 48 01 65 03 04 02 01 05 00 04 20'.replace(/ /g, ''), 'hex'),
      digest,
    ]);
    expect(padded.equals(expected)).toBe(true);
    expect(paddedDigest(digest, 512).length).toBe(512);
  });
});

describe('signed payloads', () => {
  let dir: string;
  const image = Buffer.concat([randomBytes(5, 3 * 1024 * 1024), Buffer.alloc(2 * 1024 * 1024)]);
  const keys = { k2048: { bits: 2048, sigBlob: 267 }, k4096: { bits: 4096, sigBlob: 523 } };

  beforeAll(async () => {
    dir = await tempDir('vab-signing-');
    await writeImages(path.join(dir, 'images'), { boot: image });
    // PKCS#1 for one key and PKCS#8 for the other: both forms must load.
    await run('openssl', ['genrsa', '-traditional', '-out', path.join(dir, 'k2048.pem'), '2048']);
    await run('openssl', ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:4096', '-out', path.join(dir, 'k4096.pem')]);
    await run('openssl', ['genrsa', '-out', path.join(dir, 'other.pem'), '2048']);
    for (const name of ['k2048', 'k4096', 'other']) {
      await run('openssl', ['rsa', '-in', path.join(dir, `${name}.pem`), '-pubout', '-out', path.join(dir, `${name}.pub.pem`)]);
    }
  });
  afterAll(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  /** Checks a raw signature over a digest with openssl, independently of vab's verifier. */
  async function opensslVerifies(pub: string, digest: Buffer, signature: Buffer): Promise<boolean> {
    await fs.writeFile(path.join(dir, 'digest.bin'), digest);
    await fs.writeFile(path.join(dir, 'sig.bin'), signature);
    const args = ['pkeyutl', '-verify', '-pubin', '-inkey', pub, '-in', path.join(dir, 'digest.bin'), '-sigfile', path.join(dir, 'sig.bin'), '-pkeyopt', 'digest:sha256'];
    return run('openssl', args).then(
      () => true,
      () => false,
    );
  }

  it.each(Object.entries(keys))('with %s: both signatures verify under openssl, over the bytes update_engine hashes', async (name, { bits, sigBlob }) => {
    const file = path.join(dir, `${name}.bin`);
    await generatePayload({ targetDir: path.join(dir, 'images'), output: file, privateKey: await loadPrivateKey(path.join(dir, `${name}.pem`)) });
    const bytes = await fs.readFile(file);
    // Parse the layout by hand (big-endian header), not with the reader under test.
    const manifestSize = Number(bytes.readBigUInt64BE(12));
    const metadataSigSize = bytes.readUInt32BE(20);
    expect(metadataSigSize).toBe(sigBlob);
    const metadataEnd = 24 + manifestSize;
    const dataStart = metadataEnd + metadataSigSize;
    const payloadSig = bytes.subarray(bytes.length - sigBlob);
    const metadataDigest = createHash('sha256').update(bytes.subarray(0, metadataEnd)).digest();
    const payloadDigest = createHash('sha256').update(bytes.subarray(0, metadataEnd)).update(bytes.subarray(dataStart, bytes.length - sigBlob)).digest();
    const metadataSignature = decodeSignatures(bytes.subarray(metadataEnd, dataStart)).signatures[0];
    const payloadSignature = decodeSignatures(payloadSig).signatures[0];
    expect(metadataSignature.data.length).toBe(bits / 8);
    expect(metadataSignature.unpadded_signature_size).toBe(bits / 8);
    const pub = path.join(dir, `${name}.pub.pem`);
    expect(await opensslVerifies(pub, metadataDigest, metadataSignature.data)).toBe(true);
    expect(await opensslVerifies(pub, payloadDigest, payloadSignature.data)).toBe(true);

    const summary = await inspectPayload(file, await loadPublicKey(pub));
    expect(summary.signatures.metadata).toMatchObject({ count: 1, size: sigBlob, verified: 'valid' });
    expect(summary.signatures.payload).toMatchObject({ count: 1, size: sigBlob, verified: 'valid' });
    const out = path.join(dir, `out-${name}`);
    await extractPayload(file, { outDir: out, publicKey: await loadPublicKey(pub) });
    expect((await fs.readFile(path.join(out, 'boot.img'))).equals(image)).toBe(true);
  });

  it('refuses, before writing anything, a payload whose signature does not verify against the key', async () => {
    const file = path.join(dir, 'k2048.bin');
    const out = path.join(dir, 'out-wrong-key');
    const wrong = await loadPublicKey(path.join(dir, 'other.pub.pem'));
    await expect(extractPayload(file, { outDir: out, publicKey: wrong })).rejects.toThrow(/metadata signature does not verify against the given key/);
    await expect(fs.readdir(out)).rejects.toMatchObject({ code: 'ENOENT' });
    expect((await inspectPayload(file, wrong)).signatures.payload.verified).toBe('invalid');
  });

  it('refuses a payload whose data was changed after signing, even though the metadata still verifies', async () => {
    const bytes = await fs.readFile(path.join(dir, 'k2048.bin'));
    bytes[bytes.length - 267 - 10] ^= 1; // inside the last blob
    const file = path.join(dir, 'tampered.bin');
    await fs.writeFile(file, bytes);
    const out = path.join(dir, 'out-tampered');
    await expect(extractPayload(file, { outDir: out, publicKey: await loadPublicKey(path.join(dir, 'k2048.pub.pem')) })).rejects.toThrow(/payload signature does not verify/);
    await expect(fs.readdir(out)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('refuses an unsigned payload when a key is given, and keys that are not RSA-2048/4096', async () => {
    const file = path.join(dir, 'unsigned.bin');
    await generatePayload({ targetDir: path.join(dir, 'images'), output: file });
    await expect(extractPayload(file, { outDir: path.join(dir, 'out-unsigned'), publicKey: await loadPublicKey(path.join(dir, 'k2048.pub.pem')) })).rejects.toThrow(/no metadata signature/);
    await run('openssl', ['genrsa', '-out', path.join(dir, 'k1024.pem'), '1024']);
    await expect(loadPrivateKey(path.join(dir, 'k1024.pem'))).rejects.toThrow(/RSA-2048 or RSA-4096, this one is rsa 1024 bits/);
    await expect(loadPublicKey(path.join(dir, 'k2048.pem.missing'))).rejects.toThrow(/cannot read key/);
    await fs.writeFile(path.join(dir, 'garbage.pem'), 'not a key\n');
    await expect(loadPublicKey(path.join(dir, 'garbage.pem'))).rejects.toThrow(/garbage\.pem: not a PEM public key/);
  });
});
