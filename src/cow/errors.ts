import { VabError, VabErrorCode } from '../util/errors';

/** Where in a COW file something went wrong: the file, the byte offset and the op index. */
export interface CowWhere {
  file?: string;
  offset?: number;
  /** Index of the op in COW order (its slot in the v3 op area, its position in a v2 stream). */
  op?: number;
  cause?: unknown;
}

/**
 * A malformed or unusable COW. The message names the file, the offset and the op, so a user can
 * find the bad bytes with a hex dump; `op` is also kept as a field for callers.
 */
export class CowFormatError extends VabError {
  readonly op?: number;

  constructor(code: VabErrorCode, message: string, where: CowWhere = {}) {
    const text = where.op === undefined ? message : `op ${where.op}: ${message}`;
    super(code, where.file === undefined ? `COW: ${text}` : text, where);
    this.name = 'CowFormatError';
    this.op = where.op;
  }
}

export function corrupt(message: string, where: CowWhere): CowFormatError {
  return new CowFormatError('ECORRUPT', message, where);
}

export function truncated(message: string, where: CowWhere): CowFormatError {
  return new CowFormatError('ETRUNCATED', message, where);
}

export function unsupported(message: string, where: CowWhere): CowFormatError {
  return new CowFormatError('EUNSUPPORTED', message, where);
}

export function badArgument(message: string, where: CowWhere = {}): CowFormatError {
  return new CowFormatError('EINVAL_INPUT', message, where);
}
