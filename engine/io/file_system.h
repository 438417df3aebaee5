// The I/O layer: every byte the engine reads or writes goes through a FileSystem.
//
// Three implementations stand behind this one interface:
//   - io_uring (io/uring_file_system.h): batched writes linked to an fdatasync in one
//     submission; the default where the kernel allows io_uring;
//   - posix (io/posix_file_system.h): pwrite + fdatasync on the calling thread; chosen when
//     io_uring is refused (seccomp, io_uring_disabled, old kernel) or by option;
//   - fault (io/fault_file_system.h): wraps another FileSystem, fails chosen operations
//     and simulates power loss by dropping or tearing what was not yet synced.
//
// Durability, stated per call the way RocksDB's FileSystem does:
//   - WriteBatch(..., Sync::kNone): the bytes survive a process crash (they are in the page
//     cache, or on the device for a kDirect|kDsync file) but not necessarily a power loss.
//   - WriteBatch(..., Sync::kData) and SyncData(): on OK, the bytes written to that file so
//     far are on stable storage (fdatasync completed without error).
//   - Creating, renaming or unlinking a file survives a power loss only after SyncDir() of
//     its directory returned OK.
//   - After a failed write or sync, nothing written to that file since its last good sync
//     may be trusted (docs/durability.md, contract item 4): callers must not retry the sync
//     to clear the error.
//
// Errors: `-errno` becomes a Status in implementations of this interface and nowhere else
// (see io/errno_status.h): ENOSPC/EDQUOT -> kStorageFull; EACCES/EPERM/EROFS ->
// kPermission; anything else -> kIoError. Messages name the operation, the path and the
// errno; replies to SMTP clients never do (spool/smtp_reply.h).
//
// Thread-safety: a FileSystem is thread-safe. A File may be used by several threads at
// once for reads and for writes to disjoint ranges; the engine gives each file one writer.

#ifndef SPOOL_IO_FILE_SYSTEM_H_
#define SPOOL_IO_FILE_SYSTEM_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "spool/status.h"

namespace spool::io {

// The kinds of operation, for fault injection and counters.
enum class OpKind : int {
  kOpen = 0,   // Open(), including creation
  kRead,       // Read()
  kWrite,      // each WriteOp of a WriteBatch()
  kSync,       // the data sync of WriteBatch(kData) and SyncData()
  kZeroFill,   // ZeroFill()
  kTruncate,   // Truncate()
  kRename,     // Rename()
  kSyncDir,    // SyncDir()
  kUnlink,     // Unlink()
  kCreateDir,  // CreateDir()
  kListDir,    // ListDir()
  kSpace,      // GetSpace()
  kLock,       // LockFile()
  kCount,      // number of kinds; not an operation
};
inline constexpr int kOpKindCount = static_cast<int>(OpKind::kCount);

// "write", "sync", ... (stable names for logs and test output).
std::string_view OpKindName(OpKind kind);

struct OpenOptions {
  bool create = false;     // create the file if missing (O_CREAT, mode 0640)
  bool exclusive = false;  // with create: fail if it exists (O_EXCL)
  bool read_only = false;  // O_RDONLY; otherwise O_RDWR
  // O_DIRECT: offsets, lengths and buffers of writes and reads must be multiples of
  // kDirectIoAlignment (and buffers aligned to it).
  bool direct = false;
  // O_DSYNC: every completed write is durable (FUA or a device flush); Sync::kData is then
  // redundant but harmless.
  bool dsync = false;
};

inline constexpr size_t kDirectIoAlignment = 4096;

class File {
 public:
  virtual ~File() = default;
  File(const File&) = delete;
  File& operator=(const File&) = delete;

  const std::string& path() const { return path_; }
  const OpenOptions& options() const { return options_; }

 protected:
  File(std::string path, OpenOptions options) : path_(std::move(path)), options_(options) {}

 private:
  std::string path_;
  OpenOptions options_;
};

// One write of a batch. The memory must stay valid until WriteBatch returns.
struct WriteOp {
  uint64_t offset = 0;
  const void* data = nullptr;
  size_t size = 0;
};

// One read of a batch (FileSystem::ReadBatch). The memory must stay valid until
// ReadBatch returns.
struct ReadOp {
  uint64_t offset = 0;
  void* data = nullptr;
  size_t size = 0;
  size_t bytes_read = 0;  // set by ReadBatch: short only at end of file
};

enum class Sync {
  kNone,  // no sync after the writes
  kData,  // fdatasync after every write of the batch completed (linked on io_uring)
};

struct SpaceInfo {
  uint64_t bytes_total = 0;
  uint64_t bytes_free = 0;  // available to an unprivileged writer (f_bavail)
  uint64_t inodes_total = 0;
  uint64_t inodes_free = 0;  // f_favail
};

// An exclusive lock on a file, held until destroyed.
class FileLock {
 public:
  virtual ~FileLock() = default;
  const std::string& path() const { return path_; }

 protected:
  explicit FileLock(std::string path) : path_(std::move(path)) {}

 private:
  std::string path_;
};

class FileSystem {
 public:
  virtual ~FileSystem() = default;

  // "io_uring", "posix", "fault(io_uring)", ...
  virtual std::string_view Name() const = 0;

  // Opens (and with options.create, creates) `path`.
  virtual StatusOr<std::unique_ptr<File>> Open(const std::string& path,
                                               const OpenOptions& options) = 0;

  // Writes every op of `ops`, in any order, then with Sync::kData makes them durable.
  // Returns OK only if every byte of every op was written and, with kData, the sync
  // completed without error. Short writes are continued; on error the whole batch failed
  // and none of it may be trusted. REQUIRES: ops do not overlap.
  virtual Status WriteBatch(File& file, std::span<const WriteOp> ops, Sync sync) = 0;

  // fdatasync(file). On error, see the class comment: do not retry to clear it.
  virtual Status SyncData(File& file) = 0;

  // Reads up to out.size() bytes at `offset`; *bytes_read is short only at end of file.
  virtual Status Read(File& file, uint64_t offset, std::span<std::byte> out,
                      size_t* bytes_read) = 0;

  // Reads every op of `ops`, as Read does each, with as many of them in flight at once as
  // the backend allows (io_uring: a ring's worth; here: one after another), so that a
  // scan keeps the device busy. On error the contents of every op's buffer are unknown.
  // REQUIRES: for an O_DIRECT file, aligned offsets, sizes and buffers (OpenOptions).
  virtual Status ReadBatch(File& file, std::span<ReadOp> ops);

  // Current size of the file in bytes.
  virtual StatusOr<uint64_t> Size(File& file) = 0;

  // Writes zeros over [0, size) (real zero blocks, not fallocate's unwritten extents, so
  // that later overwrites need no metadata commit) and syncs the data.
  virtual Status ZeroFill(File& file, uint64_t size) = 0;

  // Sets the file's size and syncs it (the size change is metadata: fsync, not fdatasync).
  virtual Status Truncate(File& file, uint64_t size) = 0;

  // rename(2). Durable after SyncDir of both directories.
  virtual Status Rename(const std::string& from, const std::string& to) = 0;
  // fsync of a directory, making creations, renames and unlinks in it durable.
  virtual Status SyncDir(const std::string& dir) = 0;
  // unlink(2). Durable after SyncDir.
  virtual Status Unlink(const std::string& path) = 0;
  // mkdir(2) with mode 0750; OK if it already exists as a directory.
  virtual Status CreateDir(const std::string& path) = 0;
  // The names (not paths) of the entries of `dir`, without "." and "..", sorted.
  virtual StatusOr<std::vector<std::string>> ListDir(const std::string& dir) = 0;
  // True if `path` exists (any type). Errors other than ENOENT are returned.
  virtual StatusOr<bool> Exists(const std::string& path) = 0;
  // Free and total space and inodes of the filesystem holding `path`.
  virtual StatusOr<SpaceInfo> GetSpace(const std::string& path) = 0;

  // Takes an exclusive advisory lock on `path` (created if missing) for this open file
  // description: a second LockFile on the same path fails, from this process or another.
  // On success the file holds `holder` (say "pid 42 spool-smtpd") so that a failed attempt
  // can name the holder: it fails with kFailedPrecondition "... is held by pid 42 ...".
  virtual StatusOr<std::unique_ptr<FileLock>> LockFile(const std::string& path,
                                                       std::string_view holder) = 0;
};

enum class Backend {
  kAuto,   // io_uring if the kernel allows it, else posix (with a logged warning)
  kUring,  // io_uring or an error
  kPosix,  // pwrite + fdatasync
};

// "auto", "io_uring", "posix"; and the reverse (false for an unknown name).
std::string_view BackendName(Backend backend);
bool ParseBackend(std::string_view name, Backend* backend);

// Returns a new FileSystem of the given backend. With kAuto, probes io_uring (a ring and
// the opcodes the engine uses) and falls back to posix when the kernel refuses it
// (ENOSYS, EPERM from seccomp or kernel.io_uring_disabled), logging a warning.
// The environment variable SPOOL_IO_BACKEND=posix|io_uring|auto, when set and non-empty,
// replaces kAuto (only kAuto: an explicit kUring or kPosix wins); any other value makes
// this call fail with kInvalidArgument rather than silently pick a backend. kUring fails
// with the probe's error when io_uring is unavailable.
StatusOr<std::unique_ptr<FileSystem>> NewFileSystem(Backend backend = Backend::kAuto);

// Why io_uring cannot be used here, or OK if it can (the probe NewFileSystem uses).
Status ProbeUring();

}  // namespace spool::io

#endif  // SPOOL_IO_FILE_SYSTEM_H_
