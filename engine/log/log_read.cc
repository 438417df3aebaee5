// Reads of written records: by location (Read), a sealed segment's records (ScanSealed),
// a range of the log (ScanRange); segment bytes through O_DIRECT where they were written
// that way; the log's health and statistics.

#include <algorithm>
#include <cstring>

#include "log/log.h"
#include "log/log_impl.h"

namespace spool::log {

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
