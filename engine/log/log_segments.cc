// Segment files: their names, pre-formatting ahead of need by the preallocator thread,
// activation (the header written and synced alone), the switch to a fresh segment when a
// batch does not fit, and recycling.

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "log/log.h"
#include "log/log_impl.h"
#include "spool/logging.h"

namespace spool::log {
namespace {

uint64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
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

StatusOr<Log::Segment*> Log::NewSegmentFile(uint32_t slot) {
  auto seg = std::make_unique<Segment>();
  seg->slot = slot;
  seg->path = dir_ + "/" + SegmentFileName(slot);
  seg->size = options_.segment_size;
  const std::string tmp = seg->path + kSegmentTempSuffix;
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

Status Log::OpenDirect(Segment& seg) {
  if (!options_.direct_io || seg.direct != nullptr) return Status::Ok();
  io::OpenOptions o;
  o.read_only = options_.read_only;
  o.direct = true;
  o.dsync = !options_.read_only;
  SPOOL_ASSIGN_OR_RETURN(seg.direct, fs_->Open(seg.path, o));
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

}  // namespace spool::log
