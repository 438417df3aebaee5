#include "io/posix_file_system.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "io/errno_status.h"

namespace spool::io {
namespace {

constexpr mode_t kFileMode = 0640;
constexpr mode_t kDirMode = 0750;
// How much of a lock file is read to name its holder in an error message.
constexpr size_t kMaxHolderBytes = 256;

// open(2), retrying EINTR (possible while a signal arrives during a slow open).
int OpenRetry(const char* path, int flags, mode_t mode) {
  int fd;
  do {
    fd = ::open(path, flags, mode);
  } while (fd < 0 && errno == EINTR);
  return fd;
}

// Closes a descriptor whose close result cannot change any outcome (read-only use, an
// error path, or a lock that is being released).
void CloseIgnoringErrors(int fd) {
  // Not retried on EINTR: on Linux the descriptor is released even then.
  ::close(fd);
}

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};

// The lock returned by PosixFileSystem::LockFile: the lock lives as long as the open file
// description, so closing the descriptor releases it.
class PosixFileLock : public FileLock {
 public:
  PosixFileLock(std::string path, int fd) : FileLock(std::move(path)), fd_(fd) {}
  ~PosixFileLock() override { CloseIgnoringErrors(fd_); }

 private:
  const int fd_;
};

// Writes all `size` bytes of `data` at `offset` with pwrite(2): continues short writes,
// retries EINTR, and reports a write that makes no progress as EIO. Errors name `what`
// and `path`. Shared by WriteBatch, ZeroFill and LockFile.
Status PwriteFully(int fd, const void* data, size_t size, uint64_t offset, std::string_view what,
                   std::string_view path) {
  const auto* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::pwrite(fd, p, size, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoToStatus(errno, what, path);
    }
    // A regular file either makes progress or reports why not; zero bytes for a nonzero
    // length would loop forever, so it is an I/O error.
    if (n == 0) return ErrnoToStatus(EIO, what, path);
    p += n;
    size -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return Status::Ok();
}

}  // namespace

PosixFile::PosixFile(std::string path, OpenOptions options, int fd)
    : File(std::move(path), options), fd_(fd) {}

PosixFile::~PosixFile() { CloseIgnoringErrors(fd_); }

StatusOr<PosixFile*> PosixFileSystem::AsPosixFile(File& file) const {
  auto* posix = dynamic_cast<PosixFile*>(&file);
  if (posix == nullptr) {
    return InternalError(std::string(Name()) + " file system was handed " + file.path() +
                         ", which it did not open");
  }
  return posix;
}

StatusOr<std::unique_ptr<File>> PosixFileSystem::Open(const std::string& path,
                                                      const OpenOptions& options) {
  int flags = O_CLOEXEC | (options.read_only ? O_RDONLY : O_RDWR);
  if (options.create) {
    flags |= O_CREAT;
    if (options.exclusive) flags |= O_EXCL;
  }
  if (options.direct) flags |= O_DIRECT;
  if (options.dsync) flags |= O_DSYNC;
  const int fd = OpenRetry(path.c_str(), flags, kFileMode);
  if (fd < 0) return ErrnoToStatus(errno, "open", path);
  return std::unique_ptr<File>(std::make_unique<PosixFile>(path, options, fd));
}

Status PosixFileSystem::WriteBatch(File& file, std::span<const WriteOp> ops, Sync sync) {
  SPOOL_ASSIGN_OR_RETURN(PosixFile * posix, AsPosixFile(file));
  for (const WriteOp& op : ops) {
    SPOOL_RETURN_IF_ERROR(
        PwriteFully(posix->fd(), op.data, op.size, op.offset, "write", file.path()));
  }
  if (sync == Sync::kData) return SyncData(file);
  return Status::Ok();
}

Status PosixFileSystem::SyncData(File& file) {
  SPOOL_ASSIGN_OR_RETURN(PosixFile * posix, AsPosixFile(file));
  if (::fdatasync(posix->fd()) != 0) return ErrnoToStatus(errno, "fdatasync", file.path());
  return Status::Ok();
}

Status PosixFileSystem::Read(File& file, uint64_t offset, std::span<std::byte> out,
                             size_t* bytes_read) {
  *bytes_read = 0;
  SPOOL_ASSIGN_OR_RETURN(PosixFile * posix, AsPosixFile(file));
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::pread(posix->fd(), out.data() + done, out.size() - done,
                              static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      *bytes_read = done;
      return ErrnoToStatus(errno, "read", file.path());
    }
    if (n == 0) break;  // end of file
    done += static_cast<size_t>(n);
  }
  *bytes_read = done;
  return Status::Ok();
}

StatusOr<uint64_t> PosixFileSystem::Size(File& file) {
  SPOOL_ASSIGN_OR_RETURN(PosixFile * posix, AsPosixFile(file));
  struct stat st;
  if (::fstat(posix->fd(), &st) != 0) return ErrnoToStatus(errno, "fstat", file.path());
  return static_cast<uint64_t>(st.st_size);
}

Status PosixFileSystem::ZeroFill(File& file, uint64_t size) {
  SPOOL_ASSIGN_OR_RETURN(PosixFile * posix, AsPosixFile(file));
  if (size > 0) {
    // Aligned so that the same buffer serves O_DIRECT files.
    const size_t chunk = static_cast<size_t>(std::min<uint64_t>(
        kZeroFillChunkBytes,
        (size + kDirectIoAlignment - 1) / kDirectIoAlignment * kDirectIoAlignment));
    std::unique_ptr<void, FreeDeleter> zeros(std::aligned_alloc(kDirectIoAlignment, chunk));
    if (zeros == nullptr) return ErrnoToStatus(ENOMEM, "zerofill", file.path());
    std::memset(zeros.get(), 0, chunk);
    for (uint64_t offset = 0; offset < size;) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(chunk, size - offset));
      SPOOL_RETURN_IF_ERROR(
          PwriteFully(posix->fd(), zeros.get(), n, offset, "zerofill", file.path()));
      offset += n;
    }
  }
  if (::fdatasync(posix->fd()) != 0) return ErrnoToStatus(errno, "fdatasync", file.path());
  return Status::Ok();
}

Status PosixFileSystem::Truncate(File& file, uint64_t size) {
  SPOOL_ASSIGN_OR_RETURN(PosixFile * posix, AsPosixFile(file));
  int ret;
  do {
    ret = ::ftruncate(posix->fd(), static_cast<off_t>(size));
  } while (ret != 0 && errno == EINTR);
  if (ret != 0) return ErrnoToStatus(errno, "ftruncate", file.path());
  if (::fsync(posix->fd()) != 0) return ErrnoToStatus(errno, "fsync", file.path());
  return Status::Ok();
}

Status PosixFileSystem::Rename(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) {
    return ErrnoToStatus(errno, "rename", from + " -> " + to);
  }
  return Status::Ok();
}

Status PosixFileSystem::SyncDir(const std::string& dir) {
  const int fd = OpenRetry(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
  if (fd < 0) return ErrnoToStatus(errno, "open directory", dir);
  Status status;
  if (::fsync(fd) != 0) status = ErrnoToStatus(errno, "fsync directory", dir);
  CloseIgnoringErrors(fd);
  return status;
}

Status PosixFileSystem::Unlink(const std::string& path) {
  if (::unlink(path.c_str()) != 0) return ErrnoToStatus(errno, "unlink", path);
  return Status::Ok();
}

Status PosixFileSystem::CreateDir(const std::string& path) {
  if (::mkdir(path.c_str(), kDirMode) == 0) return Status::Ok();
  const int err = errno;
  if (err == EEXIST) {
    struct stat st;
    if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return Status::Ok();
  }
  return ErrnoToStatus(err, "mkdir", path);
}

StatusOr<std::vector<std::string>> PosixFileSystem::ListDir(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return ErrnoToStatus(errno, "opendir", dir);
  std::vector<std::string> names;
  int err = 0;
  while (true) {
    errno = 0;  // readdir reports errors only through errno
    const struct dirent* entry = ::readdir(d);
    if (entry == nullptr) {
      err = errno;
      break;
    }
    const std::string_view name(entry->d_name);
    if (name == "." || name == "..") continue;
    names.emplace_back(name);
  }
  ::closedir(d);
  if (err != 0) return ErrnoToStatus(err, "readdir", dir);
  std::sort(names.begin(), names.end());
  return names;
}

StatusOr<bool> PosixFileSystem::Exists(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) return true;
  if (errno == ENOENT) return false;
  return ErrnoToStatus(errno, "stat", path);
}

StatusOr<SpaceInfo> PosixFileSystem::GetSpace(const std::string& path) {
  struct statvfs vfs;
  if (::statvfs(path.c_str(), &vfs) != 0) return ErrnoToStatus(errno, "statvfs", path);
  SpaceInfo info;
  info.bytes_total = static_cast<uint64_t>(vfs.f_blocks) * vfs.f_frsize;
  info.bytes_free = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
  info.inodes_total = vfs.f_files;
  info.inodes_free = vfs.f_favail;
  return info;
}

StatusOr<std::unique_ptr<FileLock>> PosixFileSystem::LockFile(const std::string& path,
                                                              std::string_view holder) {
  const int fd = OpenRetry(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, kFileMode);
  if (fd < 0) return ErrnoToStatus(errno, "open lock file", path);
  int ret;
  do {
    ret = ::flock(fd, LOCK_EX | LOCK_NB);
  } while (ret != 0 && errno == EINTR);
  if (ret != 0) {
    const int err = errno;
    if (err != EWOULDBLOCK) {
      CloseIgnoringErrors(fd);
      return ErrnoToStatus(err, "flock", path);
    }
    // Held: name the holder from what it wrote. It may be empty for an instant while the
    // holder rewrites it, or unreadable; the error stays kFailedPrecondition either way.
    char buf[kMaxHolderBytes];
    const ssize_t n = ::pread(fd, buf, sizeof(buf), 0);
    CloseIgnoringErrors(fd);
    std::string who = n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
    while (!who.empty() && (who.back() == '\n' || who.back() == '\0')) who.pop_back();
    if (who.empty()) who = "another process (holder unknown)";
    return FailedPreconditionError("spool lock " + path + " is held by " + who);
  }
  // Ours. The holder text is for whoever fails next; the file is not synced because the
  // lock itself, not the text, is what excludes the other writer.
  auto lock = std::make_unique<PosixFileLock>(path, fd);
  do {
    ret = ::ftruncate(fd, 0);
  } while (ret != 0 && errno == EINTR);
  if (ret != 0) return ErrnoToStatus(errno, "ftruncate lock file", path);
  std::string text(holder);
  text += '\n';
  SPOOL_RETURN_IF_ERROR(PwriteFully(fd, text.data(), text.size(), 0, "write lock file", path));
  return std::unique_ptr<FileLock>(std::move(lock));
}

}  // namespace spool::io
