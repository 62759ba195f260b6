/**
 * Android's COW format (v3 read/write, v1/v2 read) and what vab builds on it.
 *
 *   CowWriter        write a v3 COW: add* ops, labels, resume after a crash, estimator
 *   CowReader        open, parse, validate and index a COW (v2 or v3); payloads; merge order
 *   SnapshotReader   the new image over base + COW: readBlocks(start, count, dst)
 *   createCow        OLD + NEW images → COW;  applyCow: COW + OLD → NEW (offline)
 *   mergeInPlace     merge a COW into its base in merge order, resumable after a crash
 *   inspectCow       what `vab cow inspect` reports
 */
export * from './format';
export { CowFormatError } from './errors';
export { CowWriter, replaceOpCount } from './writer';
export type { CowWriterOptions, CowSizeEstimate } from './writer';
export { CowReader } from './reader';
export type { CowReaderOptions, CowRanges } from './reader';
export { SnapshotReader } from './snapshot-reader';
export { computeMergeOrder, verifyMergeOrder } from './merge-order';
export type { MergeOrder, MergeOrderProblem } from './merge-order';
export { createCow } from './create';
export type { CreateCowOptions, CreateCowResult } from './create';
export { applyCow } from './apply';
export type { ApplyCowOptions } from './apply';
export { mergeInPlace, mergeFiles } from './merge';
export type { MergeOptions, MergeResult } from './merge';
export { inspectCow, formatInspection } from './inspect';
export type { CowInspection, InspectOptions } from './inspect';
export { createCodec, parseCompression } from './codec';
export type { CowCodec, CompressionSpec } from './codec';
export { openFile } from './file';
export type { RandomAccessFile } from './file';
export { encodeHeaderV3, decodeHeader } from './header';
export { encodeOpV3, decodeOpV3, decodeOpV2, encodeResumePoint, decodeResumePoint } from './op';
export type { CowOpV3, CowOpV2, ResumePoint } from './op';
