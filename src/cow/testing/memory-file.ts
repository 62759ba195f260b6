import type { RandomAccessFile } from '../file';

/**
 * An in-memory file layer that can lose power, for crash tests of anything that writes COWs and
 * images (the merge, apply, the crash-test runner): shared by the tests and `vab crashtest`.
 */

/** Thrown by a MemoryFile when the simulated machine loses power. */
export class PowerCut extends Error {}

/**
 * Counts writes across every file on it and cuts the power at write number `cutAt` (that write
 * and everything after it never happen).
 */
export class Disk {
  writes = 0;
  cutAt = Infinity;

  beforeWrite(): void {
    if (++this.writes >= this.cutAt) throw new PowerCut(`power cut at write ${this.writes}`);
  }
}

/**
 * An in-memory file that remembers what was last fsynced. After a power cut `afterCrash` gives
 * the content a reboot could find: only the synced bytes, or every write that happened.
 */
export class MemoryFile implements RandomAccessFile {
  private data: Buffer;
  private length: number;
  private synced: Buffer;
  private syncedLength: number;
  /** Writes since the last fsync, in order. */
  private unsynced: Array<{ position: number; bytes: Buffer }> = [];

  constructor(
    readonly path: string,
    initial: Buffer = Buffer.alloc(0),
    private readonly disk: Disk = new Disk(),
  ) {
    this.data = Buffer.from(initial);
    this.length = initial.length;
    this.synced = Buffer.from(initial);
    this.syncedLength = initial.length;
  }

  contents(): Buffer {
    return Buffer.from(this.data.subarray(0, this.length));
  }

  /**
   * What a reboot finds: only the synced bytes, every write that happened (`true`), or, with a
   * random source, each write since the last fsync kept or lost on its own (in order: a later
   * write that is kept lands over an earlier one).
   */
  afterCrash(keepUnsynced: boolean | (() => number)): Buffer {
    if (keepUnsynced === true) return this.contents();
    const image = Buffer.alloc(Math.max(this.synced.length, this.syncedLength));
    this.synced.copy(image);
    if (keepUnsynced === false) return image.subarray(0, this.syncedLength);
    let length = this.syncedLength;
    let out = image;
    for (const w of this.unsynced) {
      if (keepUnsynced() < 0.5) continue;
      if (w.position + w.bytes.length > out.length) {
        const grown = Buffer.alloc(w.position + w.bytes.length);
        out.copy(grown);
        out = grown;
      }
      w.bytes.copy(out, w.position);
      length = Math.max(length, w.position + w.bytes.length);
    }
    return out.subarray(0, length);
  }

  async read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    const n = Math.max(0, Math.min(length, this.length - position));
    buffer.set(this.data.subarray(position, position + n), offset);
    return n;
  }

  async write(buffer: Uint8Array, offset: number, length: number, position: number): Promise<void> {
    this.disk.beforeWrite();
    this.ensure(position + length);
    this.data.set(buffer.subarray(offset, offset + length), position);
    this.length = Math.max(this.length, position + length);
    this.unsynced.push({ position, bytes: Buffer.from(buffer.subarray(offset, offset + length)) });
  }

  async writev(buffers: readonly Uint8Array[], position: number): Promise<void> {
    for (const b of buffers) {
      await this.write(b, 0, b.length, position);
      position += b.length;
    }
  }

  async sync(): Promise<void> {
    this.synced = this.contents();
    this.syncedLength = this.length;
    this.unsynced = [];
  }

  async truncate(length: number): Promise<void> {
    this.disk.beforeWrite();
    this.ensure(length);
    if (length < this.length) this.data.fill(0, length, this.length);
    this.length = length;
  }

  async size(): Promise<number> {
    return this.length;
  }

  async close(): Promise<void> {}

  private ensure(size: number): void {
    if (size <= this.data.length) return;
    const next = Buffer.alloc(Math.max(size, this.data.length * 2));
    this.data.copy(next, 0, 0, this.length);
    this.data = next;
  }
}


/** What a reboot finds of one file after a power cut (see MemoryFile.afterCrash). */
export type CrashOutcome = boolean | (() => number);

/**
 * The crash test every writer here goes through: `work` runs on fresh in-memory files (`initial`,
 * by name) with the power cut at write 1, then 2, and so on, until it finishes with no cut. After
 * each cut `recover` runs on what a reboot finds of each file (`keep` by name, see afterCrash)
 * and checks the result. Returns how many cuts there were.
 */
export async function atEveryPowerCut(
  initial: Record<string, Buffer>,
  work: (files: Record<string, MemoryFile>) => Promise<unknown>,
  recover: (files: Record<string, MemoryFile>, cut: number) => Promise<void>,
  keep: (name: string) => CrashOutcome,
): Promise<number> {
  for (let cut = 1; ; cut++) {
    const disk = new Disk();
    disk.cutAt = cut;
    const files = Object.fromEntries(Object.entries(initial).map(([name, bytes]) => [name, new MemoryFile(name, bytes, disk)]));
    const finished = await work(files).then(
      () => true,
      (err: unknown) => {
        if (err instanceof PowerCut) return false;
        throw err;
      },
    );
    if (finished) return cut - 1;
    const after = Object.fromEntries(Object.entries(files).map(([name, file]) => [name, new MemoryFile(name, file.afterCrash(keep(name)))]));
    await recover(after, cut);
  }
}
