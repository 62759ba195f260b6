import { createHash, Hash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { VabError, errnoCode } from '../util/errors';
import { PayloadHeader, dataOffset, decodeHeader, metadataSize, PAYLOAD_HEADER_SIZE } from './header';
import { DeltaArchiveManifest, InstallOperation, decodeManifest, decodeSignatures, Signatures } from './manifest';
import { describeOp } from './operations';
import { checkPartitionNames } from './partition-names';

/** Chunk size for hashing ranges of the file: large enough to amortise calls, small in memory. */
const HASH_CHUNK = 4 * 1024 * 1024;

/**
 * An open payload.bin. Only the metadata is held in memory; operation blobs are read by offset
 * when an operation runs, so a multi-gigabyte payload never has to fit in memory.
 */
export class PayloadFile {
  private constructor(
    readonly file: string,
    private readonly handle: fs.FileHandle,
    readonly size: number,
    readonly header: PayloadHeader,
    /** Header + manifest, the bytes the metadata signature covers. */
    readonly metadata: Buffer,
    readonly manifest: DeltaArchiveManifest,
    readonly metadataSignature: Buffer | undefined,
    readonly payloadSignature: Buffer | undefined,
  ) {}

  static async open(file: string): Promise<PayloadFile> {
    let handle: fs.FileHandle;
    try {
      handle = await fs.open(file, 'r');
    } catch (err) {
      throw new VabError(errnoCode(err) === 'ENOENT' ? 'ENOTFOUND' : 'EIO', `cannot open payload: ${(err as Error).message}`, { file, cause: err });
    }
    try {
      return await PayloadFile.parse(file, handle);
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  private static async parse(file: string, handle: fs.FileHandle): Promise<PayloadFile> {
    const size = (await handle.stat()).size;
    const headerBytes = await readAt(handle, 0, Math.min(PAYLOAD_HEADER_SIZE, size));
    const header = decodeHeader(headerBytes, file, size);
    const metadata = await readAt(handle, 0, metadataSize(header));
    const manifest = decodeManifestAt(metadata.subarray(PAYLOAD_HEADER_SIZE), file);
    checkPartitionNames(manifest.partitions.map((p) => p.partition_name), { code: 'ECORRUPT', file, offset: PAYLOAD_HEADER_SIZE, what: (index) => `partition ${index}` });
    const metadataSignature = header.metadata_signature_size > 0 ? await readAt(handle, metadataSize(header), header.metadata_signature_size) : undefined;
    const base = dataOffset(header);
    let payloadSignature: Buffer | undefined;
    if (manifest.signatures_offset !== undefined && manifest.signatures_size !== undefined && manifest.signatures_size > 0) {
      const end = base + manifest.signatures_offset + manifest.signatures_size;
      if (end > size) {
        throw new VabError('ETRUNCATED', `payload signature ends at ${end}, the file has ${size} bytes`, { file, offset: base + manifest.signatures_offset });
      }
      payloadSignature = await readAt(handle, base + manifest.signatures_offset, manifest.signatures_size);
    }
    checkBlobLayout(file, manifest, base, size);
    return new PayloadFile(file, handle, size, header, metadata, manifest, metadataSignature, payloadSignature);
  }

  get dataOffset(): number {
    return dataOffset(this.header);
  }

  /** SHA-256 of header + manifest: what the metadata signature signs. */
  metadataHash(): Buffer {
    return createHash('sha256').update(this.metadata).digest();
  }

  /**
   * SHA-256 of the metadata followed by the data area up to the payload signature: what the
   * payload signature signs (both signature blobs are skipped). Reads the data area once.
   */
  async signedPayloadHash(onProgress?: (bytes: number) => void): Promise<Buffer> {
    const hash = createHash('sha256').update(this.metadata);
    const end = this.manifest.signatures_offset !== undefined ? this.dataOffset + this.manifest.signatures_offset : this.size;
    await this.hashRange(hash, this.dataOffset, end, onProgress);
    return hash.digest();
  }

  /** SHA-256 of the whole file (payload_properties.txt's FILE_HASH). */
  async fileHash(): Promise<Buffer> {
    const hash = createHash('sha256');
    await this.hashRange(hash, 0, this.size);
    return hash.digest();
  }

  private async hashRange(hash: Hash, start: number, end: number, onProgress?: (bytes: number) => void): Promise<void> {
    const buffer = Buffer.allocUnsafe(Math.min(HASH_CHUNK, Math.max(end - start, 1)));
    for (let at = start; at < end; ) {
      const want = Math.min(buffer.length, end - at);
      const { bytesRead } = await this.handle.read(buffer, 0, want, at);
      if (bytesRead === 0) throw new VabError('ETRUNCATED', `payload ends at ${at}, expected data up to ${end}`, { file: this.file, offset: at });
      hash.update(buffer.subarray(0, bytesRead));
      at += bytesRead;
      onProgress?.(bytesRead);
    }
  }

  /** The op's data blob, read from the file by offset (undefined for ops without data). */
  async readBlob(op: InstallOperation): Promise<Buffer | undefined> {
    if (op.data_length === undefined || op.data_length === 0) return undefined;
    return readAt(this.handle, this.blobOffset(op), op.data_length, this.file);
  }

  blobOffset(op: InstallOperation): number {
    return this.dataOffset + (op.data_offset ?? 0);
  }

  decodeSignatureBlob(which: 'metadata' | 'payload'): Signatures | undefined {
    const blob = which === 'metadata' ? this.metadataSignature : this.payloadSignature;
    if (!blob) return undefined;
    const offset = which === 'metadata' ? metadataSize(this.header) : this.dataOffset + (this.manifest.signatures_offset ?? 0);
    try {
      return decodeSignatures(blob, `${which} signature`);
    } catch (err) {
      throw new VabError('ECORRUPT', (err as Error).message, { file: this.file, offset, cause: err });
    }
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}

async function readAt(handle: fs.FileHandle, position: number, length: number, file?: string): Promise<Buffer> {
  // Unpooled: a blob owns its memory, so it can be moved to a decoder thread without a copy.
  const buffer = Buffer.allocUnsafeSlow(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buffer, done, length - done, position + done);
    if (bytesRead === 0) throw new VabError('ETRUNCATED', `file ends before ${length} bytes at ${position} could be read`, { file, offset: position + done });
    done += bytesRead;
  }
  return buffer;
}

function decodeManifestAt(bytes: Buffer, file: string): DeltaArchiveManifest {
  try {
    return decodeManifest(bytes);
  } catch (err) {
    throw new VabError('ECORRUPT', (err as Error).message, { file, offset: PAYLOAD_HEADER_SIZE, cause: err });
  }
}

/**
 * Op blobs must lie inside the file, one after another in manifest order, as update_engine
 * requires when it streams a payload; checking here makes a truncated payload fail before
 * anything is written.
 */
function checkBlobLayout(file: string, manifest: DeltaArchiveManifest, base: number, size: number): void {
  let expected = 0;
  for (const partition of manifest.partitions) {
    partition.operations.forEach((op, index) => {
      const length = op.data_length ?? 0;
      if (length === 0) return;
      const offset = op.data_offset ?? 0;
      const where = describeOp(partition.partition_name, index, op);
      if (base + offset + length > size) {
        throw new VabError('ETRUNCATED', `${where}: data [${offset}, +${length}) runs past the end of the file (${size} bytes; truncated payload?)`, { file, offset: base + offset });
      }
      if (offset !== expected) {
        throw new VabError('ECORRUPT', `${where}: data offset ${offset} is not where the previous blob ended (${expected})`, { file, offset: base + offset });
      }
      expected = offset + length;
    });
  }
  if (manifest.signatures_offset !== undefined && manifest.signatures_size && manifest.signatures_offset < expected) {
    throw new VabError('ECORRUPT', `payload signature at ${manifest.signatures_offset} overlaps operation data ending at ${expected}`, { file, offset: base + manifest.signatures_offset });
  }
}
