import { close } from 'node:fs';
import { nativeModule, nativeModuleProblem } from '../util/native';
import { sizeClass } from '../util/size-class';
import type { Placement } from './shared-frame';

/** The native module, when it is there: both sides need it for the shared transport. */
export const nativeSharedMemory = nativeModule;

/** Why the shared transport is off (undefined when it is available). */
export const sharedMemoryProblem = nativeModuleProblem;

/** Regions come in power-of-two sizes from here up, so a freed one fits the next IO of its class. */
const SMALLEST_REGION = 4096;
/** Each channel's memory: two 1 MiB reads in flight with room to spare; untouched pages cost nothing. */
export const CHANNEL_MEMORY_BYTES = 4 * 1024 * 1024;

/**
 * The kernel's side of one shared channel's memory: a sealed memfd it alone creates and sizes, and
 * the regions it lends out, one per placed READ until its answer has been used. The kernel alone
 * decides every offset and length, and the daemon can neither resize the file (sealed) nor name
 * another region, so the worst a lying daemon can do is garble its own target's answers.
 */
export class SharedArea {
  /** Free regions by size class, and the lent ones' sizes by offset. */
  private readonly free = new Map<number, number[]>();
  private readonly lent = new Map<number, number>();
  private end = 0;
  private closed = false;

  private constructor(
    readonly fd: number,
    private readonly memory: Buffer,
  ) {}

  /** A new area, or undefined when the native module is missing. */
  static create(size = CHANNEL_MEMORY_BYTES): SharedArea | undefined {
    const api = nativeSharedMemory();
    if (!api) return undefined;
    const fd = api.createSealed(size);
    try {
      return new SharedArea(fd, Buffer.from(api.mapSealed(fd)));
    } catch (err) {
      close(fd, () => undefined);
      throw err;
    }
  }

  /** A region for an answer of `length` bytes, or undefined when none is free (send it inline). */
  allocate(length: number): Placement | undefined {
    if (this.closed) return undefined;
    const size = regionSize(length);
    const reused = this.free.get(size)?.pop();
    if (reused !== undefined) this.lent.set(reused, size);
    const offset = reused ?? this.grow(size) ?? this.takeLarger(size);
    if (offset === undefined) return undefined;
    return { offset, length };
  }

  /** Gives a region back; one that is not lent (a second release) is ignored, never lent twice. */
  release(region: Placement): void {
    const size = this.lent.get(region.offset);
    if (size === undefined) return;
    this.lent.delete(region.offset);
    let list = this.free.get(size);
    if (!list) this.free.set(size, (list = []));
    list.push(region.offset);
  }

  /** The region's bytes, as the daemon left them: valid until it is released. */
  view(region: Placement): Buffer {
    return this.memory.subarray(region.offset, region.offset + region.length);
  }

  /**
   * The channel is gone: nothing more is lent, and the descriptor closes. Views already handed out
   * stay valid (the mapping lives as long as one of them does).
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    close(this.fd, () => undefined);
  }

  private grow(size: number): number | undefined {
    if (this.end + size > this.memory.length) return undefined;
    const offset = this.end;
    this.end += size;
    this.lent.set(offset, size);
    return offset;
  }

  /** The memory is all carved up: a free region of a larger class serves (whole) a smaller answer. */
  private takeLarger(size: number): number | undefined {
    for (let larger = size * 2; larger <= this.memory.length; larger *= 2) {
      const offset = this.free.get(larger)?.pop();
      if (offset !== undefined) {
        this.lent.set(offset, larger);
        return offset;
      }
    }
    return undefined;
  }
}

function regionSize(length: number): number {
  return sizeClass(length, SMALLEST_REGION);
}
