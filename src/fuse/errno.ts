import type { VabErrorCode } from '../util/errors';
import { Errno } from './protocol';

/**
 * The one place a VabError becomes an errno: where an answer leaves vab for the kernel (a FUSE
 * reply). Everywhere else errors keep their stable codes.
 */
export const ERRNO_FOR_CODE: Readonly<Record<VabErrorCode, number>> = {
  EINVAL_INPUT: Errno.EINVAL,
  ECORRUPT: Errno.EIO,
  ETRUNCATED: Errno.EIO,
  EHASH: Errno.EIO,
  EUNSUPPORTED: Errno.EOPNOTSUPP,
  EPROTO: Errno.EPROTO,
  ENOTFOUND: Errno.ENOENT,
  EEXIST: 17,
  ETIMEDOUT: 110,
  EIO: Errno.EIO,
  ESTATE: Errno.EIO,
  EPERM: Errno.EPERM,
};

/** What an errno means to the rest of vab, for errors raised with a precise errno. */
export function codeForErrno(errno: number): VabErrorCode {
  switch (errno) {
    case Errno.EINVAL:
      return 'EINVAL_INPUT';
    case Errno.ENOENT:
      return 'ENOTFOUND';
    case Errno.EPERM:
    case Errno.EACCES:
    case Errno.EROFS:
      return 'EPERM';
    case Errno.ENOSYS:
    case Errno.EOPNOTSUPP:
      return 'EUNSUPPORTED';
    case Errno.EPROTO:
      return 'EPROTO';
    default:
      return 'EIO';
  }
}
