import type { CowHeader } from './format';
import type { ResumePoint } from './op';
import type { CowOpTable } from './op-table';

/** What a version-specific parser hands the reader: one canonical model for v2 and v3 alike. */
export interface ParsedCow {
  /** For v2 files, the header as translated: compression_algorithm is the one the ops use. */
  header: CowHeader;
  ops: CowOpTable;
  /** new_block values in merge order (v3 sequence area, or v2 sequence ops), possibly empty. */
  sequence: Uint32Array;
  /** v3 resume points as stored (at most resume_point_max). */
  resumePoints: ResumePoint[];
  /** v2 footer, when the stream had one. */
  footer?: { opsSize: number; numOps: number };
  /** v2: the value of the last label op seen. */
  lastLabel?: bigint;
  fileSize: number;
  /** Byte just past the last payload. */
  dataEnd: number;
  /** File offset of op i's record, for error messages. */
  recordOffset(op: number): number;
}
