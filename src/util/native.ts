import path from 'node:path';
import { PACKAGE_ROOT } from './package-root';

/** What native/shared-memory.cc exports (see that file). */
export interface NativeModule {
  /** A sealed memfd of `size` bytes (it can never shrink or grow); returns its descriptor. */
  createSealed(size: number): number;
  /** Maps the whole of a sealed memfd shared and read-write; refuses anything else. */
  mapSealed(fd: number): ArrayBuffer;
  /** The pid at the other end of a connected unix socket (SO_PEERCRED). */
  peerPid(fd: number): number;
  /** Reads into `buffer[offset, offset+length)` only what the page cache holds; the bytes read (0: none). */
  readCached(fd: number, buffer: Buffer, offset: number, length: number, position: number): number;
}

const NATIVE_MODULE = path.join(PACKAGE_ROOT, 'build', 'native', 'vab_shared_memory.node');

let loaded: { api: NativeModule | undefined; problem: string | undefined } | undefined;

/**
 * The native module, or undefined when it was not built (scripts/build-native.sh needs g++ and
 * Node's headers). Everything that uses it has a way without it.
 */
export function nativeModule(): NativeModule | undefined {
  if (!loaded) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      loaded = { api: require(NATIVE_MODULE) as NativeModule, problem: undefined };
    } catch (err) {
      loaded = { api: undefined, problem: `${NATIVE_MODULE} did not load: ${(err as Error).message.split('\n')[0]}` };
    }
  }
  return loaded.api;
}

/** Why the native module is missing (undefined when it loaded). */
export function nativeModuleProblem(): string | undefined {
  nativeModule();
  return loaded?.problem;
}
