// The portable FileSystem: open(2), pwrite(2) + fdatasync(2) on the calling thread.
//
// It is also the base of the io_uring backend (io/uring_file_system.h), which inherits
// everything that is not on the data path (open, size, zero-fill, truncate, directories,
// space, locks) and overrides only WriteBatch, SyncData and Read.

#ifndef SPOOL_IO_POSIX_FILE_SYSTEM_H_
#define SPOOL_IO_POSIX_FILE_SYSTEM_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "io/file_system.h"
#include "spool/status.h"

namespace spool::io {

// A file opened by PosixFileSystem (or a subclass): owns the file descriptor and closes it
// on destruction. A close(2) error is ignored on purpose: durability is decided by the
// syncs that returned before, never by close.
//
// Thread-safety: as File (reads and disjoint writes from several threads at once).
class PosixFile : public File {
 public:
  // Takes ownership of `fd`. REQUIRES: fd >= 0.
  PosixFile(std::string path, OpenOptions options, int fd);
  ~PosixFile() override;

  int fd() const { return fd_; }

 private:
  const int fd_;
};

// Thread-safe: holds no mutable state; every call works on its own descriptors.
class PosixFileSystem : public FileSystem {
 public:
  PosixFileSystem() = default;
  ~PosixFileSystem() override = default;

  std::string_view Name() const override { return "posix"; }

  // The file is opened with O_CLOEXEC, created with mode 0640. options.exclusive is
  // ignored without options.create (O_EXCL alone is undefined for regular files).
  StatusOr<std::unique_ptr<File>> Open(const std::string& path,
                                       const OpenOptions& options) override;

  // One pwrite loop per op (short writes continued, EINTR retried), then fdatasync for
  // Sync::kData. Stops at the first failing op: the batch then failed as a whole.
  Status WriteBatch(File& file, std::span<const WriteOp> ops, Sync sync) override;
  // fdatasync. EINTR is reported, not retried: a sync is never repeated to clear an error.
  Status SyncData(File& file) override;
  Status Read(File& file, uint64_t offset, std::span<std::byte> out, size_t* bytes_read) override;
  StatusOr<uint64_t> Size(File& file) override;
  // pwrite of zero blocks (kZeroFillChunkBytes at a time), then fdatasync. Does not shrink
  // a longer file. REQUIRES for a direct file: size is a multiple of kDirectIoAlignment.
  Status ZeroFill(File& file, uint64_t size) override;
  // ftruncate, then fsync (the size is metadata).
  Status Truncate(File& file, uint64_t size) override;

  Status Rename(const std::string& from, const std::string& to) override;
  Status SyncDir(const std::string& dir) override;
  Status Unlink(const std::string& path) override;
  Status CreateDir(const std::string& path) override;
  StatusOr<std::vector<std::string>> ListDir(const std::string& dir) override;
  StatusOr<bool> Exists(const std::string& path) override;
  StatusOr<SpaceInfo> GetSpace(const std::string& path) override;
  // flock(LOCK_EX | LOCK_NB) on an open file description of `path` (so a second LockFile
  // fails even in the same process); the holder text is written into the file, without a
  // sync (it is advice for the operator, not state).
  StatusOr<std::unique_ptr<FileLock>> LockFile(const std::string& path,
                                               std::string_view holder) override;

  // Zeros written per pwrite by ZeroFill.
  static constexpr size_t kZeroFillChunkBytes = size_t{1} << 20;

 protected:
  // The PosixFile behind `file`, or kInternal if `file` was opened by another FileSystem
  // (handing a file to a FileSystem that did not open it is a bug in the caller).
  StatusOr<PosixFile*> AsPosixFile(File& file) const;
};

}  // namespace spool::io

#endif  // SPOOL_IO_POSIX_FILE_SYSTEM_H_
