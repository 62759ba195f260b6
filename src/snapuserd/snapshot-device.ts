import { DmUserResponse, SECTOR_SIZE } from '../dmuser/constants';
import { SnapshotReader } from '../cow/snapshot-reader';
import type { MergeProgress } from '../cow/materialize';
import { VabError } from '../util/errors';
import type { MergeView } from './merge/view';
import type { BlockDevice } from './block-device';

/**
 * A snapshot as a block device: reads give the new image (base + COW, through the materializer);
 * nothing is ever written. As Android's DmUserBlockServer does, WRITE, DISCARD and every other
 * type but READ and FLUSH are answered ERROR, so the base is never touched through the device.
 */
export class SnapshotDevice implements BlockDevice {
  readonly otherRequests = DmUserResponse.Error;
  /** Bounce buffers for reads that do not start or end on a block boundary. */
  private readonly bounce: Buffer[] = [];
  /** While a merge runs (or after one was interrupted): what each read goes by. */
  mergeView: MergeView | undefined;

  constructor(
    readonly snapshot: SnapshotReader,
    /** The device's size: the base's, as Android's num_sectors is. */
    readonly sectors: number,
  ) {}

  async read(sector: number, dst: Buffer): Promise<void> {
    const offset = sector * SECTOR_SIZE;
    if (offset + dst.length > this.sectors * SECTOR_SIZE) {
      throw new VabError('EINVAL_INPUT', `read of ${dst.length} bytes at sector ${sector} runs past the ${this.sectors}-sector device`);
    }
    if (dst.length === 0) return;
    const view = this.mergeView?.enter();
    try {
      await this.readAt(offset, dst, view);
    } finally {
      if (view) this.mergeView!.leave(view);
    }
  }

  private async readAt(offset: number, dst: Buffer, view: MergeProgress | undefined): Promise<void> {
    const bs = this.snapshot.blockSize;
    const first = Math.floor(offset / bs);
    const end = Math.ceil((offset + dst.length) / bs);
    if (offset % bs === 0 && dst.length % bs === 0) {
      await this.snapshot.readBlocks(first, end - first, dst, 0, view);
      return;
    }
    // Unaligned: produce the covering blocks, send only the part asked for.
    const size = (end - first) * bs;
    let bounce = this.bounce.pop();
    if (!bounce || bounce.length < size) bounce = Buffer.allocUnsafe(Math.max(size, 64 * 1024));
    try {
      await this.snapshot.readBlocks(first, end - first, bounce, 0, view);
      bounce.copy(dst, 0, offset - first * bs, offset - first * bs + dst.length);
    } finally {
      this.bounce.push(bounce);
    }
  }

  async write(sector: number): Promise<void> {
    throw new VabError('EUNSUPPORTED', `write at sector ${sector}: a snapshot device is read-only`);
  }

  async flush(): Promise<void> {
    // Nothing is ever written through the device, so there is nothing to make durable.
  }

  async discard(sector: number): Promise<void> {
    throw new VabError('EUNSUPPORTED', `discard at sector ${sector}: a snapshot device is read-only`);
  }
}
