// The `files` engine: one file per message, the Postfix/Exim way, with plain POSIX calls
// (a baseline, deliberately not spool's I/O layer).
//
// Layout under <dir>/files-bench: incoming/ (being written), queue/0..f/ and
// deferred/0..f/ (hashed by id like Postfix's hash_queue_depth 1).
// Store:  open(incoming/ID, O_CREAT|O_EXCL) + write(envelope, body) + fsync + close,
//         rename to queue/H/ID, fsync(queue/H): the message and its name are durable.
// Remove: unlink(queue/H/ID); durable: + fsync(queue/H).
// Defer:  the next attempt becomes the file's mtime (Postfix's way), rename to
//         deferred/H/ID, fsync(deferred/H).
// Read:   open + read + close.
// Every fsync call is counted.

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

#include "bench/harness.h"
#include "io/errno_status.h"

namespace spool::bench {
namespace {

constexpr int kBuckets = 16;
constexpr int64_t kDeferSeconds = 4 * 3600;

class FilesEngine : public Engine {
 public:
  FilesEngine() {
    queue_fd_.fill(-1);
    deferred_fd_.fill(-1);
  }
  ~FilesEngine() override {
    for (int fd : queue_fd_) {
      if (fd >= 0) close(fd);
    }
    for (int fd : deferred_fd_) {
      if (fd >= 0) close(fd);
    }
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);  // scratch data
  }

  Status Open(const Config& c) {
    root_ = c.dir + "/files-bench";
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
    for (int b = 0; b < kBuckets; ++b) {
      for (const char* q : {"queue", "deferred"}) {
        std::filesystem::create_directories(Bucket(q, b), ec);
        if (ec) return IoError("mkdir " + Bucket(q, b) + ": " + ec.message());
      }
    }
    std::filesystem::create_directories(root_ + "/incoming", ec);
    if (ec) return IoError("mkdir " + root_ + "/incoming: " + ec.message());
    for (int b = 0; b < kBuckets; ++b) {
      queue_fd_[b] = open(Bucket("queue", b).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      deferred_fd_[b] = open(Bucket("deferred", b).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (queue_fd_[b] < 0 || deferred_fd_[b] < 0) {
        return io::ErrnoToStatus(errno, "open", Bucket("queue", b));
      }
    }
    envelope_ = "Ssender@example.org\nRrecipient@example.net\nQdefault\n";
    return Status::Ok();
  }

  std::string name() const override { return "files"; }

  StatusOr<Handle> Store(std::string_view body, int) override {
    const uint64_t id = next_.fetch_add(1);
    const std::string name = Name(id);
    const std::string tmp = root_ + "/incoming/" + name;
    const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return io::ErrnoToStatus(errno, "open", tmp);
    iovec iov[2] = {{const_cast<char*>(envelope_.data()), envelope_.size()},
                    {const_cast<char*>(body.data()), body.size()}};
    size_t left = envelope_.size() + body.size();
    int iovcnt = 2;
    iovec* v = iov;
    while (left > 0) {
      const ssize_t n = writev(fd, v, iovcnt);
      if (n < 0) {
        if (errno == EINTR) continue;
        const int err = errno;
        close(fd);
        return io::ErrnoToStatus(err, "write", tmp);
      }
      left -= static_cast<size_t>(n);
      for (size_t done = static_cast<size_t>(n); done > 0 && iovcnt > 0;) {
        const size_t step = std::min(done, v->iov_len);
        v->iov_base = static_cast<char*>(v->iov_base) + step;
        v->iov_len -= step;
        done -= step;
        if (v->iov_len == 0) ++v, --iovcnt;
      }
    }
    const int sync_rc = fsync(fd);
    const int sync_errno = errno;
    fsyncs_.fetch_add(1, std::memory_order_relaxed);
    close(fd);
    if (sync_rc != 0) return io::ErrnoToStatus(sync_errno, "fsync", tmp);
    const int b = BucketOf(id);
    const std::string path = Bucket("queue", b) + "/" + name;
    if (rename(tmp.c_str(), path.c_str()) != 0) return io::ErrnoToStatus(errno, "rename", tmp);
    SPOOL_RETURN_IF_ERROR(SyncDir(queue_fd_[b], "queue"));
    bytes_.fetch_add(envelope_.size() + body.size(), std::memory_order_relaxed);
    live_.fetch_add(static_cast<int64_t>(envelope_.size() + body.size()));
    return Handle{id, 0, body.size()};
  }

  Status Remove(const Handle& h, bool durable) override {
    const int b = BucketOf(h.a);
    const std::string path = Bucket("queue", b) + "/" + Name(h.a);
    if (unlink(path.c_str()) != 0) return io::ErrnoToStatus(errno, "unlink", path);
    live_.fetch_sub(static_cast<int64_t>(envelope_.size() + h.size));
    return durable ? SyncDir(queue_fd_[b], "queue") : Status::Ok();
  }

  StatusOr<uint64_t> Read(const Handle& h) override {
    const std::string path = Bucket("queue", BucketOf(h.a)) + "/" + Name(h.a);
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return io::ErrnoToStatus(errno, "open", path);
    thread_local std::string buf;
    buf.resize(envelope_.size() + h.size);
    size_t got = 0;
    while (got < buf.size()) {
      const ssize_t n = pread(fd, buf.data() + got, buf.size() - got, static_cast<off_t>(got));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        const int err = n < 0 ? errno : EIO;
        close(fd);
        return io::ErrnoToStatus(err, "read", path);
      }
      got += static_cast<size_t>(n);
    }
    close(fd);
    return got - envelope_.size();
  }

  Status Defer(const Handle& h) override {
    const int b = BucketOf(h.a);
    const std::string from = Bucket("queue", b) + "/" + Name(h.a);
    const std::string to = Bucket("deferred", b) + "/" + Name(h.a);
    timespec times[2];
    clock_gettime(CLOCK_REALTIME, &times[0]);
    times[1] = times[0];
    times[1].tv_sec += kDeferSeconds;
    if (utimensat(AT_FDCWD, from.c_str(), times, 0) != 0) {
      return io::ErrnoToStatus(errno, "utimensat", from);
    }
    if (rename(from.c_str(), to.c_str()) != 0) return io::ErrnoToStatus(errno, "rename", from);
    return SyncDir(deferred_fd_[b], "deferred");
  }

  EngineCounters Counters() override {
    return {static_cast<int64_t>(fsyncs_.load()), static_cast<int64_t>(bytes_.load())};
  }

  SpaceReport Space() override {
    SpaceReport r;
    r.used_bytes = DiskUsage(root_);
    r.live_bytes = live_.load();
    r.note = "bytes_per_fsync counts message bytes over file and directory fsyncs";
    return r;
  }

  std::string Describe() const override {
    return "file+fsync, rename, dir fsync (" + std::to_string(kBuckets) + " hashed dirs)";
  }

 private:
  std::string Bucket(const char* queue, int b) const {
    static const char kHex[] = "0123456789abcdef";
    return root_ + "/" + queue + "/" + kHex[b];
  }
  static int BucketOf(uint64_t id) {
    return static_cast<int>((id * 0x9E3779B97F4A7C15ull) >> 60) % kBuckets;
  }
  static std::string Name(uint64_t id) {
    char buf[17];
    std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(id));
    return buf;
  }
  Status SyncDir(int fd, const char* what) {
    fsyncs_.fetch_add(1, std::memory_order_relaxed);
    if (fsync(fd) != 0) return io::ErrnoToStatus(errno, "fsync directory", root_ + "/" + what);
    return Status::Ok();
  }

  std::string root_;
  std::string envelope_;
  std::array<int, kBuckets> queue_fd_;
  std::array<int, kBuckets> deferred_fd_;
  std::atomic<uint64_t> next_{1};
  std::atomic<uint64_t> fsyncs_{0};
  std::atomic<uint64_t> bytes_{0};
  std::atomic<int64_t> live_{0};
};

}  // namespace

StatusOr<std::unique_ptr<Engine>> NewFilesEngine(const Config& config) {
  auto e = std::make_unique<FilesEngine>();
  SPOOL_RETURN_IF_ERROR(e->Open(config));
  return std::unique_ptr<Engine>(std::move(e));
}

}  // namespace spool::bench
