#include "fsck/fsck.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <thread>
#include <tuple>
#include <unordered_map>

#include "core/layout.h"
#include "index/codec.h"
#include "index/index.h"
#include "index/replay.h"
#include "io/file_system.h"
#include "log/log.h"
#include "log/record.h"
#include "spool/logging.h"
#include "spool/metrics.h"
#include "spool/spool.h"

namespace spool::fsck {
namespace {

using internal::IndexEntry;

// The shard layout, as the spool writes it.
using internal::BatchCapacity;
using internal::kIndexDir;
using internal::kLockFile;
using internal::kLogDir;
using internal::kMarkerFile;
using internal::Marker;

// Damage a repair has dealt with (the messages it hit are quarantined): one range of a
// segment per line. Later checks report damage inside these ranges as known, not as an
// error. Segment numbers are never reused in a shard, so a line outlives nothing.
constexpr char kDamageFile[] = "DAMAGE";
constexpr char kDamageHeader[] = "spool-fsck known damage, format 1";
// Index writes of a repair go in batches of this many operations.
constexpr int kIndexBatchOps = 1024;
// Buffered scans read ahead this many segments, in steps of this many bytes.
constexpr uint64_t kPrefetchSegments = 2;
constexpr size_t kPrefetchStep = 4u << 20;
// The progress callback runs after at least this many more bytes were scanned.
constexpr uint64_t kProgressStep = 32ull << 20;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string LocText(uint64_t segment, uint64_t offset) {
  return "segment " + std::to_string(segment) + " offset " + std::to_string(offset);
}

// Reads a shard's SPOOL marker; a shard that names no segment size has the default one.
Status ReadShardMarker(io::FileSystem* fs, const std::string& dir, Marker* m) {
  SPOOL_ASSIGN_OR_RETURN(bool exists, fs->Exists(dir));
  if (!exists) return FailedPreconditionError(dir + " does not exist");
  const std::string path = dir + "/" + kMarkerFile;
  SPOOL_ASSIGN_OR_RETURN(exists, fs->Exists(path));
  if (!exists) return FailedPreconditionError(dir + " is not a spool (no " + path + ")");
  m->segment_size = Options().segment_size;
  return internal::ReadMarker(fs, dir, m);
}

std::string ReadSmallFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

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

// What the scan knows about an intact record.
struct RecInfo {
  log::RecordId id;
  log::RecordType type = log::RecordType::kMessage;
  uint32_t size = 0;
};

struct PairHash {
  size_t operator()(const std::pair<uint64_t, uint64_t>& p) const {
    return static_cast<size_t>(p.first * 0x9E3779B97F4A7C15ull ^ p.second);
  }
};

// A damaged stretch of a segment: [begin, end).
struct Range {
  uint64_t segment = 0, begin = 0, end = 0;
  friend bool operator<(const Range& a, const Range& b) {
    return std::tie(a.segment, a.begin, a.end) < std::tie(b.segment, b.begin, b.end);
  }
  friend bool operator==(const Range&, const Range&) = default;
};

std::set<Range> LoadKnownDamage(const std::string& dir) {
  std::set<Range> out;
  std::istringstream in(ReadSmallFile(dir + "/" + kDamageFile));
  std::string line;
  if (!std::getline(in, line) || line != kDamageHeader) return out;
  for (; std::getline(in, line);) {
    Range r;
    if (std::sscanf(line.c_str(), "%" SCNu64 " %" SCNu64 " %" SCNu64, &r.segment, &r.begin,
                    &r.end) == 3) {
      out.insert(r);
    }
  }
  return out;
}

// Replaces the DAMAGE file atomically (temporary file, sync, rename, directory sync).
Status WriteKnownDamage(io::FileSystem* fs, const std::string& dir, const std::set<Range>& ranges) {
  const std::string path = dir + "/" + kDamageFile;
  if (ranges.empty()) {
    SPOOL_ASSIGN_OR_RETURN(bool exists, fs->Exists(path));
    if (!exists) return Status::Ok();
    SPOOL_RETURN_IF_ERROR(fs->Unlink(path));
    return fs->SyncDir(dir);
  }
  std::string text = std::string(kDamageHeader) + "\n";
  for (const Range& r : ranges) {
    text += std::to_string(r.segment) + " " + std::to_string(r.begin) + " " +
            std::to_string(r.end) + "\n";
  }
  const std::string tmp = path + ".tmp";
  {
    SPOOL_ASSIGN_OR_RETURN(auto f, fs->Open(tmp, io::OpenOptions{.create = true}));
    SPOOL_RETURN_IF_ERROR(fs->Truncate(*f, 0));
    io::WriteOp op{0, text.data(), text.size()};
    SPOOL_RETURN_IF_ERROR(fs->WriteBatch(*f, {&op, 1}, io::Sync::kData));
  }
  SPOOL_RETURN_IF_ERROR(fs->Rename(tmp, path));
  return fs->SyncDir(dir);
}

// The log replayed into an in-memory index from its first record, by the rules of the
// spool's open (internal::ReplayRecord).
class Model {
 public:
  // Applies one intact record. Sets *duplicate when an original (not relocated) message
  // record names an id that is already live, and *undecodable when its payload does not
  // decode.
  void Apply(const log::Record& r, bool* duplicate, Status* undecodable) {
    if (!internal::ChangesIndexEntry(r.type)) return;
    const std::string key = internal::IdKey(MessageId(r.id.hi, r.id.lo));
    auto it = live.find(key);
    std::optional<IndexEntry> current;
    if (it != live.end()) {
      current = it->second;
    } else if (r.type == log::RecordType::kStateUpdate) {
      return;  // removed later on, or relocated from a recycled segment
    }
    StatusOr<std::optional<IndexEntry>> next = internal::ReplayRecord(r, std::move(current));
    if (!next.ok()) {
      *undecodable = next.status();
      return;
    }
    if (it != live.end() && internal::IsOriginalMessage(r)) *duplicate = true;
    if (*next) {
      live[key] = std::move(**next);
    } else if (it != live.end()) {
      live.erase(it);
    }
    if (r.type == log::RecordType::kRemove) removed.insert(key);
    last_touch[key] = r.location;
  }

  std::map<std::string, IndexEntry> live;  // by IdKey: the index's order
  std::unordered_map<std::string, log::Location> last_touch;
  std::set<std::string> removed;
};

bool Before(const log::Location& a, const log::Location& b) {
  return a.segment < b.segment || (a.segment == b.segment && a.offset < b.offset);
}

// Checks and repairs one shard.
class ShardFsck {
 public:
  ShardFsck(io::FileSystem* fs, const FsckOptions& options, const std::string& dir,
            uint32_t ordinal, Report* report, uint64_t* progress_base, uint64_t progress_total)
      : fs_(fs),
        options_(options),
        repair_(options.repair || options.rebuild_index),
        dir_(dir),
        report_(report),
        progress_base_(progress_base),
        progress_total_(progress_total) {
    summary_.dir = dir;
    summary_.shard = ordinal;
  }

  void Run();
  ShardSummary summary() const { return summary_; }

 private:
  // Adds a problem; returns its index in the report.
  size_t Add(std::string kind, Severity severity, uint64_t segment, std::optional<uint64_t> offset,
             const std::string& id, std::string detail) {
    Problem p;
    p.kind = std::move(kind);
    p.severity = severity;
    p.dir = dir_;
    p.shard = summary_.shard;
    p.segment = segment;
    if (auto it = seg_path_.find(segment); segment != 0 && it != seg_path_.end()) {
      p.path = it->second;
    }
    p.has_offset = offset.has_value();
    p.offset = offset.value_or(0);
    p.id = id;
    p.detail = std::move(detail);
    report_->problems.push_back(std::move(p));
    return report_->problems.size() - 1;
  }
  void Corrected(size_t problem, std::string action) {
    if (problem >= report_->problems.size()) return;  // not reported (planned again)
    report_->problems[problem].corrected = true;
    report_->problems[problem].action = std::move(action);
  }
  void Operational(const Status& s) {
    Add("cannot_open", Severity::kError, 0, std::nullopt, "", std::string(s.message()));
    report_->operational_error = true;
  }

  void CheckLock();
  Status ScanSegmentHeaders();
  void OpenIndex();
  Status ScanLog(bool writable, std::unique_ptr<log::Log>* log);
  void AnalyzeDamage();
  void AnalyzeIndex();
  Status Repair();

  enum class LocState { kIntact, kDamaged, kMissingSegment, kNothing };
  LocState CheckLocation(const log::Location& loc, const log::RecordId& id,
                         log::RecordType type) const;
  // Whether all records of `e` are intact; otherwise the worst state found.
  LocState CheckBody(const IndexEntry& e) const;
  // A quarantine entry for `id` from the best source: the index, the replay, or the
  // damaged record itself.
  IndexEntry QuarantineEntry(const MessageId& id, const IndexEntry* indexed,
                             const IndexEntry* replayed, const log::Location* damaged) const;
  void AddQuarantine(IndexEntry entry, std::optional<IndexEntry> old, size_t problem);
  log::LogOptions LogOptionsFor(bool writable) const;

  io::FileSystem* const fs_;
  const FsckOptions& options_;
  const bool repair_;
  const std::string dir_;
  Report* const report_;
  uint64_t* const progress_base_;
  const uint64_t progress_total_;
  ShardSummary summary_;

  Marker marker_;
  bool held_by_other_ = false;
  bool direct_io_ = false;
  std::map<uint64_t, std::string> seg_path_;  // seq -> file, for valid segment headers
  std::map<uint64_t, uint64_t> seg_size_;     // seq -> file size
  std::vector<std::pair<std::string, uint64_t>> short_files_;  // path, size

  // The index as read at the start.
  bool index_readable_ = false;
  std::string index_error_;
  log::Location checkpoint_;
  std::map<std::string, IndexEntry> indexed_;

  // The log scan.
  std::unordered_map<std::pair<uint64_t, uint64_t>, RecInfo, PairHash> records_;
  std::map<uint64_t, std::vector<uint64_t>> offsets_;  // seq -> sorted record offsets
  std::set<uint64_t> live_segments_;
  log::RecoveryReport recovery_;
  Model model_;
  log::Location log_end_;
  uint64_t newest_segment_ = 0;
  uint64_t last_end_newest_ = 0;  // end of the last record of the newest segment
  std::optional<uint64_t> torn_at_;
  std::vector<Range> damage_;                                          // this run's damaged ranges
  std::set<Range> known_;                                              // from the DAMAGE file
  std::map<std::pair<uint64_t, uint64_t>, log::RecordId> damage_ids_;  // (seq, offset) -> id

  // Repair plan.
  struct Fix {
    enum class Kind { kQuarantine, kPut, kDelete } kind;
    IndexEntry entry;
    std::optional<IndexEntry> old;
    size_t problem;
  };
  std::vector<Fix> fixes_;
  std::set<std::string> quarantined_keys_;
  std::optional<size_t> torn_problem_;
  std::vector<size_t> damage_problems_;
  std::map<uint64_t, uint64_t> truncated_;  // seq -> file size before any repair
  std::optional<size_t> checkpoint_problem_;
  std::optional<size_t> index_problem_;
  std::vector<size_t> missing_problems_;
  uint64_t progress_reported_ = 0;
};

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
      // Beside a running writer, read segments the way it writes them: O_DIRECT where the
      // filesystem has it, so that buffered reads racing its direct writes never leave
      // stale pages behind. Without a writer, buffered reads with read-ahead are faster.
      probed = true;
      direct_io_ = held_by_other_ &&
                   fs_->Open(path, io::OpenOptions{.read_only = true, .direct = true}).ok();
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

ShardFsck::LocState ShardFsck::CheckLocation(const log::Location& loc, const log::RecordId& id,
                                             log::RecordType type) const {
  auto it = records_.find({loc.segment, loc.offset});
  if (it != records_.end() && it->second.id == id && it->second.type == type &&
      it->second.size == loc.size) {
    return LocState::kIntact;
  }
  if (live_segments_.count(loc.segment) == 0) return LocState::kMissingSegment;
  for (const Range& r : damage_) {
    if (r.segment == loc.segment && loc.offset + loc.size > r.begin && loc.offset < r.end) {
      return LocState::kDamaged;
    }
  }
  for (const Range& r : known_) {
    if (r.segment == loc.segment && loc.offset + loc.size > r.begin && loc.offset < r.end) {
      return LocState::kDamaged;
    }
  }
  if (auto s = seg_size_.find(loc.segment);
      s != seg_size_.end() && loc.offset + loc.size > s->second) {
    return LocState::kDamaged;  // past the end of a truncated file
  }
  if (torn_at_ && loc.segment == newest_segment_ && loc.offset + loc.size > *torn_at_) {
    return LocState::kDamaged;  // indexed, so acknowledged: not a torn tail after all
  }
  return LocState::kNothing;
}

ShardFsck::LocState ShardFsck::CheckBody(const IndexEntry& e) const {
  const log::RecordId rid{e.info.id.time(), e.info.id.tag()};
  LocState worst = CheckLocation(
      e.main, rid, e.chunked() ? log::RecordType::kCommit : log::RecordType::kMessage);
  // A streamed message's commit record may also be a whole message record when it was
  // written inline; chunks decide.
  if (worst != LocState::kIntact) return worst;
  for (const log::Location& c : e.chunks) {
    LocState s = CheckLocation(c, rid, log::RecordType::kBodyChunk);
    if (s != LocState::kIntact) return s;
  }
  return LocState::kIntact;
}

void ShardFsck::AnalyzeDamage() {
  torn_at_.reset();
  damage_.clear();
  for (const log::Damage& d : recovery_.damage) {
    Range r{d.segment, d.offset, 0};
    if (d.segment != 0) {
      auto it = seg_size_.find(d.segment);
      r.end = it == seg_size_.end() ? d.offset + log::kBlockSize : it->second;
      auto offs = offsets_.find(d.segment);
      if (offs != offsets_.end()) {
        auto next = std::upper_bound(offs->second.begin(), offs->second.end(), d.offset);
        if (next != offs->second.end()) r.end = *next;
      }
      damage_.push_back(r);
    }
    if (d.id.hi != 0 || d.id.lo != 0) damage_ids_[{d.segment, d.offset}] = d.id;
    bool known = false;
    for (const Range& k : known_) {
      known |= k.segment == r.segment && d.offset >= k.begin && d.offset < k.end;
    }
    std::string id;
    if (d.id.hi != 0 || d.id.lo != 0) id = MessageId(d.id.hi, d.id.lo).ToString();
    if (known) {
      Add("known_damage", Severity::kNote, d.segment, d.offset, id,
          d.detail + " (dealt with by an earlier repair)");
      continue;
    }
    damage_problems_.push_back(Add(d.kind, Severity::kError, d.segment, d.offset, id,
                                   d.detail.empty() ? d.kind : d.detail));
  }
  // What a truncated file lost, from the end of its last intact record before the cut.
  for (const auto& [seq, size] : truncated_) {
    uint64_t begin = log::kSegmentDataStart;
    auto offs = offsets_.find(seq);
    if (offs != offsets_.end()) {
      for (uint64_t off : offs->second) {
        const uint64_t end = off + records_.at({seq, off}).size;
        if (end <= size) begin = std::max(begin, end);
      }
    }
    damage_.push_back({seq, begin, std::max(size, marker_.segment_size)});
  }
  if (recovery_.torn_tail_bytes > 0 && newest_segment_ != 0) {
    // The log reports how many bytes, not where: the tear starts after the newest
    // segment's last intact record (at the next block, where a batch ended).
    uint64_t last = log::kSegmentDataStart;
    auto offs = offsets_.find(newest_segment_);
    if (offs != offsets_.end() && !offs->second.empty()) {
      const uint64_t off = offs->second.back();
      last = off + records_.at({newest_segment_, off}).size;
    }
    torn_at_ = last;
    torn_problem_ = Add("torn_tail", held_by_other_ ? Severity::kWarning : Severity::kError,
                        newest_segment_, last, "",
                        std::to_string(recovery_.torn_tail_bytes) +
                            " bytes of an unacknowledged write cut short at the end of the log" +
                            (held_by_other_ ? " (or the writer's batch in flight)" : ""));
  }
}

IndexEntry ShardFsck::QuarantineEntry(const MessageId& id, const IndexEntry* indexed,
                                      const IndexEntry* replayed,
                                      const log::Location* damaged) const {
  IndexEntry e;
  if (indexed != nullptr) {
    e = *indexed;
  } else if (replayed != nullptr) {
    e = *replayed;
  } else if (damaged != nullptr) {
    // Salvage the envelope from the damaged record: its header is intact (we know the
    // id), the payload failed its checksum, so decode what decodes.
    e.main = *damaged;
    auto path = seg_path_.find(damaged->segment);
    if (path != seg_path_.end()) {
      StatusOr<std::unique_ptr<io::File>> f =
          fs_->Open(path->second, io::OpenOptions{.read_only = true});
      std::string buf(damaged->size, '\0');
      size_t got = 0;
      if (f.ok() &&
          fs_->Read(**f, damaged->offset, {reinterpret_cast<std::byte*>(buf.data()), buf.size()},
                    &got)
              .ok() &&
          got > sizeof(log::RecordHeader)) {
        log::RecordHeader h;
        std::memcpy(&h, buf.data(), sizeof(h));
        std::string_view payload(buf.data() + sizeof(h),
                                 std::min<size_t>(h.payload_size, got - sizeof(h)));
        const size_t whole = payload.size();
        MessageInfo info;
        Status s = h.type == static_cast<uint8_t>(log::RecordType::kCommit)
                       ? internal::DecodeCommit(payload, &info, &e.chunks)
                       : internal::DecodeEnvelope(&payload, &info);
        if (s.ok()) {
          e.info = info;
          if (h.type == static_cast<uint8_t>(log::RecordType::kMessage)) {
            e.body_offset = static_cast<uint32_t>(whole - payload.size());
          }
        } else {
          e.chunks.clear();
        }
      }
    }
    if (e.info.arrival_ms == 0) e.info.arrival_ms = static_cast<int64_t>(id.micros() / 1000);
    e.info.recipient_status.assign(e.info.envelope.recipients.size(), RecipientStatus::kPending);
    e.info.next_attempt_ms = e.info.arrival_ms;
  }
  e.info.id = id;
  e.info.state = MessageState::kCorrupt;
  return e;
}

void ShardFsck::AddQuarantine(IndexEntry entry, std::optional<IndexEntry> old, size_t problem) {
  quarantined_keys_.insert(internal::IdKey(entry.info.id));
  fixes_.push_back({Fix::Kind::kQuarantine, std::move(entry), std::move(old), problem});
}

void ShardFsck::AnalyzeIndex() {
  fixes_.clear();
  quarantined_keys_.clear();
  checkpoint_problem_.reset();
  missing_problems_.clear();
  if (checkpoint_.segment != 0 && live_segments_.count(checkpoint_.segment) == 0) {
    checkpoint_problem_ =
        Add("missing_segment", Severity::kError, checkpoint_.segment, std::nullopt, "",
            "segment " + std::to_string(checkpoint_.segment) +
                ", where the index checkpoint lies, is missing");
  }
  std::set<uint64_t> missing_reported;
  auto note_missing = [&](const log::Location& loc) {
    if (live_segments_.count(loc.segment) != 0 || !missing_reported.insert(loc.segment).second) {
      return;
    }
    if (checkpoint_problem_ && report_->problems[*checkpoint_problem_].segment == loc.segment) {
      return;
    }
    missing_problems_.push_back(Add("missing_segment", Severity::kError, loc.segment, std::nullopt,
                                    "",
                                    "segment " + std::to_string(loc.segment) +
                                        " holds records the index refers to, and is missing"));
  };

  std::set<std::string> keys;
  for (const auto& [k, e] : indexed_) keys.insert(k);
  for (const auto& [k, e] : model_.live) keys.insert(k);
  for (const std::string& key : keys) {
    const MessageId id = internal::IdFromKey(key);
    const std::string id_text = id.ToString();
    auto ii = indexed_.find(key);
    auto ei = model_.live.find(key);
    const IndexEntry* I = ii == indexed_.end() ? nullptr : &ii->second;
    const IndexEntry* E = ei == model_.live.end() ? nullptr : &ei->second;
    const auto touch = model_.last_touch.find(key);
    const bool after_cp = !index_readable_ ||
                          (touch != model_.last_touch.end() && !Before(touch->second, checkpoint_));

    if (I != nullptr && I->info.state == MessageState::kCorrupt) {
      Add("quarantined", Severity::kNote, I->main.segment, I->main.offset, id_text,
          "message " + id_text + " is quarantined (state corrupt)");
      continue;
    }
    const LocState istate = I ? CheckBody(*I) : LocState::kNothing;
    const LocState estate = E ? CheckBody(*E) : LocState::kNothing;
    if (I != nullptr && istate == LocState::kMissingSegment) note_missing(I->main);
    for (const IndexEntry* x : {I, E}) {
      if (x == nullptr) continue;
      for (const log::Location& c : x->chunks) note_missing(c);
    }
    const bool iwhole = I != nullptr && istate == LocState::kIntact;
    if (iwhole) {
      // The body is intact. A damaged state record is the only record the index can be
      // better than the log about: keep the index's state then.
      const bool state_ok = I->state.segment == 0 ||
                            CheckLocation(I->state, {id.time(), id.tag()},
                                          log::RecordType::kStateUpdate) == LocState::kIntact;
      if (!state_ok && CheckLocation(I->state, {id.time(), id.tag()},
                                     log::RecordType::kStateUpdate) != LocState::kNothing) {
        continue;
      }
      if (E != nullptr && internal::EncodeIndexEntry(*E) == internal::EncodeIndexEntry(*I)) {
        continue;
      }
      if (E == nullptr && model_.removed.count(key) == 0) {
        // Intact records the replay did not make live and no removal: cannot happen
        // unless the index names records of the wrong type.
        Add("index_mismatch", Severity::kWarning, I->main.segment, I->main.offset, id_text,
            "index entry of " + id_text + " does not match the log; left alone");
        continue;
      }
      if (E != nullptr && estate != LocState::kIntact) continue;  // the index has the good copy
      const bool pending = after_cp;
      const size_t p = Add(
          E ? "index_mismatch" : "removed_still_indexed",
          pending ? Severity::kNote : Severity::kError, I->main.segment, I->main.offset, id_text,
          pending ? "the log has newer changes of " + id_text + " than the index (replayed at open)"
          : E     ? "the index entry of " + id_text + " differs from the log"
                  : "message " + id_text + " was removed in the log but is still indexed");
      fixes_.push_back({E ? Fix::Kind::kPut : Fix::Kind::kDelete, E ? *E : *I, *I, p});
      continue;
    }
    if (I == nullptr) {
      if (E == nullptr) continue;
      if (estate == LocState::kIntact) {
        const size_t p =
            Add("unindexed", after_cp ? Severity::kNote : Severity::kError, E->main.segment,
                E->main.offset, id_text,
                after_cp ? "message " + id_text +
                               " is in the log after the index checkpoint "
                               "(replayed at open)"
                         : "message " + id_text + " is in the log but not in the index");
        fixes_.push_back({Fix::Kind::kPut, *E, std::nullopt, p});
      } else {
        const size_t p =
            Add("corrupt_message", Severity::kError, E->main.segment, E->main.offset, id_text,
                "a record of the body of " + id_text + " is damaged or missing");
        AddQuarantine(QuarantineEntry(id, nullptr, E, nullptr), std::nullopt, p);
      }
      continue;
    }
    // The index names records that are not intact.
    if (E != nullptr && estate == LocState::kIntact) {
      const size_t p = Add("index_mismatch", after_cp ? Severity::kNote : Severity::kError,
                           I->main.segment, I->main.offset, id_text,
                           "the index points " + id_text +
                               " at records that are not there; the "
                               "log has it at " +
                               LocText(E->main.segment, E->main.offset));
      fixes_.push_back({Fix::Kind::kPut, *E, *I, p});
      continue;
    }
    if (istate == LocState::kNothing && (E == nullptr || estate == LocState::kNothing)) {
      const size_t p =
          Add("dangling_entry", Severity::kError, I->main.segment, I->main.offset, id_text,
              "index entry of " + id_text + " points at " +
                  LocText(I->main.segment, I->main.offset) + ", where no record of it is");
      fixes_.push_back({Fix::Kind::kDelete, *I, *I, p});
      continue;
    }
    const size_t p =
        Add("corrupt_message", Severity::kError, I->main.segment, I->main.offset, id_text,
            istate == LocState::kMissingSegment
                ? "message " + id_text + " has records in a missing segment"
                : "message " + id_text + " has damaged records");
    AddQuarantine(QuarantineEntry(id, I, E, nullptr), *I, p);
  }

  // Damaged message records that neither the index nor the replay knows (written after the
  // checkpoint, say): quarantine them with what their envelope still tells.
  for (const auto& [where, rid] : damage_ids_) {
    const MessageId id(rid.hi, rid.lo);
    const std::string key = internal::IdKey(id);
    if (indexed_.count(key) != 0 || model_.live.count(key) != 0 || model_.removed.count(key) != 0 ||
        quarantined_keys_.count(key) != 0 || !id.valid()) {
      continue;
    }
    // Only records of a message (or commit) stand for a message; read the header's type.
    auto path = seg_path_.find(where.first);
    if (path == seg_path_.end()) continue;
    StatusOr<std::unique_ptr<io::File>> f = fs_->Open(path->second, {.read_only = true});
    log::RecordHeader h{};
    size_t got = 0;
    if (!f.ok() ||
        !fs_->Read(**f, where.second, {reinterpret_cast<std::byte*>(&h), sizeof(h)}, &got).ok() ||
        got < sizeof(h) ||
        (h.type != static_cast<uint8_t>(log::RecordType::kMessage) &&
         h.type != static_cast<uint8_t>(log::RecordType::kCommit))) {
      continue;
    }
    bool known = false;
    for (const Range& k : known_) {
      known |= k.segment == where.first && where.second >= k.begin && where.second < k.end;
    }
    if (known) continue;
    const log::Location loc{where.first, where.second,
                            static_cast<uint32_t>(log::RecordFootprint(h.payload_size))};
    const size_t p = Add(
        "corrupt_message", Severity::kError, loc.segment, loc.offset, id.ToString(),
        "the record of message " + id.ToString() + " is damaged and the index does not know it");
    AddQuarantine(QuarantineEntry(id, nullptr, nullptr, &loc), std::nullopt, p);
  }
}

Status ShardFsck::Repair() {
  const std::string index_path = dir_ + "/" + kIndexDir;
  const bool rebuild = options_.rebuild_index || !index_readable_;
  std::unique_ptr<index::Index> index;
  if (rebuild) {
    // Keep the old index for the operator, as RebuildIndex does.
    SPOOL_ASSIGN_OR_RETURN(bool exists, fs_->Exists(index_path));
    if (exists) {
      SPOOL_RETURN_IF_ERROR(
          fs_->Rename(index_path, index_path + ".old-" + std::to_string(NowMs())));
      SPOOL_RETURN_IF_ERROR(fs_->SyncDir(dir_));
    }
  }
  SPOOL_ASSIGN_OR_RETURN(index, index::Index::Open(index_path, /*read_only=*/false));

  // 1. Quarantine first: nothing that follows may make a damaged message look dangling.
  {
    index::Index::Batch batch(*index);
    for (const Fix& f : fixes_) {
      if (f.kind != Fix::Kind::kQuarantine) continue;
      const IndexEntry* old = rebuild || !f.old ? nullptr : &*f.old;
      batch.Put(f.entry, old);
    }
    if (!batch.empty()) {
      SPOOL_RETURN_IF_ERROR(index->Write(batch));
      SPOOL_RETURN_IF_ERROR(index->Flush());
    }
    for (const Fix& f : fixes_) {
      if (f.kind == Fix::Kind::kQuarantine) Corrected(f.problem, "quarantined");
    }
    for (size_t p : missing_problems_) Corrected(p, "its messages quarantined");
  }

  // 2. A torn tail is cut the way the log's open does: a fresh segment whose header
  // states where the torn one validly ends. The writable open also rewrites intact
  // records found past the tear, so the replay is taken again from it.
  // The fixes planned from the first scan, for marking what got corrected.
  const std::vector<Fix> planned = fixes_;
  const std::optional<size_t> checkpoint_problem = checkpoint_problem_;
  std::vector<Fix> fixes;
  for (const Fix& f : planned) {
    if (f.kind != Fix::Kind::kQuarantine) fixes.push_back(f);
  }
  if (torn_problem_) {
    std::unique_ptr<log::Log> log;
    SPOOL_RETURN_IF_ERROR(ScanLog(/*writable=*/true, &log));
    // One padding record: its batch activates the fresh segment that seals the torn one.
    log::AppendRecord pad;
    pad.type = log::RecordType::kPadding;
    SPOOL_RETURN_IF_ERROR(log->Append({&pad, 1}, nullptr));
    log.reset();
    Corrected(*torn_problem_, "truncated");
    // Records past the tear may have moved: plan the index fixes again against the new
    // replay, with the quarantine already in place, without reporting anything twice.
    for (const Fix& f : planned) {
      if (f.kind == Fix::Kind::kQuarantine) indexed_[internal::IdKey(f.entry.info.id)] = f.entry;
    }
    const size_t keep = report_->problems.size();
    AnalyzeIndex();
    report_->problems.resize(keep);
    fixes = fixes_;
    for (Fix& f : fixes) f.problem = SIZE_MAX;
  }

  // 3. The other index fixes, against the replay of the log as it is now.
  if (rebuild) {
    fixes.clear();
    for (const auto& [key, e] : model_.live) {
      auto old = indexed_.find(key);
      const bool was_quarantined =
          old != indexed_.end() && old->second.info.state == MessageState::kCorrupt;
      if (quarantined_keys_.count(key) != 0 || was_quarantined) continue;
      if (CheckBody(e) == LocState::kIntact) {
        fixes.push_back({Fix::Kind::kPut, e, std::nullopt, SIZE_MAX});
      } else {
        fixes.push_back({Fix::Kind::kQuarantine,
                         QuarantineEntry(e.info.id, old == indexed_.end() ? nullptr : &old->second,
                                         &e, nullptr),
                         std::nullopt, SIZE_MAX});
      }
    }
    // Quarantined entries of the old index stay quarantined in the new one.
    for (const auto& [key, e] : indexed_) {
      if (e.info.state == MessageState::kCorrupt) {
        fixes.push_back({Fix::Kind::kQuarantine, e, std::nullopt, SIZE_MAX});
      }
    }
  }
  index::Index::Batch* batch = nullptr;
  std::unique_ptr<index::Index::Batch> holder;
  int ops = 0;
  for (size_t i = 0; i <= fixes.size(); ++i) {
    if (holder == nullptr) {
      holder = std::make_unique<index::Index::Batch>(*index);
      batch = holder.get();
    }
    if (i < fixes.size()) {
      const Fix& f = fixes[i];
      const IndexEntry* old = f.old ? &*f.old : nullptr;
      if (f.kind == Fix::Kind::kDelete) {
        batch->Delete(*old);
      } else {
        batch->Put(f.entry, old);
      }
      if (++ops < kIndexBatchOps) continue;
    }
    if (i == fixes.size() && log_end_.segment != 0) batch->SetCheckpoint(log_end_);
    SPOOL_RETURN_IF_ERROR(index->Write(*batch));
    holder.reset();
    ops = 0;
  }
  SPOOL_RETURN_IF_ERROR(index->Flush());
  for (const Fix& f : planned) {
    if (f.kind == Fix::Kind::kPut) Corrected(f.problem, "indexed from the log");
    if (f.kind == Fix::Kind::kDelete) Corrected(f.problem, "dropped from the index");
  }
  if (checkpoint_problem) Corrected(*checkpoint_problem, "checkpoint moved to the log's end");
  if (index_problem_) Corrected(*index_problem_, rebuild ? "rebuilt from the log" : "");

  // 4. The damage dealt with, for later checks.
  std::set<Range> known;
  for (const Range& r : known_) {
    if (seg_path_.count(r.segment) != 0) known.insert(r);
  }
  for (const Range& r : damage_) known.insert(r);
  SPOOL_RETURN_IF_ERROR(WriteKnownDamage(fs_, dir_, known));
  for (size_t p : damage_problems_) Corrected(p, "recorded as known damage");
  index.reset();

  // What the index holds now, for the summary.
  StatusOr<std::unique_ptr<index::Index>> after = index::Index::Open(index_path, true);
  if (after.ok()) {
    summary_.messages = 0;
    summary_.quarantined = 0;
    (*after)
        ->ForEach([&](const MessageId&, const IndexEntry& e) {
          ++summary_.messages;
          if (e.info.state == MessageState::kCorrupt) ++summary_.quarantined;
          return true;
        })
        .IgnoreError();  // the summary is informative
    StatusOr<log::Location> cp = (*after)->Checkpoint();
    if (cp.ok()) {
      summary_.checkpoint_segment = cp->segment;
      summary_.checkpoint_offset = cp->offset;
    }
  }
  return Status::Ok();
}

void ShardFsck::Run() {
  Status s = ReadShardMarker(fs_, dir_, &marker_);
  if (!s.ok()) {
    Operational(s);
    return;
  }
  summary_.shard = marker_.shard;
  CheckLock();
  known_ = LoadKnownDamage(dir_);
  s = ScanSegmentHeaders();
  if (!s.ok()) {
    if (s.code() == Code::kCorruption) {
      Add("duplicate_segment", Severity::kError, 0, std::nullopt, "",
          std::string(s.message()) +
              " (move the stale copy away, then run spool-fsck again; not repaired "
              "automatically)");
    } else {
      Operational(s);
    }
    return;
  }
  // Truncated segment files: a repair gives them their size back first (zeros, read as
  // end of data or as damage it then records), so that their intact records are scanned
  // like any others; the log leaves files too small for a header and a batch aside.
  for (const auto& [path, size] : short_files_) {
    uint64_t seq = 0;
    for (const auto& [sq, p] : seg_path_) {
      if (p == path) seq = sq;
    }
    const size_t p = Add("truncated_segment", Severity::kError, seq, size, "",
                         path + " is " + std::to_string(size) + " bytes, not the spool's " +
                             std::to_string(marker_.segment_size));
    if (seq != 0) truncated_[seq] = size;
    if (!repair_ || size > marker_.segment_size) continue;
    StatusOr<std::unique_ptr<io::File>> f = fs_->Open(path, io::OpenOptions{});
    s = f.ok() ? fs_->Truncate(**f, marker_.segment_size) : f.status();
    if (!s.ok()) {
      Add("repair_failed", Severity::kError, seq, std::nullopt, "",
          "cannot extend " + path + ": " + s.ToString());
      continue;
    }
    Corrected(p, "extended with zeros to the segment size");
  }
  // The index before the log: everything it names was durable in the log when it was
  // flushed, so a writer appending meanwhile cannot make an entry look dangling.
  OpenIndex();
  if (!index_readable_) {
    index_problem_ = Add("index_unreadable", Severity::kError, 0, std::nullopt, "",
                         index_error_ + " (a repair rebuilds it from the log)");
  }
  std::unique_ptr<log::Log> log;
  s = ScanLog(/*writable=*/false, &log);
  if (!s.ok()) {
    if (s.code() == Code::kFailedPrecondition || s.code() == Code::kPermission ||
        s.code() == Code::kIoError) {
      Operational(s);
    } else {
      Add("log_unreadable", Severity::kError, 0, std::nullopt, "", std::string(s.message()));
    }
    return;
  }
  log.reset();
  summary_.checked = true;
  summary_.segments = recovery_.segments;
  summary_.free_segments = recovery_.free_segments;
  summary_.records = recovery_.records;
  summary_.bytes_scanned = recovery_.bytes;
  AnalyzeDamage();
  AnalyzeIndex();
  for (const auto& [key, e] : indexed_) {
    ++summary_.messages;
    if (e.info.state == MessageState::kCorrupt) {
      ++summary_.quarantined;
    } else {
      summary_.live_bytes += e.footprint();
    }
  }
  if (!repair_) return;
  if (options_.rebuild_index) {
    Add("index_rebuilt", Severity::kNote, 0, std::nullopt, "",
        "the index was rebuilt from the log (--rebuild-index)");
  }
  s = Repair();
  if (!s.ok()) {
    Add("repair_failed", Severity::kError, 0, std::nullopt, "",
        "repair stopped: " + s.ToString() + " (run spool-fsck --repair again)");
  }
}

}  // namespace

Report Fsck(const FsckOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  Report report;
  report.dirs = options.dirs;
  report.mode = options.rebuild_index ? "rebuild-index" : options.repair ? "repair" : "check";
  StatusOr<std::unique_ptr<io::FileSystem>> fs = io::NewFileSystem(io::Backend::kAuto);
  auto fail = [&](const std::string& dir, const Status& s, std::string kind) {
    Problem p;
    p.kind = std::move(kind);
    p.dir = dir;
    p.detail = std::string(s.message());
    report.problems.push_back(std::move(p));
    report.operational_error = true;
  };
  if (!fs.ok()) {
    fail("", fs.status(), "cannot_open");
  } else {
    // A repair needs every shard to itself before it changes any.
    std::vector<std::unique_ptr<io::FileLock>> locks;
    bool locked = true;
    if (options.repair || options.rebuild_index) {
      const std::string holder = options.lock_holder.empty()
                                     ? "spool-fsck (pid " + std::to_string(getpid()) + ")"
                                     : options.lock_holder;
      for (const std::string& dir : options.dirs) {
        Marker m;
        Status s = ReadShardMarker(fs->get(), dir, &m);
        if (s.ok()) {
          StatusOr<std::unique_ptr<io::FileLock>> lock =
              (*fs)->LockFile(dir + "/" + kLockFile, holder);
          if (lock.ok()) {
            locks.push_back(std::move(lock).value());
            continue;
          }
          s = lock.status();
          fail(dir, s.WithContext("cannot repair"), "locked");
        } else {
          fail(dir, s, "cannot_open");
        }
        locked = false;
      }
    }
    if (locked) {
      uint64_t total = 0;
      for (const std::string& dir : options.dirs) {
        StatusOr<std::vector<std::string>> names = (*fs)->ListDir(dir + "/" + kLogDir);
        if (!names.ok()) continue;
        for (const std::string& n : *names) {
          struct stat st;
          uint32_t slot;
          if (log::ParseSegmentFileName(n, &slot) &&
              ::stat((dir + "/" + kLogDir + "/" + n).c_str(), &st) == 0) {
            total += static_cast<uint64_t>(st.st_size);
          }
        }
      }
      uint64_t base = 0;
      for (size_t i = 0; i < options.dirs.size(); ++i) {
        ShardFsck shard(fs->get(), options, options.dirs[i], static_cast<uint32_t>(i), &report,
                        &base, total);
        shard.Run();
        report.shards.push_back(shard.summary());
        report.bytes_scanned += shard.summary().bytes_scanned;
      }
      if (options.progress) options.progress(total, total);
    }
  }
  bool uncorrected = false, corrected = false;
  for (const Problem& p : report.problems) {
    if (p.severity != Severity::kError || p.kind == "cannot_open" || p.kind == "locked") continue;
    (p.corrected ? corrected : uncorrected) = true;
  }
  report.exit_code = (corrected ? kExitCorrected : 0) | (uncorrected ? kExitUncorrected : 0) |
                     (report.operational_error ? kExitOperational : 0);
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace spool::fsck
