/** Pure-TypeScript FUSE server: mounts a provider's block files on a directory (see docs/fuse.md). */
export { mountBlockFiles } from './session';
export { forceUnmount, forceUnmountUnder } from './cleanup';
export { nodeidOfFile } from './filesystem';
export { FuseDecodeError } from './codec/layout';
export type { BlockFile, BlockFileProvider, FileRequestContext, FuseMountOptions, FuseSession } from './types';
export { FuseErrnoError } from './types';
