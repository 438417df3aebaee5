#include "io/file_system.h"

#include <liburing.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <string>

#include "io/errno_status.h"
#include "io/posix_file_system.h"
#include "io/uring_file_system.h"
#include "spool/logging.h"

namespace spool::io {
namespace {

// Overrides Backend::kAuto in NewFileSystem (see file_system.h).
constexpr char kBackendEnvVar[] = "SPOOL_IO_BACKEND";
// The sysctl that disables io_uring for all (2) or unprivileged (1) processes.
constexpr char kUringDisabledSysctl[] = "/proc/sys/kernel/io_uring_disabled";
// Entries of the ring that ProbeUring creates and closes.
constexpr unsigned kProbeRingEntries = 4;

// Why io_uring_setup may have failed with `err`, for the operator.
std::string UringSetupHint(int err) {
  switch (err) {
    case EPERM: {
      std::string hint = "; io_uring is refused by " + std::string(kUringDisabledSysctl);
      std::ifstream sysctl(kUringDisabledSysctl);
      int value = -1;
      if (sysctl >> value) hint += " (currently " + std::to_string(value) + ")";
      return hint + " or by a seccomp filter";
    }
    case ENOSYS:
      return "; the kernel has no io_uring, or a seccomp filter hides it";
    case ENOMEM:
      return "; RLIMIT_MEMLOCK may be too low for a ring (kernels before 5.12)";
    default:
      return "";
  }
}

}  // namespace

std::string_view OpKindName(OpKind kind) {
  switch (kind) {
    case OpKind::kOpen:
      return "open";
    case OpKind::kRead:
      return "read";
    case OpKind::kWrite:
      return "write";
    case OpKind::kSync:
      return "sync";
    case OpKind::kZeroFill:
      return "zero_fill";
    case OpKind::kTruncate:
      return "truncate";
    case OpKind::kRename:
      return "rename";
    case OpKind::kSyncDir:
      return "sync_dir";
    case OpKind::kUnlink:
      return "unlink";
    case OpKind::kCreateDir:
      return "create_dir";
    case OpKind::kListDir:
      return "list_dir";
    case OpKind::kSpace:
      return "space";
    case OpKind::kLock:
      return "lock";
    case OpKind::kCount:
      break;
  }
  return "unknown";
}

std::string_view BackendName(Backend backend) {
  switch (backend) {
    case Backend::kAuto:
      return "auto";
    case Backend::kUring:
      return "io_uring";
    case Backend::kPosix:
      return "posix";
  }
  return "unknown";
}

bool ParseBackend(std::string_view name, Backend* backend) {
  for (Backend b : {Backend::kAuto, Backend::kUring, Backend::kPosix}) {
    if (name == BackendName(b)) {
      *backend = b;
      return true;
    }
  }
  return false;
}

Status ProbeUring() {
  io_uring ring;
  const int ret = io_uring_queue_init(kProbeRingEntries, &ring, 0);
  if (ret < 0) {
    const Status status = ErrnoToStatus(-ret, "io_uring_setup", "");
    return Status(status.code(), std::string(status.message()) + UringSetupHint(-ret),
                  status.sys_errno());
  }
  io_uring_probe* probe = io_uring_get_probe_ring(&ring);
  io_uring_queue_exit(&ring);
  if (probe == nullptr) {
    return FailedPreconditionError(
        "io_uring cannot report its opcodes (IORING_REGISTER_PROBE needs Linux 5.6 or later)");
  }
  std::string missing;
  for (const auto& [op, name] :
       {std::pair{IORING_OP_WRITE, "IORING_OP_WRITE"}, std::pair{IORING_OP_READ, "IORING_OP_READ"},
        std::pair{IORING_OP_FSYNC, "IORING_OP_FSYNC"}}) {
    if (!io_uring_opcode_supported(probe, op)) {
      if (!missing.empty()) missing += ", ";
      missing += name;
    }
  }
  io_uring_free_probe(probe);
  if (!missing.empty()) return FailedPreconditionError("io_uring lacks " + missing);
  return Status::Ok();
}

StatusOr<std::unique_ptr<FileSystem>> NewFileSystem(Backend backend) {
  if (backend == Backend::kAuto) {
    const char* env = std::getenv(kBackendEnvVar);
    if (env != nullptr && *env != '\0' && !ParseBackend(env, &backend)) {
      return InvalidArgumentError(std::string(kBackendEnvVar) + "=" + env +
                                  ": expected posix, io_uring or auto");
    }
  }
  switch (backend) {
    case Backend::kPosix:
      return std::make_unique<PosixFileSystem>();
    case Backend::kUring: {
      Status probe = ProbeUring();
      if (!probe.ok()) return probe;
      return std::make_unique<UringFileSystem>();
    }
    case Backend::kAuto: {
      const Status probe = ProbeUring();
      if (probe.ok()) return std::make_unique<UringFileSystem>();
      Log(LogLevel::kWarning,
          "io_uring unavailable (" + probe.ToString() + "); using the posix backend");
      return std::make_unique<PosixFileSystem>();
    }
  }
  return InvalidArgumentError("unknown I/O backend " + std::to_string(static_cast<int>(backend)));
}

Status FileSystem::ReadBatch(File& file, std::span<ReadOp> ops) {
  for (ReadOp& op : ops) {
    SPOOL_RETURN_IF_ERROR(
        Read(file, op.offset, {static_cast<std::byte*>(op.data), op.size}, &op.bytes_read));
  }
  return Status::Ok();
}

}  // namespace spool::io
