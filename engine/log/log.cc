#include "log/log.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>

#include "spool/logging.h"
#include "util/futex.h"

namespace spool::log {
namespace {

using Clock = std::chrono::steady_clock;

uint64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Block-aligned memory for batch buffers (O_DIRECT needs it; buffered I/O does not care).
struct AlignedFree {
  void operator()(std::byte* p) const { std::free(p); }
};
using AlignedBuffer = std::unique_ptr<std::byte[], AlignedFree>;

AlignedBuffer AllocateAligned(size_t size) {
  void* p = std::aligned_alloc(kBlockSize, AlignUp(size, kBlockSize));
  if (p == nullptr) std::abort();  // out of memory at open: nothing sensible to do
  return AlignedBuffer(static_cast<std::byte*>(p));
}

std::string Describe(const std::string& path, uint64_t offset) {
  return path + " offset " + std::to_string(offset);
}

}  // namespace

std::string SegmentFileName(uint32_t slot) {
  char name[32];
  std::snprintf(name, sizeof(name), "%s%0*u", kSegmentPrefix, kSegmentSlotDigits, slot);
  return name;
}

bool ParseSegmentFileName(std::string_view name, uint32_t* slot) {
  const std::string_view prefix(kSegmentPrefix);
  if (name.size() != prefix.size() + kSegmentSlotDigits || !name.starts_with(prefix)) {
    return false;
  }
  uint32_t v = 0;
  for (char c : name.substr(prefix.size())) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint32_t>(c - '0');
  }
  *slot = v;
  return true;
}

uint64_t AppendRecord::payload_size() const {
  uint64_t n = 0;
  for (int i = 0; i < part_count; ++i) n += parts[i].size();
  return n;
}

struct Log::Segment {
  enum class State {
    kFree,    // zero header: ready for activation
    kActive,  // appends go here
    kSealed,  // holds data; never appended to again
    kBroken,  // failed activation or unknown state: not used again in this process
  };
  uint32_t slot = 0;
  std::string path;
  uint64_t size = 0;
  std::unique_ptr<io::File> file;         // buffered, read-write
  std::unique_ptr<io::File> direct;       // O_DIRECT | O_DSYNC, with LogOptions::direct_io
  uint64_t seq = 0;                       // 0 while free
  uint64_t end = kSegmentDataStart;       // end of acknowledged (valid) data
  uint64_t reserved = kSegmentDataStart;  // end of placed batches, >= end
  State state = State::kFree;

  io::File& writer() { return direct ? *direct : *file; }
};

struct Log::Waiter {
  AppendCallback done;
  uint32_t first = 0;  // index of its first record in Batch::records
  uint32_t count = 0;
  bool answered = false;  // its leading appender ran `done` already
};

struct Log::Batch {
  AlignedBuffer buf;
  size_t capacity = 0;
  size_t used = 0;  // bytes reserved
  // Producers still copying into buf: raised under mu_, lowered without it. The worker
  // placing the batch sets writer_waiting before it waits for zero; the producer that
  // lowers it to zero and sees writer_waiting takes mu_ once so that the worker's
  // condition is re-checked (both sides use sequentially consistent operations: one of
  // them sees the other).
  std::atomic<int> encoding{0};
  std::atomic<bool> writer_waiting{false};
  std::vector<uint32_t> offsets;
  std::vector<CommittedRecord> records;
  std::vector<Waiter> waiters;
  Status status;                    // of the placement and write
  std::vector<Location> locations;  // of the records, on success
  // Placement, by the worker that writes the batch.
  Segment* seg = nullptr;
  uint64_t offset = 0;  // in seg
  uint64_t total = 0;   // bytes written: used plus the padding record
  uint64_t batch_seq = 0;
  bool written = false;  // placed and written (else it failed before placement)
  bool io_done = false;  // the write completed (status says how)
  uint64_t io_us = 0;    // its latency

  void Reset() {
    status = Status::Ok();
    locations.clear();
    seg = nullptr;
    written = false;
    io_done = false;
    used = 0;
    encoding.store(0);
    writer_waiting.store(false);
    offsets.clear();
    records.clear();
    waiters.clear();
  }
};

Log::Log(io::FileSystem* fs, std::string dir, const LogOptions& options)
    : fs_(fs), dir_(std::move(dir)), options_(options) {
  for (int i = 0; i < std::max(2, options_.batch_buffers); ++i) {
    auto b = std::make_unique<Batch>();
    b->capacity = options_.batch_capacity;
    b->buf = AllocateAligned(b->capacity);
    idle_.push_back(b.get());
    batches_.push_back(std::move(b));
  }
}

StatusOr<std::unique_ptr<Log>> Log::Open(io::FileSystem* fs, const std::string& dir,
                                         const LogOptions& options, const RecoveryVisitor& visitor,
                                         RecoveryReport* report) {
  if (options.segment_size % kBlockSize != 0 || options.batch_capacity % kBlockSize != 0 ||
      options.segment_size < options.batch_capacity + 2 * kBlockSize ||
      options.batch_capacity < 2 * kBlockSize) {
    return InvalidArgumentError(
        "log options: segment_size and batch_capacity must be multiples of 4096, "
        "batch_capacity >= 8192 and segment_size >= batch_capacity + 8192");
  }
  RecoveryReport local_report;
  if (report == nullptr) report = &local_report;
  std::unique_ptr<Log> log(new Log(fs, dir, options));
  std::vector<Record> survivors;
  SPOOL_RETURN_IF_ERROR(log->Recover(visitor, report, &survivors));
  if (options.read_only) {
    // Nothing may be written: hand out the records past a torn tail where they are.
    for (const Record& r : survivors) {
      if (visitor) SPOOL_RETURN_IF_ERROR(visitor(r));
    }
    return log;
  }
  log->preallocator_ = std::thread([l = log.get()] { l->PreallocatorLoop(); });
  for (int i = 0; i < std::max(1, options.max_inflight); ++i) {
    log->io_workers_.emplace_back([l = log.get()] { l->IoWorkerLoop(); });
  }
  if (!survivors.empty()) {
    SPOOL_RETURN_IF_ERROR(log->RewriteTail(survivors, visitor));
    report->tail_records_rewritten += survivors.size();
  }
  return log;
}

Log::~Log() {
  {
    MutexLock l(&mu_);
    closing_ = true;
  }
  for (std::thread& t : io_workers_) t.join();  // they drain first
  if (preallocator_.joinable()) preallocator_.join();
}

// ---- Recovery ------------------------------------------------------------------------------

Status Log::Recover(const RecoveryVisitor& visitor, RecoveryReport* report,
                    std::vector<Record>* survivors) {
  SPOOL_ASSIGN_OR_RETURN(std::vector<std::string> names, fs_->ListDir(dir_));
  AlignedBuffer block = AllocateAligned(kBlockSize);

  struct Candidate {
    Segment* seg;
    SegmentHeader header;
  };
  std::vector<Candidate> valid;
  std::vector<Segment*> bad_header;
  MutexLock lock(&mu_);
  for (const std::string& name : names) {
    uint32_t slot;
    const std::string path = dir_ + "/" + name;
    if (name.starts_with(kSegmentPrefix) && name.ends_with(".tmp")) {
      // A segment the preallocator did not finish: never held data.
      if (!options_.read_only) SPOOL_RETURN_IF_ERROR(fs_->Unlink(path));
      continue;
    }
    if (!ParseSegmentFileName(name, &slot)) continue;
    next_slot_ = std::max(next_slot_, slot + 1);
    auto seg = std::make_unique<Segment>();
    seg->slot = slot;
    seg->path = path;
    SPOOL_ASSIGN_OR_RETURN(seg->file,
                           fs_->Open(path, io::OpenOptions{.read_only = options_.read_only}));
    SPOOL_RETURN_IF_ERROR(OpenDirect(*seg));
    SPOOL_ASSIGN_OR_RETURN(seg->size, fs_->Size(*seg->file));
    size_t got = 0;
    std::memset(block.get(), 0, kBlockSize);
    SPOOL_RETURN_IF_ERROR(ReadSegment(*seg, 0, {block.get(), kBlockSize}, &got));
    SegmentHeader h{};
    SegmentHeaderState st =
        got < kBlockSize ? SegmentHeaderState::kBad : DecodeSegmentHeader(block.get(), &h);
    if (seg->size < kSegmentDataStart + 2 * kBlockSize) {
      report->damage.push_back({"truncated", 0, path, seg->size, {}, "segment file too small"});
      seg->state = Segment::State::kBroken;
      segments_.push_back(std::move(seg));
      continue;
    }
    switch (st) {
      case SegmentHeaderState::kNewVersion:
        return FailedPreconditionError(
            path + " was written by format version " + std::to_string(h.format_version) +
            ", newer than this build's " + std::to_string(kFormatVersion));
      case SegmentHeaderState::kValid:
        if (options_.spool_id != 0 && h.spool_id != options_.spool_id) {
          return FailedPreconditionError(path + " belongs to another spool (spool id " +
                                         std::to_string(h.spool_id) + ", expected " +
                                         std::to_string(options_.spool_id) + ")");
        }
        seg->seq = h.seq;
        seg->state = Segment::State::kSealed;
        valid.push_back({seg.get(), h});
        break;
      case SegmentHeaderState::kFree:
        if (seg->size == options_.segment_size) {
          free_.push_back(seg.get());
        } else {
          seg->state = Segment::State::kBroken;  // formatted for another size: leave it
        }
        report->free_segments++;
        break;
      case SegmentHeaderState::kBad:
        bad_header.push_back(seg.get());
        break;
    }
    segments_.push_back(std::move(seg));
  }

  uint64_t max_seq = 0;
  // prev_seq -> the prev_end its successor's header states. Values, not pointers into
  // `valid`: that vector grows and is sorted below.
  std::map<uint64_t, uint64_t> successor;
  for (const Candidate& c : valid) {
    max_seq = std::max(max_seq, c.header.seq);
    if (c.header.prev_seq != 0) successor[c.header.prev_seq] = c.header.prev_end;
  }

  // A damaged segment header: either the torn header of an activation that a crash cut
  // short (the segment holds no record of its own epoch: free it) or damage to a live
  // segment (its first record names an epoch a successor refers to, or one newer than
  // every header): salvage its records under that epoch and report the damage.
  std::vector<Candidate> salvaged;
  for (Segment* seg : bad_header) {
    RecordHeader rh{};
    size_t got = 0;
    std::memset(block.get(), 0, kBlockSize);
    SPOOL_RETURN_IF_ERROR(ReadSegment(*seg, kSegmentDataStart, {block.get(), kBlockSize}, &got));
    // Any intact header reads as stale against the largest epoch, revealing its epoch.
    HeaderState hs = DecodeRecordHeader(block.get(), UINT64_MAX, seg->size, &rh);
    const bool live =
        hs == HeaderState::kStale && (rh.epoch > max_seq || successor.count(rh.epoch) != 0);
    if (!live) {
      seg->state = Segment::State::kFree;  // activation rewrites the header
      if (seg->size == options_.segment_size) free_.push_back(seg);
      report->free_segments++;
      continue;
    }
    report->damage.push_back({"segment_header",
                              rh.epoch,
                              seg->path,
                              0,
                              {},
                              "segment header damaged; records salvaged by epoch"});
    SegmentHeader h{};
    h.seq = rh.epoch;
    seg->seq = rh.epoch;
    seg->state = Segment::State::kSealed;
    salvaged.push_back({seg, h});
  }
  for (Candidate& c : salvaged) {
    max_seq = std::max(max_seq, c.header.seq);
    valid.push_back(c);
  }
  std::sort(valid.begin(), valid.end(),
            [](const Candidate& a, const Candidate& b) { return a.header.seq < b.header.seq; });
  for (size_t i = 1; i < valid.size(); ++i) {
    if (valid[i].header.seq == valid[i - 1].header.seq) {
      return CorruptionError("two segments claim sequence " + std::to_string(valid[i].header.seq) +
                             ": " + valid[i - 1].seg->path + " and " + valid[i].seg->path);
    }
  }

  uint64_t last_batch = 0;
  for (const Candidate& c : valid) {
    Segment& seg = *c.seg;
    auto it = successor.find(seg.seq);
    bool exact = it != successor.end();
    uint64_t limit = exact ? it->second : seg.size;
    if (limit > seg.size || limit < kSegmentDataStart || limit % kRecordAlignment != 0) {
      report->damage.push_back({"bad_prev_end",
                                seg.seq,
                                seg.path,
                                limit,
                                {},
                                "successor names an impossible end; scanning to the end"});
      exact = false;
      limit = seg.size;
    }
    uint64_t end = kSegmentDataStart;
    uint64_t batch = 0;
    mu_.Unlock();  // the visitor may take its own locks; nothing else runs yet
    Status s = Status::Ok();
    if (exact && seg.seq < options_.replay_from.segment) {
      end = limit;  // wholly before the checkpoint and bounded by its successor: skip
    } else if (!exact && seg.seq < options_.replay_from.segment && &c != &valid.back()) {
      end = seg.size;  // before the checkpoint; its successor was recycled
    } else {
      s = ScanSegment(seg, limit, exact, options_.replay_from, visitor, report, &end, &batch,
                      survivors);
    }
    mu_.Lock();
    SPOOL_RETURN_IF_ERROR(s);
    seg.end = end;
    seg.reserved = end;
    last_batch = std::max(last_batch, batch);
    report->segments++;
  }
  next_seq_ = max_seq + 1;
  next_batch_seq_ = last_batch + 1;
  acked_batch_seq_ = last_batch;
  if (!valid.empty()) {
    last_seq_ = valid.back().header.seq;
    last_end_ = valid.back().seg->end;
  }
  return Status::Ok();
}

Status Log::ScanSegment(Segment& seg, uint64_t limit, bool exact, const Location& from,
                        const RecoveryVisitor& visitor, RecoveryReport* report, uint64_t* end,
                        uint64_t* last_batch, std::vector<Record>* survivors) {
  const uint64_t epoch = seg.seq;
  const size_t view_size = std::max<size_t>(8u << 20, options_.batch_capacity + kBlockSize);
  // Windows start on block boundaries and the buffer is aligned, so that reads of O_DIRECT
  // segments land in it directly (no bounce buffer, no copy, no zero-fill).
  AlignedBuffer buf = AllocateAligned(view_size);
  uint64_t win_off = 0;
  size_t win_len = 0;
  // Makes [off, off + n) readable in buf; nullptr if the file ends first.
  auto view = [&](uint64_t off, uint64_t n) -> StatusOr<const std::byte*> {
    if (off >= win_off && off + n <= win_off + win_len) return buf.get() + (off - win_off);
    const uint64_t start = off / kBlockSize * kBlockSize;
    if (off + n - start > view_size) return static_cast<const std::byte*>(nullptr);
    win_off = start;
    const uint64_t want = std::min<uint64_t>(view_size, AlignUp(limit, kBlockSize) - start);
    SPOOL_RETURN_IF_ERROR(
        ReadSegment(seg, start, {buf.get(), static_cast<size_t>(want)}, &win_len));
    win_len = static_cast<size_t>(std::min<uint64_t>(win_len, limit - start));
    report->bytes += win_len;
    if (off + n > win_off + win_len) return static_cast<const std::byte*>(nullptr);
    return buf.get() + (off - win_off);
  };
  // The first block boundary after `from` holding an intact header of this epoch whose
  // batch is newer than `after_batch` and, with `acked` > 0, that was placed when batch
  // `acked` had been acknowledged; 0 if none.
  auto find_valid_after = [&](uint64_t from, uint64_t after_batch,
                              uint64_t acked) -> StatusOr<uint64_t> {
    for (uint64_t off = AlignUp(from + 1, kBlockSize); off + sizeof(RecordHeader) <= limit;
         off += kBlockSize) {
      SPOOL_ASSIGN_OR_RETURN(const std::byte* p, view(off, sizeof(RecordHeader)));
      if (p == nullptr) return uint64_t{0};
      RecordHeader h;
      if (DecodeRecordHeader(p, epoch, limit - off, &h) == HeaderState::kValid &&
          h.batch_seq > after_batch && AckedThrough(h) >= acked) {
        return off;
      }
    }
    return uint64_t{0};
  };
  // Both searches of the tail at once, in one read of the rest of the segment: *acked_after
  // as find_valid_after(from, after_batch - 1, after_batch), *newer as
  // find_valid_after(from, newer_than, 0). Stops early once the first is found, and the
  // second too when `need_newer`.
  auto find_tail = [&](uint64_t from, uint64_t after_batch, uint64_t newer_than, bool need_newer,
                       uint64_t* acked_after, uint64_t* newer) -> Status {
    *acked_after = *newer = 0;
    for (uint64_t off = AlignUp(from + 1, kBlockSize); off + sizeof(RecordHeader) <= limit;
         off += kBlockSize) {
      SPOOL_ASSIGN_OR_RETURN(const std::byte* p, view(off, sizeof(RecordHeader)));
      if (p == nullptr) break;
      RecordHeader h;
      if (DecodeRecordHeader(p, epoch, limit - off, &h) != HeaderState::kValid) continue;
      if (*newer == 0 && h.batch_seq > newer_than) *newer = off;
      if (*acked_after == 0 && h.batch_seq > after_batch - 1 && AckedThrough(h) >= after_batch) {
        *acked_after = off;
      }
      if (*acked_after != 0 && (*newer != 0 || !need_newer)) break;
    }
    return Status::Ok();
  };

  uint64_t pos = kSegmentDataStart;
  uint64_t prev_batch = 0;
  bool at_batch_end = true;  // the previous record closed its batch (or none yet)
  // Past a torn tail: intact records are collected for rewriting, not visited.
  bool in_torn_tail = false;
  uint64_t torn_at = 0;
  while (pos + sizeof(RecordHeader) <= limit) {
    SPOOL_ASSIGN_OR_RETURN(const std::byte* p, view(pos, sizeof(RecordHeader)));
    RecordHeader h{};
    HeaderState st = HeaderState::kBad;
    std::string why = "truncated segment file";
    if (p != nullptr) {
      st = DecodeRecordHeader(p, epoch, limit - pos, &h);
      why = st == HeaderState::kZero    ? "zeros where a record was expected"
            : st == HeaderState::kStale ? "stale record where a record was expected"
                                        : "damaged record header";
    }
    if (st == HeaderState::kValid) {
      const uint64_t footprint = RecordFootprint(h.payload_size);
      SPOOL_ASSIGN_OR_RETURN(const std::byte* r, view(pos, footprint));
      if (r != nullptr &&
          PayloadIntact(h, {r + sizeof(RecordHeader), static_cast<size_t>(h.payload_size)})) {
        const bool wanted =
            visitor && (seg.seq > from.segment || (seg.seq == from.segment && pos >= from.offset));
        if (h.type != static_cast<uint8_t>(RecordType::kPadding) && (wanted || in_torn_tail)) {
          Record rec;
          rec.type = static_cast<RecordType>(h.type);
          rec.id = {h.id_hi, h.id_lo};
          rec.batch_seq = h.batch_seq;
          rec.flags = h.flags;
          rec.location = {seg.seq, pos, static_cast<uint32_t>(footprint)};
          rec.payload.assign(reinterpret_cast<const char*>(r + sizeof(RecordHeader)),
                             h.payload_size);
          if (in_torn_tail) {
            survivors->push_back(std::move(rec));
          } else {
            SPOOL_RETURN_IF_ERROR(visitor(rec));
          }
        }
        if (h.type != static_cast<uint8_t>(RecordType::kPadding) && !in_torn_tail) {
          report->records++;
        }
        prev_batch = h.batch_seq;
        at_batch_end = (h.flags & kFlagBatchEnd) != 0;
        pos += footprint;
        continue;
      }
      why = r == nullptr ? "record runs past the end of the file" : "payload checksum mismatch";
    }
    // End of data, or damage, at pos.
    const bool clean_end = (st == HeaderState::kZero || st == HeaderState::kStale) &&
                           at_batch_end && pos % kBlockSize == 0;
    uint64_t resume = 0;
    if (exact) {
      // Everything before the successor's prev_end was durable: any gap is damage.
      SPOOL_ASSIGN_OR_RETURN(resume, find_valid_after(pos, 0, 0));
    } else {
      // At the end of the log only batches in flight at a crash can be incomplete. A
      // later record placed after the damaged batch was acknowledged proves that batch
      // durable: corruption. Otherwise it is a torn tail: the log ends here, and intact
      // records after the tear (batches in flight beside the torn one) are rewritten at
      // open rather than dropped, as they may be acknowledged if the damage was not a
      // tear after all.
      const uint64_t damaged_batch = at_batch_end ? prev_batch + 1 : prev_batch;
      uint64_t next = 0;
      SPOOL_RETURN_IF_ERROR(
          find_tail(pos, damaged_batch, prev_batch, in_torn_tail, &resume, &next));
      if (resume == 0 || in_torn_tail) {
        if (!in_torn_tail) torn_at = pos;
        if (!clean_end)
          report->torn_tail_bytes += (next ? next : AlignUp(pos + 1, kBlockSize)) - pos;
        if (next == 0) break;
        in_torn_tail = true;
        pos = next;
        at_batch_end = true;
        continue;
      }
    }
    Damage d;
    d.kind = st == HeaderState::kValid ? "checksum" : (p == nullptr ? "truncated" : "damaged");
    d.segment = seg.seq;
    d.path = seg.path;
    d.offset = pos;
    if (st == HeaderState::kValid) d.id = {h.id_hi, h.id_lo};
    d.detail = why + " at " + Describe(seg.path, pos);
    report->damage.push_back(std::move(d));
    if (resume == 0) {
      pos = limit;  // nothing intact after: the rest up to the known end is lost
      break;
    }
    pos = resume;
    at_batch_end = true;
  }
  if (in_torn_tail) pos = torn_at;
  *end = exact ? limit : std::min(pos, limit);
  *last_batch = prev_batch;
  return Status::Ok();
}

// ---- Segments ------------------------------------------------------------------------------

StatusOr<Log::Segment*> Log::NewSegmentFile(uint32_t slot) {
  auto seg = std::make_unique<Segment>();
  seg->slot = slot;
  seg->path = dir_ + "/" + SegmentFileName(slot);
  seg->size = options_.segment_size;
  const std::string tmp = seg->path + ".tmp";
  {
    // Zeros go straight to the device where O_DIRECT works, sparing the page cache and
    // the copy; tmpfs and some others refuse O_DIRECT with EINVAL.
    io::OpenOptions create;
    create.create = true;
    create.exclusive = true;
    create.direct = true;
    StatusOr<std::unique_ptr<io::File>> opened = fs_->Open(tmp, create);
    if (!opened.ok() && opened.status().sys_errno() == EINVAL) {
      fs_->Unlink(tmp).IgnoreError();  // may exist if O_CREAT worked before O_DIRECT failed
      create.direct = false;
      opened = fs_->Open(tmp, create);
    }
    SPOOL_RETURN_IF_ERROR(opened.status());
    std::unique_ptr<io::File> f = std::move(opened).value();
    Status s = fs_->ZeroFill(*f, options_.segment_size);
    if (!s.ok()) {
      f.reset();
      fs_->Unlink(tmp).IgnoreError();  // best effort: open removes leftovers anyway
      return s;
    }
  }
  SPOOL_RETURN_IF_ERROR(fs_->Rename(tmp, seg->path));
  SPOOL_RETURN_IF_ERROR(fs_->SyncDir(dir_));
  SPOOL_ASSIGN_OR_RETURN(seg->file, fs_->Open(seg->path, io::OpenOptions{}));
  SPOOL_RETURN_IF_ERROR(OpenDirect(*seg));
  Segment* raw = seg.get();
  MutexLock l(&mu_);
  segments_.push_back(std::move(seg));
  return raw;
}

StatusOr<Log::Segment*> Log::TakeFreeSegment() {
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !free_.empty() || !prealloc_error_.ok() || closing_;
  };
  mu_.Await(absl::Condition(&ready));
  if (free_.empty()) {
    if (!prealloc_error_.ok()) return prealloc_error_;
    return UnavailableError("log closing");
  }
  Segment* seg = free_.front();
  free_.pop_front();
  return seg;
}

Status Log::ActivateSegment(Segment* seg) {
  SegmentHeader h{};
  h.format_version = kFormatVersion;
  h.spool_id = options_.spool_id;
  h.shard = options_.shard;
  h.seq = next_seq_++;
  h.prev_seq = last_seq_;
  h.prev_end = last_end_;
  h.segment_size = seg->size;
  h.created_ms = NowMs();
  SPOOL_RETURN_IF_ERROR(OpenDirect(*seg));
  AlignedBuffer block = AllocateAligned(kBlockSize);
  EncodeSegmentHeader(h, block.get());
  io::WriteOp op{0, block.get(), kBlockSize};
  // The header is synced alone, before any record: a torn header then always means an
  // activation that a crash cut short, with no record of this epoch behind it.
  mu_.Unlock();
  Status s = fs_->WriteBatch(seg->writer(), {&op, 1}, io::Sync::kData);
  mu_.Lock();
  if (!s.ok()) {
    seg->state = Segment::State::kBroken;
    return s;
  }
  seg->seq = h.seq;
  seg->end = kSegmentDataStart;
  seg->reserved = kSegmentDataStart;
  seg->state = Segment::State::kActive;
  last_seq_ = h.seq;
  last_end_ = seg->end;
  active_ = seg;
  return Status::Ok();
}

void Log::PreallocatorLoop() {
  for (;;) {
    uint32_t slot;
    {
      MutexLock l(&mu_);
      auto needed = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return closing_ || static_cast<int>(free_.size()) < std::max(1, options_.ready_segments);
      };
      mu_.Await(absl::Condition(&needed));
      if (closing_) return;
      slot = next_slot_++;
      ++preallocating_;
    }
    StatusOr<Segment*> seg = NewSegmentFile(slot);
    MutexLock l(&mu_);
    --preallocating_;
    if (seg.ok()) {
      free_.push_back(*seg);
      prealloc_error_ = Status::Ok();
      continue;
    }
    if (prealloc_error_.ok()) {
      spool::Log(LogLevel::kError, "shard " + std::to_string(options_.shard) +
                                       ": cannot pre-format a segment: " + seg.status().ToString());
    }
    prealloc_error_ = seg.status();
    // Retry later; a re-probe or freed space may cure it.
    auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return closing_; };
    mu_.AwaitWithTimeout(absl::Condition(&stop), absl::Seconds(1));
    if (closing_) return;
  }
}

Status Log::Recycle(uint64_t seq) {
  Segment* seg = nullptr;
  {
    MutexLock l(&mu_);
    for (auto& s : segments_) {
      if (s->seq == seq && s->state == Segment::State::kSealed) seg = s.get();
    }
    if (seg == nullptr) {
      return InvalidArgumentError("segment " + std::to_string(seq) +
                                  " is not a sealed segment of " + dir_);
    }
    seg->state = Segment::State::kBroken;  // unreachable until the header is zeroed
  }
  AlignedBuffer block = AllocateAligned(kBlockSize);
  std::memset(block.get(), 0, kBlockSize);
  io::WriteOp op{0, block.get(), kBlockSize};
  Status s = fs_->WriteBatch(seg->writer(), {&op, 1}, io::Sync::kData);
  MutexLock l(&mu_);
  if (!s.ok()) {
    // The header may or may not be zero now; the segment stays out of use, and its old
    // records are void either way because nothing live refers to them.
    return s.WithContext("recycle segment " + std::to_string(seq));
  }
  seg->seq = 0;
  seg->end = kSegmentDataStart;
  seg->state = Segment::State::kFree;
  free_.push_back(seg);
  return Status::Ok();
}

Status Log::ScanRange(const Location& from, const Location& to, const RecoveryVisitor& visitor,
                      std::vector<Damage>* damage) {
  std::vector<std::pair<Segment*, uint64_t>> range;  // segment, scan limit
  {
    MutexLock l(&mu_);
    for (auto& s : segments_) {
      if (s->seq < from.segment || s->seq > to.segment) continue;
      if (s->state != Segment::State::kSealed && s->state != Segment::State::kActive) continue;
      range.emplace_back(s.get(), s->seq == to.segment ? std::min(to.offset, s->end) : s->end);
    }
  }
  std::sort(range.begin(), range.end(),
            [](const auto& a, const auto& b) { return a.first->seq < b.first->seq; });
  for (auto& [seg, limit] : range) {
    RecoveryReport report;
    uint64_t scanned_end = 0, last_batch = 0;
    std::vector<Record> unused;
    SPOOL_RETURN_IF_ERROR(
        ScanSegment(*seg, limit, true, from, visitor, &report, &scanned_end, &last_batch, &unused));
    if (damage != nullptr) {
      damage->insert(damage->end(), report.damage.begin(), report.damage.end());
    }
  }
  return Status::Ok();
}

Status Log::ScanSealed(uint64_t seq, const RecoveryVisitor& visitor, std::vector<Damage>* damage) {
  Segment* seg = nullptr;
  uint64_t end = 0;
  {
    MutexLock l(&mu_);
    for (auto& s : segments_) {
      if (s->seq == seq && s->state == Segment::State::kSealed) seg = s.get();
    }
    if (seg == nullptr) {
      return InvalidArgumentError("segment " + std::to_string(seq) + " is not sealed in " + dir_);
    }
    end = seg->end;
  }
  RecoveryReport report;
  uint64_t scanned_end = 0, last_batch = 0;
  std::vector<Record> unused;
  SPOOL_RETURN_IF_ERROR(ScanSegment(*seg, end, true, Location{}, visitor, &report, &scanned_end,
                                    &last_batch, &unused));
  if (damage != nullptr) {
    damage->insert(damage->end(), report.damage.begin(), report.damage.end());
  }
  return Status::Ok();
}

std::vector<uint64_t> Log::LiveSegments() const {
  MutexLock l(&mu_);
  std::vector<uint64_t> out;
  for (const auto& s : segments_) {
    if (s->state == Segment::State::kSealed || s->state == Segment::State::kActive) {
      out.push_back(s->seq);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

uint64_t Log::ActiveSegment() const {
  MutexLock l(&mu_);
  return active_ ? active_->seq : 0;
}

// ---- Appends -------------------------------------------------------------------------------

void Log::AppendAsync(std::span<const AppendRecord> records, AppendCallback done,
                      int64_t max_wait_ms) {
  AppendImpl(records, std::move(done), max_wait_ms, /*lead=*/false);
}

void Log::AppendLeading(std::span<const AppendRecord> records, AppendCallback done,
                        int64_t max_wait_ms) {
  AppendImpl(records, std::move(done), max_wait_ms, /*lead=*/true);
}

void Log::AppendImpl(std::span<const AppendRecord> records, AppendCallback done,
                     int64_t max_wait_ms, bool lead) {
  uint64_t size = 0;
  for (const AppendRecord& r : records) size += RecordFootprint(r.payload_size());
  if (records.empty()) {
    done(InvalidArgumentError("append of no records"), {});
    return;
  }
  if (size + sizeof(RecordHeader) > options_.batch_capacity) {
    done(InvalidArgumentError("records of " + std::to_string(size) +
                              " bytes exceed the batch capacity of " +
                              std::to_string(options_.batch_capacity)),
         {});
    return;
  }
  if (options_.read_only) {
    done(FailedPreconditionError("the log of " + dir_ + " is open read-only"), {});
    return;
  }
  Batch* batch = nullptr;
  size_t offset = 0;
  Status refused;
  bool leading = false;
  size_t my_waiter = 0;
  {
    MutexLock l(&mu_);
    const int64_t wait_ms = max_wait_ms < 0 ? options_.max_wait_ms : max_wait_ms;
    absl::Time deadline = absl::InfinitePast();  // read the clock only if we must wait
    for (;;) {
      if (!fault_.ok()) {
        refused = fault_;
        break;
      }
      if (closing_) {
        refused = UnavailableError("log of " + dir_ + " is closing");
        break;
      }
      if (open_ != nullptr && open_->used + size + sizeof(RecordHeader) <= open_->capacity) {
        break;
      }
      if (open_ != nullptr) {  // full: hand it to the I/O workers
        sealed_.push_back(open_);
        open_ = nullptr;
      }
      if (!idle_.empty()) {
        open_ = idle_.back();
        idle_.pop_back();
        continue;
      }
      auto room = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !idle_.empty() || !fault_.ok() || closing_;
      };
      if (deadline == absl::InfinitePast()) deadline = absl::Now() + absl::Milliseconds(wait_ms);
      if (!mu_.AwaitWithDeadline(absl::Condition(&room), deadline)) {
        refused = OverloadError("no room in the commit queue of " + dir_ + " within " +
                                std::to_string(wait_ms) + " ms");
        break;
      }
    }
    if (refused.ok()) {
      batch = open_;
      offset = batch->used;
      batch->used += size;
      ++batch->encoding;
      const uint32_t first = static_cast<uint32_t>(batch->records.size());
      uint64_t off = offset;
      for (const AppendRecord& r : records) {
        batch->offsets.push_back(static_cast<uint32_t>(off));
        batch->records.push_back({r.type, r.id, {}, r.context});
        off += RecordFootprint(r.payload_size());
      }
      batch->waiters.push_back({std::move(done), first, static_cast<uint32_t>(records.size())});
      // An idle log (nothing in flight or queued, no worker placing or acknowledging):
      // this caller writes the batch itself, and no worker takes it meanwhile.
      if (lead && inflight_.empty() && sealed_.empty() && !placing_ && !rewriting_ &&
          !completing_ && !leader_) {
        leader_ = true;
        leading = true;
        my_waiter = batch->waiters.size() - 1;
      }
    }
  }
  if (!refused.ok()) {
    done(refused, {});
    return;
  }
  // Encode outside the lock, in parallel with other producers.
  std::byte* dst = batch->buf.get() + offset;
  for (const AppendRecord& r : records) {
    const uint64_t payload = r.payload_size();
    if (r.part_count == 1) {
      EncodeRecord(dst, r.type, r.id, r.parts[0]);
    } else {
      EncodeRecordParts(dst, r.type, r.id, {r.parts, static_cast<size_t>(r.part_count)});
    }
    if (r.flags != 0) {
      dst[offsetof(RecordHeader, flags)] |=
          std::byte{static_cast<uint8_t>(r.flags & ~kFlagBatchEnd)};
    }
    dst += RecordFootprint(payload);
  }
  if (!leading) {
    if (batch->encoding.fetch_sub(1) == 1 && batch->writer_waiting.load()) {
      MutexLock l(&mu_);  // a worker waits for this batch: its condition is evaluated now
    }
    return;
  }
  batch->encoding.fetch_sub(1);
  MutexLock l(&mu_);
  leader_ = false;
  // No worker placed anything while leader_ was set, so the batch holding our records is
  // the next one, and once written it is the oldest in flight: acknowledged right here.
  PlaceAndWrite(next_batch());
  CompleteInOrder(batch, my_waiter);
}

Status Log::Append(std::span<const AppendRecord> records, std::vector<Location>* locations) {
  // A bare futex word rather than a mutex and condition: one wake per waiter, no lock.
  Completion done;
  Status result;
  AppendAsync(records, [&](const Status& s, std::span<const Location> locs) {
    result = s;
    if (locations != nullptr) locations->assign(locs.begin(), locs.end());
    done.Notify();
  });
  done.Wait();
  return result;
}

void Log::SetDurableHook(std::function<void(std::span<const CommittedRecord>)> hook) {
  durable_hook_ = std::move(hook);
}

void Log::IoWorkerLoop() {
  const size_t window = static_cast<size_t>(std::max(1, options_.max_inflight));
  MutexLock l(&mu_);
  for (;;) {
    // The next batch to place and whether it can be placed now: one worker places at a
    // time, and a batch that needs a new segment waits until nothing is in flight, so
    // that the new segment's header states the old one's acknowledged end.
    auto placeable = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      if (placing_ || rewriting_ || leader_) return false;
      Batch* b = next_batch();
      if (b == nullptr || inflight_.size() >= window) return false;
      if (!fault_.ok() || inflight_.empty()) return true;
      const uint64_t total = AlignUp(b->used + sizeof(RecordHeader), kBlockSize);
      return active_ != nullptr && active_->reserved + total <= active_->size;
    };
    auto completable = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !completing_ && !inflight_.empty() && inflight_.front()->io_done;
    };
    auto drained = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return closing_ && next_batch() == nullptr && inflight_.empty() && !completing_ &&
             !placing_ && !leader_ && handoff_.empty();
    };
    auto work = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !handoff_.empty() || completable() || placeable() || drained();
    };
    mu_.Await(absl::Condition(&work));
    if (!handoff_.empty()) {
      // The callbacks a leading appender left: the other producers of its batches.
      Batch* b = handoff_.front();
      handoff_.pop_front();
      mu_.Unlock();
      RunCallbacks(*b);
      mu_.Lock();
      b->Reset();
      idle_.push_back(b);
    } else if (completable()) {
      CompleteInOrder();
    } else if (placeable()) {
      PlaceAndWrite(next_batch());
    } else {
      return;  // closing, drained
    }
  }
}

void Log::PlaceAndWrite(Batch* b) {
  if (b == open_) {
    sealed_.push_back(open_);
    open_ = nullptr;
  }
  placing_ = true;
  b->writer_waiting.store(true);
  auto encoded = [b]() { return b->encoding.load() == 0; };
  mu_.Await(absl::Condition(&encoded));
  sealed_.pop_front();
  Status s = fault_.ok() ? PlaceBatch(*b) : fault_;
  placing_ = false;
  if (!s.ok() && fault_.ok()) {
    ++stats_.failed_batches;
    fault_ = s;  // no segment can be started: latch until re-probed
    faulted_.store(true);
  }
  // A batch that could not be placed is answered in order too, as never written.
  b->written = s.ok();
  b->status = s;
  b->io_done = !s.ok();
  inflight_.push_back(b);
  if (!s.ok()) return;
  mu_.Unlock();
  s = WritePlaced(*b);
  mu_.Lock();
  b->status = s;
  b->io_done = true;
}

void Log::CompleteInOrder(Batch* leader_batch, size_t leader_waiter) {
  completing_ = true;
  std::vector<Batch*> done;
  while (!inflight_.empty() && inflight_.front()->io_done) {
    Batch* b = inflight_.front();
    if (!b->written) {
      inflight_.pop_front();
      done.push_back(b);
      continue;
    }
    if (!b->status.ok()) {
      rewriting_ = true;
      RewriteAfterFailure(&done);
      rewriting_ = false;
      break;
    }
    inflight_.pop_front();
    acked_batch_seq_ = b->batch_seq;
    b->seg->end = b->offset + b->total;
    if (b->seg->seq == last_seq_) last_end_ = b->seg->end;
    stats_.sync_us.Record(b->io_us);
    stats_.batch_bytes.Record(b->total);
    stats_.batch_records.Record(b->records.size());
    ++stats_.batches;
    stats_.bytes += b->total;
    stats_.records += b->records.size();
    stats_.payload_bytes += b->used;
    stats_.appends += b->waiters.size();
    done.push_back(b);
  }
  // The hook runs outside the lock, one completing worker at a time, so that it sees the
  // batches in log order. The callbacks run after it, outside that turn: waking the
  // producers (a futex wake each, several microseconds in a VM) is spread over the
  // workers instead of serializing every acknowledgement of the log.
  mu_.Unlock();
  for (Batch* b : done) RunHook(*b);
  mu_.Lock();
  completing_ = false;  // the next worker may acknowledge later batches now
  if (leader_batch != nullptr) {
    // A leading appender answers only itself here: the other callbacks go to a worker,
    // because they must not run on a thread of the caller's (which may hold its locks).
    mu_.Unlock();
    Answer(*leader_batch, leader_batch->waiters[leader_waiter]);
    mu_.Lock();
    for (Batch* b : done) {
      if (b == leader_batch && b->waiters.size() == 1) {
        b->Reset();  // a lone appender: nobody else to answer
        idle_.push_back(b);
      } else {
        handoff_.push_back(b);
      }
    }
    return;
  }
  mu_.Unlock();
  for (Batch* b : done) RunCallbacks(*b);
  mu_.Lock();
  for (Batch* b : done) {
    b->Reset();
    idle_.push_back(b);
  }
}

Status Log::EnsureActiveSegment(uint64_t need) {
  if (active_ != nullptr && active_->reserved + need <= active_->size) return Status::Ok();
  if (active_ != nullptr) {
    active_->state = Segment::State::kSealed;
    active_ = nullptr;
  }
  Status s;
  for (int attempt = 0; attempt < 2; ++attempt) {
    StatusOr<Segment*> fresh = TakeFreeSegment();
    s = fresh.ok() ? ActivateSegment(*fresh) : fresh.status();
    if (s.ok()) return s;
    spool::Log(LogLevel::kError, "shard " + std::to_string(options_.shard) +
                                     ": cannot start a segment: " + s.ToString());
  }
  return s;
}

Status Log::PlaceBatch(Batch& b) {
  const uint64_t total = AlignUp(b.used + sizeof(RecordHeader), kBlockSize);
  SPOOL_RETURN_IF_ERROR(EnsureActiveSegment(total));
  b.seg = active_;
  b.offset = active_->reserved;
  b.total = total;
  b.batch_seq = next_batch_seq_++;
  active_->reserved += total;
  for (uint32_t off : b.offsets) {
    FinalizeRecord(b.buf.get() + off, b.seg->seq, b.batch_seq, acked_batch_seq_, 0);
  }
  EncodePadding(b.buf.get() + b.used, total - b.used, b.seg->seq, b.batch_seq, acked_batch_seq_);
  b.locations.resize(b.records.size());
  for (size_t i = 0; i < b.records.size(); ++i) {
    const uint64_t next = i + 1 < b.offsets.size() ? b.offsets[i + 1] : b.used;
    b.locations[i] = {b.seg->seq, b.offset + b.offsets[i],
                      static_cast<uint32_t>(next - b.offsets[i])};
  }
  return Status::Ok();
}

Status Log::WritePlaced(Batch& b) {
  io::WriteOp ops[64];
  size_t nops = 0;
  io::Sync sync = io::Sync::kData;
  if (b.seg->direct != nullptr) {
    // O_DSYNC writes are durable on completion and run in parallel.
    sync = io::Sync::kNone;
    const uint64_t piece = std::max<uint64_t>(AlignUp(options_.direct_io_piece, kBlockSize),
                                              AlignUp(b.total / 64 + 1, kBlockSize));
    for (uint64_t done = 0; done < b.total; done += piece) {
      ops[nops++] = {b.offset + done, b.buf.get() + done, std::min(piece, b.total - done)};
    }
  } else {
    ops[nops++] = {b.offset, b.buf.get(), b.total};
  }
  const auto start = Clock::now();
  Status s = fs_->WriteBatch(b.seg->writer(), {ops, nops}, sync);
  b.io_us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count();
  return s;
}

void Log::RewriteAfterFailure(std::vector<Batch*>* done) {
  Batch* failed = inflight_.front();
  Segment* broken = failed->seg;
  const Status cause = failed->status;
  spool::Log(LogLevel::kError, "shard " + std::to_string(options_.shard) + ": " +
                                   (broken->direct ? "O_DSYNC write" : "write + fdatasync") +
                                   " of a " + std::to_string(failed->total) +
                                   "-byte batch failed: " + cause.ToString() + "; sealing " +
                                   broken->path + " and rewriting from memory");
  // Let every write in flight finish: their buffers are about to be rewritten.
  auto settled = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (Batch* b : inflight_) {
      if (!b->io_done) return false;
    }
    return true;
  };
  mu_.Await(absl::Condition(&settled));
  // SPEC §2.4: nothing written to the segment after its last acknowledged batch is
  // trusted, not even later batches that reported success. Seal it there; the next
  // segment's header records that end. Every unacknowledged batch is written again,
  // once, in order, into fresh segments.
  ++stats_.failed_batches;
  broken->state = Segment::State::kSealed;
  broken->reserved = broken->end;
  if (active_ == broken) active_ = nullptr;
  if (last_seq_ == broken->seq) last_end_ = broken->end;
  std::deque<Batch*> redo;
  redo.swap(inflight_);
  Status s;
  for (Batch* b : redo) {
    if (!b->written) {  // never placed: keeps its own failure
      done->push_back(b);
      continue;
    }
    if (s.ok()) {
      s = PlaceBatch(*b);
      if (!s.ok()) ++stats_.failed_batches;
    }
    if (s.ok()) {
      Segment* seg = b->seg;
      mu_.Unlock();
      s = WritePlaced(*b);
      mu_.Lock();
      if (s.ok()) {
        acked_batch_seq_ = b->batch_seq;
        seg->end = b->offset + b->total;
        if (seg->seq == last_seq_) last_end_ = seg->end;
        ++stats_.rewritten_batches;
        ++stats_.batches;
        stats_.bytes += b->total;
        stats_.records += b->records.size();
        stats_.appends += b->waiters.size();
      } else {
        ++stats_.failed_batches;
        seg->state = Segment::State::kSealed;
        seg->reserved = seg->end;
        if (active_ == seg) active_ = nullptr;
        if (last_seq_ == seg->seq) last_end_ = seg->end;
        spool::Log(LogLevel::kError, "shard " + std::to_string(options_.shard) +
                                         ": rewrite failed too: " + s.ToString() +
                                         "; the shard refuses writes until re-probed");
      }
    }
    b->status = s;
    done->push_back(b);
  }
  if (!s.ok()) {
    fault_ = s;
    faulted_.store(true);
  }
}

Status Log::RewriteTail(std::vector<Record>& survivors, const RecoveryVisitor& visitor) {
  // One Append per record keeps every record within a batch's capacity.
  for (Record& r : survivors) {
    AppendRecord a;
    a.type = r.type;
    a.id = r.id;
    a.parts[0] = {reinterpret_cast<const std::byte*>(r.payload.data()), r.payload.size()};
    a.part_count = 1;
    a.flags = r.flags & kFlagRelocated;
    std::vector<Location> loc;
    SPOOL_RETURN_IF_ERROR(Append({&a, 1}, &loc).WithContext("rewriting the torn tail"));
    r.location = loc[0];
    if (visitor) SPOOL_RETURN_IF_ERROR(visitor(r));
  }
  return Status::Ok();
}

void Log::RunHook(Batch& batch) {
  if (!batch.status.ok() || !durable_hook_) return;
  // The records learn their final locations here (a rewrite may have moved them).
  for (size_t i = 0; i < batch.records.size(); ++i) {
    batch.records[i].location = batch.locations[i];
  }
  durable_hook_(batch.records);
}

void Log::Answer(Batch& batch, Waiter& w) {
  if (batch.status.ok()) {
    w.done(batch.status, std::span<const Location>(batch.locations).subspan(w.first, w.count));
  } else {
    w.done(batch.status, {});
  }
  w.answered = true;
}

void Log::RunCallbacks(Batch& batch) {
  for (Waiter& w : batch.waiters) {
    if (!w.answered) Answer(batch, w);
  }
}

Log::Batch* Log::next_batch() {
  if (!sealed_.empty()) return sealed_.front();
  return open_ != nullptr && open_->used > 0 ? open_ : nullptr;
}

// ---- Reads ---------------------------------------------------------------------------------

Status Log::OpenDirect(Segment& seg) {
  if (!options_.direct_io || seg.direct != nullptr) return Status::Ok();
  io::OpenOptions o;
  o.read_only = options_.read_only;
  o.direct = true;
  o.dsync = !options_.read_only;
  SPOOL_ASSIGN_OR_RETURN(seg.direct, fs_->Open(seg.path, o));
  return Status::Ok();
}

Status Log::ReadSegment(Segment& seg, uint64_t offset, std::span<std::byte> out, size_t* got) {
  if (seg.direct == nullptr) return fs_->Read(*seg.file, offset, out, got);
  if (offset % kBlockSize == 0 && out.size() % kBlockSize == 0 &&
      reinterpret_cast<uintptr_t>(out.data()) % io::kDirectIoAlignment == 0) {
    return fs_->Read(*seg.direct, offset, out, got);  // aligned already: no bounce
  }
  // Segments written with O_DIRECT are read with O_DIRECT too: buffered reads (and their
  // readahead) racing direct writes can leave stale pages in the page cache, which outlive
  // the process and would show a later open zeros where records are.
  const uint64_t start = offset / kBlockSize * kBlockSize;
  const uint64_t end = AlignUp(offset + out.size(), kBlockSize);
  AlignedBuffer bounce = AllocateAligned(end - start);
  size_t read = 0;
  SPOOL_RETURN_IF_ERROR(fs_->Read(*seg.direct, start, {bounce.get(), end - start}, &read));
  const uint64_t skip = offset - start;
  *got = read > skip ? std::min<size_t>(read - skip, out.size()) : 0;
  std::memcpy(out.data(), bounce.get() + skip, *got);
  return Status::Ok();
}

StatusOr<Record> Log::Read(const Location& location, const RecordId* expected_id) {
  Segment* seg = nullptr;
  std::string path;
  {
    ReaderMutexLock l(&mu_);
    for (const auto& s : segments_) {
      if (s->seq == location.segment &&
          (s->state == Segment::State::kSealed || s->state == Segment::State::kActive)) {
        seg = s.get();
        path = s->path;
      }
    }
  }
  if (seg == nullptr) {
    return NotFoundError("segment " + std::to_string(location.segment) + " of " + dir_ +
                         " holds no data (recycled or never written)");
  }
  if (location.size < sizeof(RecordHeader)) {
    return InvalidArgumentError("location of " + std::to_string(location.size) + " bytes");
  }
  std::string buf(location.size, '\0');
  size_t got = 0;
  SPOOL_RETURN_IF_ERROR(ReadSegment(*seg, location.offset,
                                    {reinterpret_cast<std::byte*>(buf.data()), buf.size()}, &got));
  const auto* p = reinterpret_cast<const std::byte*>(buf.data());
  RecordHeader h{};
  if (got < buf.size() ||
      DecodeRecordHeader(p, location.segment, location.size, &h) != HeaderState::kValid) {
    return CorruptionError("damaged record header at " + Describe(path, location.offset));
  }
  if (RecordFootprint(h.payload_size) != location.size) {
    return CorruptionError("record at " + Describe(path, location.offset) +
                           " has another size than its index entry");
  }
  if (!PayloadIntact(h, {p + sizeof(RecordHeader), h.payload_size})) {
    return CorruptionError("payload checksum mismatch at " + Describe(path, location.offset));
  }
  Record rec;
  rec.type = static_cast<RecordType>(h.type);
  rec.id = {h.id_hi, h.id_lo};
  if (expected_id != nullptr && rec.id != *expected_id) {
    return CorruptionError("record at " + Describe(path, location.offset) +
                           " belongs to another message");
  }
  rec.batch_seq = h.batch_seq;
  rec.location = location;
  rec.payload = buf.substr(sizeof(RecordHeader), h.payload_size);
  return rec;
}

Status Log::health() const {
  if (!faulted_.load()) return Status::Ok();
  MutexLock l(&mu_);
  return fault_;
}

void Log::ClearFault() {
  MutexLock l(&mu_);
  fault_ = Status::Ok();
  faulted_.store(false);
  prealloc_error_ = Status::Ok();
}

LogStats Log::Stats() const {
  MutexLock l(&mu_);
  LogStats s = stats_;
  s.segment_size = options_.segment_size;
  for (const auto& seg : segments_) {
    if (seg->state == Segment::State::kSealed || seg->state == Segment::State::kActive) {
      ++s.segments_live;
    } else if (seg->state == Segment::State::kFree) {
      ++s.segments_free;
    }
  }
  return s;
}

}  // namespace spool::log
