// Reclamation: the oldest sealed segment of a shard is recycled once most of it is
// garbage (or the shard uses more than twice the space its live data needs), after its
// live records are copied to the head of the log and the index durably points at the
// copies.

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "core/spool_impl.h"
#include "index/codec.h"
#include "spool/logging.h"
#include "util/sync_point.h"

namespace spool::internal {
namespace {

// Reclamation copies forward this many messages at once, holding their stripe locks
// until the copies are durable and indexed (about one group commit).
constexpr size_t kRelocateGroup = 64;
// ... and keeps at most this many payload bytes of them in flight at once (the log's
// batches stay open to other producers).
constexpr uint64_t kRelocateBytesInFlight = 4u << 20;
// The scan of a segment being reclaimed keeps at most this many payload bytes for the
// copies; the rest are read again when copied.
constexpr uint64_t kScanKeepBytes = 32u << 20;

// Whether `e` (the index entry of a message) points at the record at `loc`.
bool References(const IndexEntry& e, const log::Location& loc) {
  if (e.main == loc || (e.state.segment != 0 && e.state == loc)) return true;
  return std::find(e.chunks.begin(), e.chunks.end(), loc) != e.chunks.end();
}

// Fills recs[0] (the main record: `main_type`, `main_payload`) and, if the message has a
// state record, recs[1] (its state, encoded into *state_payload) for a copy of `entry`
// made by reclamation; op->slots says which is which. Returns the number of records.
// The records point into the payloads and at op: all must outlive the append.
size_t PrepareCopy(const IndexEntry& entry, log::RecordType main_type,
                   std::string_view main_payload, std::string* state_payload, IndexOp* op,
                   log::AppendRecord recs[2]) {
  const log::RecordId id = ToRecordId(entry.info.id);
  recs[0].type = main_type;
  recs[0].id = id;
  recs[0].parts[0] = AsBytes(main_payload);
  recs[0].part_count = 1;
  recs[0].context = op;
  recs[0].flags = log::kFlagRelocated;
  op->slots.push_back(IndexOp::Slot::kMain);
  if (entry.state.segment == 0) return 1;
  *state_payload = internal::EncodeState(entry);
  recs[1].type = log::RecordType::kStateUpdate;
  recs[1].id = id;
  recs[1].parts[0] = AsBytes(*state_payload);
  recs[1].part_count = 1;
  recs[1].context = op;
  recs[1].flags = log::kFlagRelocated;
  op->slots.push_back(IndexOp::Slot::kState);
  return 2;
}

// Holds a set of mutexes, locked in the order given (callers sort them), for a scope.
class StripeLocks {
 public:
  explicit StripeLocks(std::span<Mutex* const> mutexes) ABSL_NO_THREAD_SAFETY_ANALYSIS
      : mutexes_(mutexes) {
    for (Mutex* m : mutexes_) m->Lock();
  }
  ~StripeLocks() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    for (auto it = mutexes_.rbegin(); it != mutexes_.rend(); ++it) (*it)->Unlock();
  }
  StripeLocks(const StripeLocks&) = delete;
  StripeLocks& operator=(const StripeLocks&) = delete;

 private:
  std::span<Mutex* const> mutexes_;
};

}  // namespace

StatusOr<bool> SpoolImpl::ReclaimOldest(Shard& shard) {
  const std::vector<uint64_t> live = shard.log->LiveSegments();
  const uint64_t active = shard.log->ActiveSegment();
  std::vector<uint64_t> sealed;
  for (uint64_t seq : live) {
    if (seq != active) sealed.push_back(seq);
  }
  // Keep a couple of sealed segments: recently written mail is usually removed soon.
  if (sealed.size() < 3) return false;
  const uint64_t oldest = sealed.front();
  {
    MutexLock l(&shard.mu);
    if (shard.pinned.count(oldest) != 0) return false;  // a streamed message is being written
  }
  // Every record of the segment must have reached the index (the durable hook runs after
  // the log, in order), or the scan below could miss a message about to be indexed.
  SPOOL_ASSIGN_OR_RETURN(log::Location applied, shard.index->Checkpoint());
  if (applied.segment <= oldest) return false;
  const uint64_t segment = shard.segment_size;
  const uint64_t used = live.size() * segment;
  const uint64_t live_bytes = static_cast<uint64_t>(std::max<int64_t>(0, shard.live_bytes.load()));

  if (oldest == shard.kept_segment &&
      std::chrono::steady_clock::now() - shard.kept_at < kRescanInterval) {
    return false;
  }
  // Measure what in the oldest segment is still referenced by the index, keeping the
  // payloads of whole (not chunked) messages for the copy, up to kScanKeepBytes.
  uint64_t referenced = 0, kept = 0;
  std::vector<MessageId> movers, streamed;  // whole messages; streamed ones (chunks)
  std::map<MessageId, ScannedRecord> scanned;
  std::vector<log::Damage> scan_damage;
  SPOOL_RETURN_IF_ERROR(shard.log->ScanSealed(
      oldest,
      [&](const log::Record& r) -> Status {
        // The index never points at a removal (about half the records of a busy spool):
        // no lookup needed.
        if (r.type == log::RecordType::kRemove) return Status::Ok();
        const MessageId id(r.id.hi, r.id.lo);
        SPOOL_ASSIGN_OR_RETURN(std::optional<IndexEntry> e, shard.index->Get(id));
        if (!e || !References(*e, r.location)) return Status::Ok();
        referenced += r.location.size;
        std::vector<MessageId>& list = e->chunked() ? streamed : movers;
        if (list.empty() || list.back() != id) list.push_back(id);
        if (!e->chunked() && e->main == r.location && kept + r.payload.size() <= kScanKeepBytes) {
          kept += r.payload.size();
          scanned[id] = {r.location, r.payload};
        }
        return Status::Ok();
      },
      &scan_damage));
  for (const log::Damage& d : scan_damage) {
    Log(LogLevel::kError,
        shard.dir + ": reclamation scan of segment " + std::to_string(oldest) + ": " + d.detail);
  }
  // Reclaim when most of the segment is garbage, or when the spool uses more than twice
  // the space its live data needs.
  const bool mostly_garbage = referenced * 2 <= segment;
  const bool too_big = used > 2 * live_bytes + 3 * segment;
  if (!mostly_garbage && !too_big) {
    shard.kept_segment = oldest;
    shard.kept_at = std::chrono::steady_clock::now();
    return false;
  }

  for (std::vector<MessageId>* list : {&movers, &streamed}) {
    std::sort(list->begin(), list->end());
    list->erase(std::unique(list->begin(), list->end()), list->end());
  }
  for (size_t i = 0; i < movers.size(); i += kRelocateGroup) {
    const std::span<const MessageId> group(movers.data() + i,
                                           std::min(kRelocateGroup, movers.size() - i));
    SPOOL_ASSIGN_OR_RETURN(bool moved, RelocateGroup(shard, oldest, group, scanned));
    if (!moved) return false;
  }
  // Streamed messages are large and few: one at a time, chunk by chunk, each under its
  // own stripe lock only.
  for (const MessageId& id : streamed) {
    MutexLock stripe(&StripeOf(shard, id));
    IndexEntry entry;
    SPOOL_ASSIGN_OR_RETURN(CopyVerdict verdict, JudgeCopy(shard, id, oldest, &entry));
    if (verdict == CopyVerdict::kWait) return false;
    SPOOL_RETURN_IF_ERROR(IndexHealth(shard));
    if (verdict == CopyVerdict::kCopy && entry.chunked()) {
      SPOOL_RETURN_IF_ERROR(RelocateChunked(shard, entry));
    }
  }
  // A copy made while the index was failing is not in it: the segment must stay.
  SPOOL_RETURN_IF_ERROR(IndexHealth(shard));
  // The index must durably point at the new copies before the old ones can go: flush,
  // and check that the checkpoint has passed the segment.
  SPOOL_RETURN_IF_ERROR(shard.index->Flush());
  SPOOL_ASSIGN_OR_RETURN(log::Location checkpoint, shard.index->Checkpoint());
  if (checkpoint.segment <= oldest) return false;
  SPOOL_RETURN_IF_ERROR(shard.log->Recycle(oldest));
  Log(LogLevel::kDebug, shard.dir + ": recycled segment " + std::to_string(oldest) + " (" +
                            std::to_string(movers.size()) + " messages moved; checkpoint " +
                            std::to_string(checkpoint.segment) + ":" +
                            std::to_string(checkpoint.offset) + ")");
  reclaimed_.fetch_add(1);
  return true;
}

StatusOr<SpoolImpl::CopyVerdict> SpoolImpl::JudgeCopy(Shard& shard, const MessageId& id,
                                                      uint64_t oldest, IndexEntry* entry) {
  SPOOL_ASSIGN_OR_RETURN(std::optional<IndexEntry> e, shard.index->Get(id));
  if (!e) return CopyVerdict::kSkip;  // removed meanwhile
  // A removal in flight: its outcome decides whether the records are still needed.
  if (shard.Removing(id)) return CopyVerdict::kWait;
  // A quarantined message's records are damaged and never read again: they are not
  // copied (they could not be), and its envelope stays in the index for the operator.
  if (e->info.state == MessageState::kCorrupt) return CopyVerdict::kSkip;
  bool in_oldest = e->main.segment == oldest || e->state.segment == oldest;
  for (const log::Location& c : e->chunks) in_oldest |= c.segment == oldest;
  if (!in_oldest) return CopyVerdict::kSkip;
  *entry = std::move(*e);
  return CopyVerdict::kCopy;
}

StatusOr<bool> SpoolImpl::RelocateGroup(Shard& shard, uint64_t oldest,
                                        std::span<const MessageId> group,
                                        std::map<MessageId, ScannedRecord>& scanned) {
  // The stripe locks of the whole group are held until its copies are durable and
  // indexed, so that no state change or removal of these messages interleaves (the
  // protocol of every change: design.md). Only reclamation holds more than one stripe,
  // and it takes them in address order (they are the shard's own).
  std::vector<Mutex*> locks;
  for (const MessageId& id : group) locks.push_back(&StripeOf(shard, id));
  std::sort(locks.begin(), locks.end());
  locks.erase(std::unique(locks.begin(), locks.end()), locks.end());
  StripeLocks held(locks);
  SPOOL_SYNC_POINT_CALLBACK("SpoolImpl::RelocateGroup:StripesLocked", &group);

  // One append per message, in flight together (up to kRelocateBytesInFlight); each
  // callback runs after the durable hook has indexed its copy. The callbacks share the
  // group's state (and so keep its mutex alive until the last of them has let go of it).
  struct Copy {
    IndexOp op;
    std::string main_payload, state_payload;
    log::AppendRecord recs[2];
  };
  struct Group {
    std::vector<std::unique_ptr<Copy>> copies;
    Mutex mu;
    size_t pending ABSL_GUARDED_BY(mu) = 0;
    Status first_error ABSL_GUARDED_BY(mu);
    uint64_t moved ABSL_GUARDED_BY(mu) = 0;
  };
  auto g = std::make_shared<Group>();
  // Waits for every append issued so far; returns the first failure, if any.
  auto drain = [&]() -> Status {
    MutexLock l(&g->mu);
    auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(g->mu) { return g->pending == 0; };
    g->mu.Await(absl::Condition(&done));
    relocated_bytes_.fetch_add(std::exchange(g->moved, 0));
    return g->first_error;
  };
  // Ends the group: waits for what is in flight, then answers `result`, else the first
  // failed append, else whether the index took every copy.
  auto finish = [&](Status result) -> Status {
    Status appended = drain();
    if (!result.ok()) return result;
    if (!appended.ok()) return appended;
    return IndexHealth(shard);  // a copy made while the index fails is not in it
  };
  SPOOL_RETURN_IF_ERROR(IndexHealth(shard));
  uint64_t in_flight = 0;
  for (const MessageId& id : group) {
    IndexEntry entry;
    StatusOr<CopyVerdict> verdict = JudgeCopy(shard, id, oldest, &entry);
    if (!verdict.ok()) return finish(verdict.status());
    if (*verdict == CopyVerdict::kWait) {
      SPOOL_RETURN_IF_ERROR(finish(Status::Ok()));
      return false;
    }
    // Streamed messages are copied apart (ReclaimOldest).
    if (*verdict == CopyVerdict::kSkip || entry.chunked()) continue;
    auto copy = std::make_unique<Copy>();
    if (auto it = scanned.find(id); it != scanned.end() && it->second.location == entry.main) {
      copy->main_payload = std::move(it->second.payload);
    } else {
      StatusOr<std::string> payload = ReadRecordPayload(shard, id, entry.main);
      if (!payload.ok()) return finish(payload.status());
      copy->main_payload = std::move(payload).value();
    }
    copy->op.entry = entry;
    copy->op.old = entry;
    const size_t count = PrepareCopy(entry, log::RecordType::kMessage, copy->main_payload,
                                     &copy->state_payload, &copy->op, copy->recs);
    {
      MutexLock l(&g->mu);
      if (!g->first_error.ok()) break;  // no more copies after a failed one
      ++g->pending;
    }
    in_flight += copy->main_payload.size();
    const std::span<const log::AppendRecord> recs(copy->recs, count);
    g->copies.push_back(std::move(copy));
    shard.log->AppendAsync(recs, [g](const Status& s, std::span<const log::Location> locs) {
      MutexLock l(&g->mu);
      if (s.ok()) {
        for (const log::Location& loc : locs) g->moved += loc.size;
      } else if (g->first_error.ok()) {
        g->first_error = s;
      }
      --g->pending;
    });
    if (in_flight >= kRelocateBytesInFlight) {
      if (Status s = drain(); !s.ok()) return finish(s);
      in_flight = 0;
    }
  }
  SPOOL_RETURN_IF_ERROR(finish(Status::Ok()));
  return true;
}

// Copies a streamed message's chunks to the head of the log one by one, then its commit
// (and state) record. REQUIRES: the id's stripe lock is held, so that no update or
// removal of it interleaves.
Status SpoolImpl::RelocateChunked(Shard& shard, const IndexEntry& entry) {
  const MessageId id = entry.info.id;
  uint64_t moved = 0;
  std::vector<log::Location> chunks;
  for (const log::Location& c : entry.chunks) {
    SPOOL_ASSIGN_OR_RETURN(std::string piece, ReadRecordPayload(shard, id, c));
    log::AppendRecord rec;
    rec.type = log::RecordType::kBodyChunk;
    rec.flags = log::kFlagRelocated;
    rec.id = ToRecordId(id);
    rec.parts[0] = AsBytes(piece);
    rec.part_count = 1;
    std::vector<log::Location> loc;
    SPOOL_RETURN_IF_ERROR(shard.log->Append({&rec, 1}, &loc));
    chunks.push_back(loc[0]);
    moved += loc[0].size;
  }
  IndexOp op;
  op.entry = entry;
  op.old = entry;
  op.entry.chunks = chunks;
  const std::string commit = internal::EncodeCommit(entry.info, chunks);
  std::string state_payload;
  log::AppendRecord recs[2];
  const size_t n = PrepareCopy(entry, log::RecordType::kCommit, commit, &state_payload, &op, recs);
  std::vector<log::Location> locs;
  SPOOL_RETURN_IF_ERROR(shard.log->Append({recs, n}, &locs));
  for (const log::Location& l : locs) moved += l.size;
  relocated_bytes_.fetch_add(moved);
  return Status::Ok();
}

}  // namespace spool::internal
