// Log's construction, Open and recovery, and its destruction: the segment headers read at
// open, the scan of each segment with the rule that tells a torn tail from corruption
// (docs/format.md, "Torn tails and corruption"), and the rewrite of the intact records
// found past a torn tail.

#include <algorithm>
#include <cstring>
#include <future>
#include <map>
#include <thread>
#include <unordered_map>
#include <vector>

#include "log/log.h"
#include "log/log_impl.h"

namespace spool::log {
namespace {

// A segment is scanned through a window that moves forward this many bytes at a time; the
// next step is read while the scan verifies the current one.
constexpr size_t kScanStep = 8u << 20;
// Each step is read as pieces of this size, all in flight at once (io_uring), so that the
// device sees a queue of reads rather than one at a time.
constexpr size_t kScanReadPiece = 1u << 20;
// Payload checksums are verified on up to this many threads, each given at least this
// many bytes to hash.
constexpr size_t kVerifyThreads = 4;
constexpr uint64_t kVerifyMinBytesPerThread = 1u << 20;

// A forward-moving view of a segment's bytes for ScanSegment: View(off, n) makes
// [off, off + n) readable in memory. The next step of the segment is read ahead on
// another thread while the caller verifies the current one, in pieces read in parallel;
// with an O_DIRECT file the bytes go from the device into the window with no copy through
// the page cache. A view that moves backwards, or jumps past what was read ahead, reads
// synchronously. Thread-compatible (one scan).
class ScanWindow {
 public:
  // `head_room`: the largest view (a record's footprint) the scan may ask for, a multiple
  // of kBlockSize. Reads stop at `limit`; `bytes` counts what was read.
  // `buffers` (allocated here if they are too small) must outlive the window.
  ScanWindow(io::FileSystem* fs, io::File& file, uint64_t limit, size_t head_room, uint64_t* bytes,
             AlignedBuffer (&buffers)[2], size_t* buffer_size)
      : fs_(fs), file_(file), limit_(limit), head_room_(head_room), bytes_(bytes), bufs_(buffers) {
    if (*buffer_size < head_room_ + kScanStep) {
      *buffer_size = head_room_ + kScanStep;
      for (AlignedBuffer& b : bufs_) b = AllocateAligned(*buffer_size);
    }
  }
  ~ScanWindow() { WaitAhead().IgnoreError(); }  // the buffers must outlive the read

  // The bytes in memory from `off` on (0 if `off` is outside the window).
  size_t InMemory(uint64_t off) const {
    return off >= win_off_ && off < win_off_ + win_len_ ? win_off_ + win_len_ - off : 0;
  }

  // [off, off + n) in memory, or nullptr if the file (or the limit) ends first or the view
  // is larger than head_room + kScanStep.
  StatusOr<const std::byte*> View(uint64_t off, uint64_t n) {
    if (off >= win_off_ && off + n <= win_off_ + win_len_) return data_ + (off - win_off_);
    const uint64_t start = off / kBlockSize * kBlockSize;
    if (off + n - start > head_room_ + kScanStep) return static_cast<const std::byte*>(nullptr);
    const uint64_t win_end = win_off_ + win_len_;
    const uint64_t tail = win_end - start;
    if (ahead_.valid() && ahead_off_ == win_end && start >= win_off_ && start <= win_end &&
        tail <= head_room_) {
      // Step forward: the bytes still needed of this window go in front of the next step.
      SPOOL_RETURN_IF_ERROR(WaitAhead());
      std::byte* next = bufs_[1 - cur_].get();
      std::memcpy(next + head_room_ - tail, data_ + (start - win_off_), tail);
      cur_ = 1 - cur_;
      data_ = next + head_room_ - tail;
      win_off_ = start;
      win_len_ = tail + ahead_got_;
    } else {
      // Anywhere else: read it now, from `start`.
      SPOOL_RETURN_IF_ERROR(WaitAhead());
      std::byte* to = bufs_[cur_].get();
      data_ = to;
      win_off_ = start;
      win_len_ = 0;
      size_t got = 0;
      SPOOL_RETURN_IF_ERROR(ReadAt(to, start, head_room_ + kScanStep, &got));
      win_len_ = got;
    }
    StartAhead();
    if (off + n > win_off_ + win_len_) return static_cast<const std::byte*>(nullptr);
    return data_ + (off - win_off_);
  }

 private:
  // Reads up to `len` bytes at `offset` (stopping at the limit, rounded up to a block)
  // into `to`, in pieces read in parallel; *got is what is valid below the limit.
  Status ReadAt(std::byte* to, uint64_t offset, size_t len, size_t* got) {
    *got = 0;
    const uint64_t end = std::min<uint64_t>(offset + len, AlignUp(limit_, kBlockSize));
    if (end <= offset) return Status::Ok();
    std::vector<io::ReadOp> ops;
    for (uint64_t o = offset; o < end; o += kScanReadPiece) {
      ops.push_back(
          {o, to + (o - offset), static_cast<size_t>(std::min<uint64_t>(kScanReadPiece, end - o))});
    }
    SPOOL_RETURN_IF_ERROR(fs_->ReadBatch(file_, ops));
    for (const io::ReadOp& op : ops) {
      *got += op.bytes_read;
      if (op.bytes_read < op.size) break;  // end of file
    }
    *got = static_cast<size_t>(std::min<uint64_t>(*got, limit_ > offset ? limit_ - offset : 0));
    *bytes_ += *got;
    return Status::Ok();
  }

  // Reads the step after the window into the other buffer, on another thread.
  void StartAhead() {
    ahead_off_ = win_off_ + win_len_;
    if (ahead_off_ % kBlockSize != 0 || ahead_off_ >= limit_) return;  // nothing more
    std::byte* to = bufs_[1 - cur_].get() + head_room_;
    ahead_ = std::async(std::launch::async, [this, to, off = ahead_off_] {
      return ReadAt(to, off, kScanStep, &ahead_got_);
    });
  }
  Status WaitAhead() {
    if (!ahead_.valid()) return Status::Ok();
    return ahead_.get();
  }

  io::FileSystem* const fs_;
  io::File& file_;
  const uint64_t limit_;
  const size_t head_room_;
  uint64_t* const bytes_;
  AlignedBuffer (&bufs_)[2];
  int cur_ = 0;
  const std::byte* data_ = nullptr;
  uint64_t win_off_ = 0;
  size_t win_len_ = 0;
  std::future<Status> ahead_;
  uint64_t ahead_off_ = 0;
  size_t ahead_got_ = 0;
};

// Verifies the payload checksums of the records that follow each other in memory from
// `first` (an intact header of epoch `epoch` at segment offset `offset`), spread over up
// to kVerifyThreads threads, and records each verdict in *verdicts by offset. The scan
// then finds its records' verdicts there instead of hashing them one after another.
void VerifyAhead(const std::byte* first, uint64_t offset, size_t in_memory, uint64_t epoch,
                 uint64_t limit, std::unordered_map<uint64_t, bool>* verdicts) {
  struct Pending {
    uint64_t offset;
    const std::byte* record;
    RecordHeader header;
  };
  std::vector<Pending> pending;
  uint64_t bytes = 0;
  for (size_t at = 0; at + sizeof(RecordHeader) <= in_memory;) {
    RecordHeader h{};
    if (DecodeRecordHeader(first + at, epoch, limit - (offset + at), &h) != HeaderState::kValid) {
      break;  // the scan finds out what this is itself
    }
    const uint64_t footprint = RecordFootprint(h.payload_size);
    if (at + footprint > in_memory) break;
    pending.push_back({offset + at, first + at, h});
    bytes += h.payload_size;
    at += footprint;
  }
  const size_t threads =
      std::min<size_t>({kVerifyThreads, std::max(1u, std::thread::hardware_concurrency()),
                        static_cast<size_t>(bytes / kVerifyMinBytesPerThread) + 1, pending.size()});
  std::vector<char> intact(pending.size(), 0);
  // Each thread takes a contiguous run of records of about bytes / threads.
  const auto work = [&](size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i) {
      const Pending& p = pending[i];
      intact[i] = PayloadIntact(
          p.header, {p.record + sizeof(RecordHeader), static_cast<size_t>(p.header.payload_size)});
    }
  };
  std::vector<std::future<void>> helpers;
  size_t begin = 0;
  uint64_t done_bytes = 0;
  for (size_t t = 1; t < threads; ++t) {
    size_t end = begin;
    const uint64_t target = bytes * t / threads;
    while (end < pending.size() && done_bytes < target)
      done_bytes += pending[end++].header.payload_size;
    helpers.push_back(std::async(std::launch::async, work, begin, end));
    begin = end;
  }
  work(begin, pending.size());
  for (auto& h : helpers) h.get();
  for (size_t i = 0; i < pending.size(); ++i) (*verdicts)[pending[i].offset] = intact[i] != 0;
}

}  // namespace

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
    const std::string block = std::to_string(kBlockSize);
    const std::string two_blocks = std::to_string(2 * kBlockSize);
    return InvalidArgumentError(
        "log options: segment_size and batch_capacity must be multiples of " + block +
        ", batch_capacity >= " + two_blocks + " and segment_size >= batch_capacity + " +
        two_blocks);
  }
  RecoveryReport local_report;
  if (report == nullptr) report = &local_report;
  std::unique_ptr<Log> log(new Log(fs, dir, options));
  std::vector<Record> survivors;
  log->recovery_buffers_ = std::make_unique<ScanBuffers>();
  Status recovered = log->Recover(visitor, report, &survivors);
  log->recovery_buffers_.reset();
  SPOOL_RETURN_IF_ERROR(recovered);
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

// ---- Recovery --------------------------------------------------------------------------

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
    if (name.starts_with(kSegmentPrefix) && name.ends_with(kSegmentTempSuffix)) {
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
    if (seg->size < kMinSegmentFileSize) {
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
  // Segments written with O_DIRECT are read with O_DIRECT too (see ReadSegment).
  ScanBuffers local;
  ScanBuffers& buffers = recovery_buffers_ != nullptr ? *recovery_buffers_ : local;
  ScanWindow window(fs_, seg.direct != nullptr ? *seg.direct : *seg.file, limit,
                    AlignUp(options_.batch_capacity + kBlockSize, kBlockSize), &report->bytes,
                    buffers.bufs, &buffers.size);
  auto view = [&](uint64_t off, uint64_t n) { return window.View(off, n); };
  // Payload verdicts computed ahead by VerifyAhead, by offset; each is used once.
  std::unordered_map<uint64_t, bool> verdicts;
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
      bool intact = false;
      if (r != nullptr) {
        auto it = verdicts.find(pos);
        if (it == verdicts.end()) {
          VerifyAhead(r, pos, window.InMemory(pos), epoch, limit, &verdicts);
          it = verdicts.find(pos);
        }
        intact = it != verdicts.end() && it->second;
        if (it != verdicts.end()) verdicts.erase(it);
      }
      if (intact) {
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

}  // namespace spool::log
