// vab's native module (src/util/native.ts): what Node cannot do and a few system calls can. Shared
// memory for the dm-user shared transport (a sealed memfd, its mapping, a unix socket peer's pid),
// and a read that takes only what the page cache holds (preadv2 with RWF_NOWAIT).
// Built by scripts/build-native.sh against the running Node's headers, with no other dependency.
#include <node_api.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

namespace {

// Mappings larger than this are refused: a channel's data area is a few MiB.
const int64_t kLargestMapping = int64_t(1) << 30;
const unsigned kRequiredSeals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;

napi_value Fail(napi_env env, const char* code, const char* what) {
  char message[256];
  snprintf(message, sizeof message, "%s: %s", what, code);
  napi_throw_error(env, code, message);
  return nullptr;
}

napi_value FailErrno(napi_env env, int error, const char* what) {
  char message[256];
  snprintf(message, sizeof message, "%s: %s", what, strerror(error));
  // The errno's symbolic name is not in libc; the number is kept for the caller's message.
  char code[32];
  snprintf(code, sizeof code, "ERRNO_%d", error);
  napi_throw_error(env, code, message);
  return nullptr;
}

bool Args(napi_env env, napi_callback_info info, size_t want, napi_value* out) {
  size_t count = want;
  if (napi_get_cb_info(env, info, &count, out, nullptr, nullptr) != napi_ok || count != want) {
    napi_throw_type_error(env, "EINVAL", "wrong number of arguments");
    return false;
  }
  return true;
}

bool Int64Arg(napi_env env, napi_value value, int64_t* out) {
  napi_valuetype type;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_number || napi_get_value_int64(env, value, out) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "expected a number");
    return false;
  }
  return true;
}

// createSealed(size): a memfd of exactly `size` bytes that nobody can shrink or grow, so a peer
// that maps it can never be made to fault (SIGBUS) by a truncate from the other side.
napi_value CreateSealed(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int64_t size;
  if (!Args(env, info, 1, argv) || !Int64Arg(env, argv[0], &size)) return nullptr;
  if (size <= 0 || size > kLargestMapping) return Fail(env, "EINVAL", "createSealed: size out of range");
  int fd = memfd_create("vab-dm-user", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return FailErrno(env, errno, "memfd_create");
  if (ftruncate(fd, size) != 0 || fcntl(fd, F_ADD_SEALS, kRequiredSeals) != 0) {
    int error = errno;
    close(fd);
    return FailErrno(env, error, "sealing the memfd");
  }
  napi_value result;
  napi_create_int32(env, fd, &result);
  return result;
}

void Unmap(napi_env, void* data, void* hint) {
  munmap(data, reinterpret_cast<size_t>(hint));
}

// mapSealed(fd): maps the whole of a sealed memfd read-write and shared. Anything else (a plain
// file, a memfd that could still shrink) is refused before it is mapped.
napi_value MapSealed(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int64_t fd;
  if (!Args(env, info, 1, argv) || !Int64Arg(env, argv[0], &fd)) return nullptr;
  if (fd < 0 || fd > 0x7fffffff) return Fail(env, "EINVAL", "mapSealed: bad descriptor");
  int seals = fcntl(int(fd), F_GET_SEALS);
  if (seals < 0) return FailErrno(env, errno, "mapSealed: not a sealable memory file");
  if ((unsigned(seals) & (F_SEAL_SHRINK | F_SEAL_GROW)) != (F_SEAL_SHRINK | F_SEAL_GROW)) {
    return Fail(env, "EPERM", "mapSealed: the memory file can still change size");
  }
  struct stat st;
  if (fstat(int(fd), &st) != 0) return FailErrno(env, errno, "mapSealed: fstat");
  if (st.st_size <= 0 || st.st_size > kLargestMapping) return Fail(env, "EINVAL", "mapSealed: size out of range");
  size_t length = size_t(st.st_size);
  void* memory = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, int(fd), 0);
  if (memory == MAP_FAILED) return FailErrno(env, errno, "mmap");
  napi_value result;
  if (napi_create_external_arraybuffer(env, memory, length, Unmap, reinterpret_cast<void*>(length), &result) != napi_ok) {
    munmap(memory, length);
    return Fail(env, "ENOMEM", "mapSealed: cannot wrap the mapping");
  }
  return result;
}

// peerPid(fd): the pid of the process at the other end of a connected unix socket.
napi_value PeerPid(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int64_t fd;
  if (!Args(env, info, 1, argv) || !Int64Arg(env, argv[0], &fd)) return nullptr;
  if (fd < 0 || fd > 0x7fffffff) return Fail(env, "EINVAL", "peerPid: bad descriptor");
  struct ucred credentials;
  socklen_t size = sizeof credentials;
  if (getsockopt(int(fd), SOL_SOCKET, SO_PEERCRED, &credentials, &size) != 0) return FailErrno(env, errno, "SO_PEERCRED");
  napi_value result;
  napi_create_int32(env, credentials.pid, &result);
  return result;
}

// readCached(fd, buffer, offset, length, position): a pread that takes only what the page cache
// already holds (RWF_NOWAIT), so it never blocks on the disk. Returns the bytes read; 0 means none
// were cached (or the end of the file): the caller reads the rest without blocking its thread.
napi_value ReadCached(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  if (!Args(env, info, 5, argv)) return nullptr;
  int64_t fd, offset, length, position;
  if (!Int64Arg(env, argv[0], &fd) || !Int64Arg(env, argv[2], &offset) || !Int64Arg(env, argv[3], &length) || !Int64Arg(env, argv[4], &position)) return nullptr;
  bool isTypedArray = false;
  napi_is_typedarray(env, argv[1], &isTypedArray);
  if (!isTypedArray) return Fail(env, "EINVAL", "readCached: expected a Buffer");
  napi_typedarray_type type;
  size_t elements;
  void* data;
  if (napi_get_typedarray_info(env, argv[1], &type, &elements, &data, nullptr, nullptr) != napi_ok || type != napi_uint8_array) {
    return Fail(env, "EINVAL", "readCached: expected a Buffer");
  }
  if (fd < 0 || fd > 0x7fffffff || offset < 0 || length < 0 || position < 0 || uint64_t(offset) + uint64_t(length) > elements) {
    return Fail(env, "EINVAL", "readCached: range outside the buffer");
  }
  struct iovec vector = {static_cast<char*>(data) + offset, size_t(length)};
  ssize_t got;
  do {
    got = preadv2(int(fd), &vector, 1, off_t(position), RWF_NOWAIT);
  } while (got < 0 && errno == EINTR);
  // EAGAIN: not cached; EOPNOTSUPP: a file system without non-blocking reads. Both mean "none".
  if (got < 0 && (errno == EAGAIN || errno == EOPNOTSUPP)) got = 0;
  if (got < 0) return FailErrno(env, errno, "readCached: preadv2");
  napi_value result;
  napi_create_int64(env, got, &result);
  return result;
}

napi_value Init(napi_env env, napi_value exports) {
  const napi_property_descriptor functions[] = {
      {"createSealed", nullptr, CreateSealed, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"mapSealed", nullptr, MapSealed, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"peerPid", nullptr, PeerPid, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"readCached", nullptr, ReadCached, nullptr, nullptr, nullptr, napi_default, nullptr},
  };
  napi_define_properties(env, exports, sizeof functions / sizeof functions[0], functions);
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
