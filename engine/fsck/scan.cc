#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include "fsck/shard_fsck.h"
#include "index/index.h"
#include "spool/spool.h"

namespace spool::fsck {

using internal::BatchCapacity;
using internal::IndexEntry;
using internal::kIndexDir;
using internal::kLockFile;
using internal::kLogDir;
using internal::kMarkerFile;

namespace {

// Buffered scans read ahead this many segments, in steps of this many bytes.
constexpr uint64_t kPrefetchSegments = 2;
constexpr size_t kPrefetchStep = 4u << 20;
// The progress callback runs after at least this many more bytes were scanned.
constexpr uint64_t kProgressStep = 32ull << 20;

// Who holds the flock on `path`, from /proc/locks, without taking it (taking it even for
// an instant could make a starting MTA fail). "" if nobody; "pid N" if someone does.
std::string FlockHolder(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return "";
  std::ifstream in("/proc/locks");
  char want[64];
  std::snprintf(want, sizeof(want), ":%" PRIu64, static_cast<uint64_t>(st.st_ino));
  for (std::string line; std::getline(in, line);) {
    // "1: FLOCK  ADVISORY  WRITE 4711 fd:01:1234567 0 EOF"
    std::istringstream fields(line);
    std::string num, type, advisory, mode, pid, dev_ino;
    fields >> num >> type;
    if (type == "->") fields >> type;  // a waiter
    fields >> advisory >> mode >> pid >> dev_ino;
    if (type != "FLOCK") continue;
    const size_t last = dev_ino.rfind(':');
    if (last == std::string::npos || dev_ino.substr(last) != want) continue;
    unsigned maj = 0, min = 0;
    if (std::sscanf(dev_ino.c_str(), "%x:%x:", &maj, &min) == 2 &&
        (maj != major(st.st_dev) || min != minor(st.st_dev))) {
      continue;
    }
    return "pid " + pid;
  }
  return "";
}

}  // namespace

Status ReadShardMarker(io::FileSystem* fs, const std::string& dir, internal::Marker* m) {
  SPOOL_ASSIGN_OR_RETURN(bool exists, fs->Exists(dir));
  if (!exists) return FailedPreconditionError(dir + " does not exist");
  const std::string path = dir + "/" + kMarkerFile;
  SPOOL_ASSIGN_OR_RETURN(exists, fs->Exists(path));
  if (!exists) return FailedPreconditionError(dir + " is not a spool (no " + path + ")");
  m->segment_size = Options().segment_size;
  return internal::ReadMarker(fs, dir, m);
}

void ShardFsck::CheckLock() {
  const std::string path = dir_ + "/" + kLockFile;
  std::string text = ReadSmallFile(path);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\0')) text.pop_back();
  const std::string holder = FlockHolder(path);
  if (repair_) {
    summary_.lock = "held by this spool-fsck";
    return;
  }
  if (!holder.empty()) {
    held_by_other_ = true;
    summary_.lock = "held by " + (text.empty() ? holder : text);
    Add("in_use", Severity::kWarning, 0, std::nullopt, "",
        "the spool is open for writing by " + (text.empty() ? holder : text) +
            "; checked read-only beside it (the newest segment and index may move meanwhile)");
    return;
  }
  if (!text.empty()) {
    summary_.lock = "stale (" + text + ")";
    Add("stale_lock", Severity::kNote, 0, std::nullopt, "",
        path + " names " + text +
            ", which holds no lock: harmless, the lock (flock) went with that process");
    return;
  }
  summary_.lock = "free";
}

log::LogOptions ShardFsck::LogOptionsFor(bool writable) const {
  log::LogOptions lo;
  lo.segment_size = marker_.segment_size;
  lo.batch_capacity = BatchCapacity(marker_.segment_size);
  lo.spool_id = marker_.spool_id;
  lo.shard = marker_.shard;
  lo.read_only = !writable;
  lo.direct_io = direct_io_;
  lo.ready_segments = 1;
  lo.replay_from = log::Location{};
  return lo;
}

Status ShardFsck::ScanSegmentHeaders() {
  const std::string log_dir = dir_ + "/" + kLogDir;
  SPOOL_ASSIGN_OR_RETURN(bool exists, fs_->Exists(log_dir));
  if (!exists) return Status::Ok();  // a spool that never stored anything
  SPOOL_ASSIGN_OR_RETURN(std::vector<std::string> names, fs_->ListDir(log_dir));
  std::vector<std::byte> block(log::kBlockSize);
  bool probed = false;
  for (const std::string& name : names) {
    uint32_t slot;
    if (!log::ParseSegmentFileName(name, &slot)) continue;
    const std::string path = log_dir + "/" + name;
    SPOOL_ASSIGN_OR_RETURN(auto f, fs_->Open(path, io::OpenOptions{.read_only = true}));
    SPOOL_ASSIGN_OR_RETURN(uint64_t size, fs_->Size(*f));
    summary_.segment_bytes += size;
    if (!probed) {
      // O_DIRECT where the filesystem has it: the log's scan then reads several pieces
      // in flight straight from the device into its window, with no copy through the page
      // cache (at the disk's speed), and beside a running writer its reads never leave
      // stale pages behind its direct writes. Buffered reads (tmpfs) get a read-ahead
      // thread instead.
      probed = true;
      direct_io_ = fs_->Open(path, io::OpenOptions{.read_only = true, .direct = true}).ok();
    }
    size_t got = 0;
    std::fill(block.begin(), block.end(), std::byte{0});
    SPOOL_RETURN_IF_ERROR(fs_->Read(*f, 0, block, &got));
    log::SegmentHeader h{};
    const log::SegmentHeaderState st = got < log::kBlockSize
                                           ? log::SegmentHeaderState::kBad
                                           : log::DecodeSegmentHeader(block.data(), &h);
    if (st == log::SegmentHeaderState::kNewVersion) {
      return FailedPreconditionError(
          path + " was written by format version " + std::to_string(h.format_version) +
          ", newer than this build's " + std::to_string(log::kFormatVersion) +
          " (use a newer spool-fsck; nothing was changed)");
    }
    if (st == log::SegmentHeaderState::kValid) {
      if (seg_path_.count(h.seq) != 0) {
        return CorruptionError("two segments claim sequence " + std::to_string(h.seq) + ": " +
                               seg_path_[h.seq] + " and " + path);
      }
      seg_path_[h.seq] = path;
      seg_size_[h.seq] = size;
    }
    if (size != marker_.segment_size && st != log::SegmentHeaderState::kFree) {
      short_files_.emplace_back(path, size);
    }
  }
  return Status::Ok();
}

void ShardFsck::OpenIndex() {
  const std::string path = dir_ + "/" + kIndexDir;
  StatusOr<bool> exists = fs_->Exists(path);
  if (exists.ok() && !*exists) {
    index_error_ = "the index " + path + " is missing";
    return;
  }
  StatusOr<std::unique_ptr<index::Index>> index = index::Index::Open(path, /*read_only=*/true);
  if (!index.ok()) {
    index_error_ = std::string(index.status().message());
    return;
  }
  StatusOr<log::Location> cp = (*index)->Checkpoint();
  if (!cp.ok()) {
    index_error_ = std::string(cp.status().message());
    return;
  }
  checkpoint_ = *cp;
  Status s = (*index)->ForEach([&](const MessageId& id, const IndexEntry& e) {
    IndexEntry copy = e;
    copy.info.id = id;
    indexed_.emplace(internal::IdKey(id), std::move(copy));
    return true;
  });
  if (!s.ok()) {
    index_error_ = std::string(s.message());
    indexed_.clear();
    return;
  }
  index_readable_ = true;
  summary_.checkpoint_segment = checkpoint_.segment;
  summary_.checkpoint_offset = checkpoint_.offset;
}

Status ShardFsck::ScanLog(bool writable, std::unique_ptr<log::Log>* out) {
  records_.clear();
  offsets_.clear();
  model_ = Model();
  log_end_ = {};
  recovery_ = {};
  std::map<uint64_t, uint64_t> before;  // seq -> bytes of the segments scanned before it
  uint64_t sum = 0;
  for (const auto& [seq, size] : seg_size_) {
    before[seq] = sum;
    sum += size;
  }
  // Buffered reads get a read-ahead thread that keeps the next segments coming from the
  // disk while this one is hashed: the scan then runs at the disk's sequential speed.
  std::atomic<uint64_t> scanning{0};
  std::atomic<bool> stop{false};
  std::thread prefetcher;
  if (!direct_io_) {
    prefetcher = std::thread([&] {
      for (const auto& [seq, path] : seg_path_) {
        while (!stop.load() && seq > scanning.load() + kPrefetchSegments) {
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        if (stop.load()) return;
        const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;  // the scan reports what it cannot read
        ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        const uint64_t size = seg_size_[seq];
        for (uint64_t off = 0; off < size && !stop.load(); off += kPrefetchStep) {
          ::readahead(fd, static_cast<off_t>(off), kPrefetchStep);
        }
        ::close(fd);
      }
    });
  }
  auto visitor = [&](const log::Record& r) -> Status {
    const log::Location& loc = r.location;
    if (loc.segment != scanning.load(std::memory_order_relaxed)) scanning.store(loc.segment);
    records_[{loc.segment, loc.offset}] = RecInfo{r.id, r.type, loc.size};
    offsets_[loc.segment].push_back(loc.offset);
    if (!Before({loc.segment, loc.offset + loc.size, 0}, log_end_)) {
      log_end_ = {loc.segment, loc.offset + loc.size, 0};
    }
    bool duplicate = false;
    Status undecodable;
    model_.Apply(r, &duplicate, &undecodable);
    const std::string id = MessageId(r.id.hi, r.id.lo).ToString();
    if (!writable && duplicate) {
      Add("duplicate_id", Severity::kError, loc.segment, loc.offset, id,
          "a second original record of message " + id + " at " + LocText(loc.segment, loc.offset) +
              " (ids are unique: copied or forged bytes)");
    }
    if (!writable && !undecodable.ok()) {
      Add("bad_payload", Severity::kError, loc.segment, loc.offset, id,
          "intact record of type " + std::string(log::RecordTypeName(r.type)) +
              " does not decode: " + std::string(undecodable.message()));
    }
    if (options_.progress) {
      auto it = before.find(loc.segment);
      const uint64_t done = *progress_base_ + (it == before.end() ? 0 : it->second) + loc.offset;
      if (done >= progress_reported_ + kProgressStep) {
        progress_reported_ = done;
        options_.progress(std::min(done, progress_total_), progress_total_);
      }
    }
    return Status::Ok();
  };
  log::LogOptions lo = LogOptionsFor(writable);
  if (writable) SPOOL_RETURN_IF_ERROR(fs_->CreateDir(dir_ + "/" + kLogDir));
  StatusOr<std::unique_ptr<log::Log>> log =
      log::Log::Open(fs_, dir_ + "/" + kLogDir, lo, visitor, &recovery_);
  stop.store(true);
  if (prefetcher.joinable()) prefetcher.join();
  if (!log.ok()) return log.status();
  for (auto& [seq, offs] : offsets_) std::sort(offs.begin(), offs.end());
  live_segments_.clear();
  for (uint64_t seq : (*log)->LiveSegments()) live_segments_.insert(seq);
  if (!writable) {
    newest_segment_ = live_segments_.empty() ? 0 : *live_segments_.rbegin();
    *progress_base_ += sum;
  }
  *out = std::move(log).value();
  return Status::Ok();
}

}  // namespace spool::fsck
