/**
 * Errors carry a stable `code` so callers (and tests) can tell failures apart without parsing
 * messages. They become an errno only at the kernel boundary (FUSE replies, dm-user responses).
 */
export const VAB_ERROR_CODES = [
  'EINVAL_INPUT', // malformed input file or argument
  'ECORRUPT', // a structure on disk fails validation
  'ETRUNCATED', // a file ends before a structure it declares
  'EHASH', // a hash or signature does not match
  'EUNSUPPORTED', // a valid input that vab does not handle
  'EPROTO', // a peer broke a wire protocol
  'ENOTFOUND', // a named object (target, partition) does not exist
  'EEXIST', // a named object already exists
  'ETIMEDOUT', // a bounded wait ran out
  'EIO', // an IO failed
  'ESTATE', // the operation is not valid in the current state
  'EPERM', // the operation is never allowed on this object (a block file's size or mode)
] as const;
export type VabErrorCode = (typeof VAB_ERROR_CODES)[number];

/** Whether `code` (say, one received from another vab process) is one of ours. */
export function isVabErrorCode(code: unknown): code is VabErrorCode {
  return typeof code === 'string' && (VAB_ERROR_CODES as readonly string[]).includes(code);
}

export class VabError extends Error {
  readonly code: VabErrorCode;
  /** Where the problem is, when it is in a file: path and byte offset. */
  readonly file?: string;
  readonly offset?: number;

  constructor(code: VabErrorCode, message: string, where?: { file?: string; offset?: number; cause?: unknown }) {
    super(formatMessage(message, where), where?.cause !== undefined ? { cause: where.cause } : undefined);
    this.name = 'VabError';
    this.code = code;
    this.file = where?.file;
    this.offset = where?.offset;
  }
}

function formatMessage(message: string, where?: { file?: string; offset?: number }): string {
  if (!where || where.file === undefined) return message;
  const at = where.offset === undefined ? where.file : `${where.file} at offset ${where.offset}`;
  return `${at}: ${message}`;
}

export function isVabError(err: unknown, code?: VabErrorCode): err is VabError {
  return err instanceof VabError && (code === undefined || err.code === code);
}

/** The errno-style name of a Node system error (`ENOENT`, ...), or undefined. */
export function errnoCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err) {
    const code = (err as { code: unknown }).code;
    if (typeof code === 'string') return code;
  }
  return undefined;
}
