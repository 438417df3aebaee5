// Admission and health of the shards, statistics, and the maintenance loop of each shard
// with what it runs besides reclamation: index checkpoints, the re-probe of a latched
// fault, the index catch-up after an index fault, the scrubber and the quarantine of what
// it finds damaged.

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/layout.h"
#include "core/spool_impl.h"
#include "spool/logging.h"
#include "spool/smtp_reply.h"
#include "util/histogram.h"
#include "util/sync_point.h"

namespace spool::internal {

// ---- Admission -----------------------------------------------------------------------------

Status SpoolImpl::LatchedFault(Shard& shard) {
  Status s = shard.log->health();
  if (s.ok()) s = IndexHealth(shard);
  if (s.ok()) s = shard.index->BackgroundError();
  return s;
}

Status SpoolImpl::ShardFault(Shard& shard) {
  Status s = LatchedFault(shard);
  if (s.ok()) return s;
  // A full disk and a permission or read-only fault keep their own replies (452, 451
  // 4.3.5): they tell the sender and the operator what is wrong. After an I/O error the
  // operation that met it got 451 4.3.0; until a re-probe passes the shard is not serving
  // (421 4.3.2, "latched unhealthy": docs/errors.md).
  if (s.code() == Code::kStorageFull || s.code() == Code::kPermission) return s;
  return UnavailableError(shard.dir + " is latched unhealthy until a re-probe passes (" +
                          s.ToString() + ")");
}

Status SpoolImpl::IndexHealth(Shard& shard) {
  if (!shard.index_faulted.load()) return Status::Ok();
  MutexLock l(&shard.mu);
  return shard.index_fault;
}

StatusOr<io::SpaceInfo> SpoolImpl::ShardSpace(Shard& shard, uint64_t expected_size) {
  const int64_t now = static_cast<int64_t>(NowMicros());
  {
    MutexLock l(&shard.space_mu);
    // Plenty: four times what admission needs, so that 100 ms of writing at any speed a
    // disk can take cannot cross the minimum unnoticed.
    const bool plenty = shard.space.bytes_free > 4 * (options_.min_free_bytes + expected_size) &&
                        shard.space.inodes_free > 4 * options_.min_free_inodes;
    if (shard.space_at_us >= 0 && now - shard.space_at_us < kSpaceCacheUs && plenty) {
      return shard.space;
    }
  }
  SPOOL_ASSIGN_OR_RETURN(io::SpaceInfo space, fs_->GetSpace(shard.dir));
  MutexLock l(&shard.space_mu);
  shard.space = space;
  shard.space_at_us = now;
  return space;
}

Status SpoolImpl::ShardAdmission(Shard& shard, uint64_t expected_size) {
  SPOOL_RETURN_IF_ERROR(ShardFault(shard));
  SPOOL_ASSIGN_OR_RETURN(io::SpaceInfo space, ShardSpace(shard, expected_size));
  if (space.bytes_free < options_.min_free_bytes + expected_size) {
    return StorageFullError(shard.dir + ": " + std::to_string(space.bytes_free >> 20) +
                            " MiB free, under the minimum of " +
                            std::to_string(options_.min_free_bytes >> 20) +
                            " MiB plus the message");
  }
  if (space.inodes_total > 0 && space.inodes_free < options_.min_free_inodes) {
    return StorageFullError(shard.dir + ": " + std::to_string(space.inodes_free) +
                            " inodes free, under the minimum of " +
                            std::to_string(options_.min_free_inodes));
  }
  return Status::Ok();
}

StatusOr<Shard*> SpoolImpl::PickShard(uint64_t expected_size) {
  {
    MutexLock l(&mu_);
    if (closing_) return UnavailableError("the spool is closing");
  }
  Status first;
  const uint32_t start = next_shard_.fetch_add(1);
  for (size_t i = 0; i < shards_.size(); ++i) {
    Shard* s = shards_[(start + i) % shards_.size()].get();
    Status a = ShardAdmission(*s, expected_size);
    if (a.ok()) return s;
    if (first.ok()) first = a;
  }
  return first;
}

// ---- Health and statistics -----------------------------------------------------------------

Status SpoolImpl::Admission(uint64_t expected_size) {
  if (options_.read_only) return UnavailableError("the spool is open read-only");
  if (expected_size > options_.max_message_size) {
    return TooBigError("message of " + std::to_string(expected_size) + " bytes over the limit of " +
                       std::to_string(options_.max_message_size));
  }
  return PickShard(expected_size).status();
}

Health SpoolImpl::GetHealth() {
  Health h;
  size_t bad = 0;
  Status first;
  for (auto& shard : shards_) {
    Status s = options_.read_only ? Status::Ok() : ShardAdmission(*shard, 0);
    if (!s.ok()) {
      ++bad;
      if (first.ok()) first = s;
    }
    h.shards.push_back({shard->dir, s});
  }
  bool closing;
  {
    MutexLock l(&mu_);
    closing = closing_;
  }
  if (closing) {
    h.state = HealthState::kRefusing;
    h.status = UnavailableError("the spool is closing");
  } else if (bad == 0) {
    h.state = HealthState::kHealthy;
  } else if (bad < shards_.size()) {
    h.state = HealthState::kDegraded;  // some shards refuse; the others accept
  } else {
    h.state = HealthState::kRefusing;
    h.status = first;
  }
  return h;
}

Stats SpoolImpl::GetStats() {
  Stats st;
  Histogram sync;
  uint64_t batch_records = 0;
  for (auto& shard : shards_) {
    CountEntries(*shard);
    st.messages += static_cast<uint64_t>(std::max<int64_t>(0, shard->messages.load()));
    st.body_bytes += static_cast<uint64_t>(std::max<int64_t>(0, shard->body_bytes.load()));
    st.live_bytes += static_cast<uint64_t>(std::max<int64_t>(0, shard->live_bytes.load()));
    log::LogStats ls = shard->log->Stats();
    st.segments_live += ls.segments_live;
    st.segments_free += ls.segments_free;
    st.segment_bytes += (ls.segments_live + ls.segments_free) * ls.segment_size;
    st.batches += ls.batches;
    st.log_bytes_written += ls.bytes;
    batch_records += ls.records;
    sync.Merge(ls.sync_us);
    StatusOr<io::SpaceInfo> space = fs_->GetSpace(shard->dir);
    if (space.ok()) st.disk_free_bytes += space->bytes_free;
    // Ids are time-ordered: the first entry of each shard is its oldest message.
    shard->index
        ->ForEach([&](const MessageId&, const IndexEntry& e) {
          if (st.oldest_arrival_ms == 0 || e.info.arrival_ms < st.oldest_arrival_ms) {
            st.oldest_arrival_ms = e.info.arrival_ms;
          }
          return false;
        })
        .IgnoreError();  // statistics are best effort
  }
  st.enqueued = enqueued_.load();
  st.removed = removed_.load();
  st.reclaimed_segments = reclaimed_.load();
  st.relocated_bytes = relocated_bytes_.load();
  st.faults = faults_.load();
  st.recoveries = recoveries_.load();
  st.scrubbed_bytes = scrubbed_bytes_.load();
  st.corrupt_found = corrupt_found_.load();
  st.quarantined = quarantined_.load();
  st.sync_p50_us = sync.Percentile(0.5);
  st.sync_p99_us = sync.Percentile(0.99);
  st.sync_p999_us = sync.Percentile(0.999);
  if (st.batches > 0) {
    st.mean_batch_records = static_cast<double>(batch_records) / st.batches;
    st.mean_batch_bytes = static_cast<double>(st.log_bytes_written) / st.batches;
  }
  return st;
}

// Counts entries and live bytes once after open; the durable hook keeps them current from
// then on (see Shard::Counted).
void SpoolImpl::CountEntries(Shard& shard) {
  std::call_once(shard.counted, [&] { CountEntriesOnce(shard); });
}

void SpoolImpl::CountEntriesOnce(Shard& shard) {
  // Chunks, so that commits wait for the hook only briefly.
  constexpr int kChunk = 10000;
  std::optional<MessageId> from;
  for (bool more = true; more;) {
    MutexLock hook(&shard.hook_mu);
    int64_t n = 0, body = 0, live = 0;
    more = false;
    Status s = shard.index->ForEach(
        [&](const MessageId& id, const IndexEntry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.hook_mu) {
          if (from && id == *from) return true;  // counted in the previous chunk
          if (n == kChunk) {
            more = true;
            return false;
          }
          ++n;
          body += static_cast<int64_t>(e.info.size);
          live += static_cast<int64_t>(e.footprint());
          shard.counted_through = id;
          return true;
        },
        from ? &*from : nullptr);
    if (!s.ok()) {
      Log(LogLevel::kWarning, shard.dir + ": counting the messages: " + s.ToString() +
                                  " (statistics are estimates until the next open)");
      more = false;
    }
    shard.messages.fetch_add(n);
    shard.body_bytes.fetch_add(body);
    shard.live_bytes.fetch_add(live);
    from = shard.counted_through;
    if (!more) shard.counting = false;
  }
}

// ---- The maintenance loop: checkpoints, then reclamation (spool_reclaim.cc) ----------------

void SpoolImpl::MaintenanceLoop(Shard* shard) {
  CountEntries(*shard);
  auto last_flush = std::chrono::steady_clock::now();
  for (;;) {
    {
      MutexLock l(&mu_);
      auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return closing_; };
      mu_.AwaitWithTimeout(absl::Condition(&stop), absl::Milliseconds(100));
      if (closing_) return;
    }
    Reprobe(*shard);
    if (!LatchedFault(*shard).ok()) continue;  // no flushes or relocation until it recovers
    Scrub(*shard);
    const auto now = std::chrono::steady_clock::now();
    if (now - last_flush >= std::chrono::milliseconds(options_.checkpoint_interval_ms) ||
        shard->unflushed_records.load() >= kFlushRecords) {
      shard->unflushed_records.store(0);
      if (shard->dirty.exchange(false)) {
        Status s = shard->index->Flush();
        if (!s.ok()) Log(LogLevel::kWarning, shard->dir + ": index checkpoint: " + s.ToString());
      }
      last_flush = now;
    }
    SPOOL_SYNC_POINT("SpoolImpl::MaintenanceLoop:BeforeReclaim");
    // A few segments per round, so that reclamation keeps up with a busy writer.
    for (int i = 0; options_.reclaim && i < 8; ++i) {
      StatusOr<bool> reclaimed = ReclaimOldest(*shard);
      if (!reclaimed.ok()) {
        Log(LogLevel::kWarning, shard->dir + ": reclamation: " + reclaimed.status().ToString());
      }
      if (!reclaimed.ok() || !*reclaimed) break;
    }
    SPOOL_SYNC_POINT("SpoolImpl::MaintenanceLoop:AfterReclaim");
  }
}

// ---- Failure handling: re-probe and scrubbing ----------------------------------------------

void SpoolImpl::Reprobe(Shard& shard) {
  const Status fault = LatchedFault(shard);
  const auto now = std::chrono::steady_clock::now();
  if (fault.ok()) {
    shard.seen_fault = Status::Ok();
    return;
  }
  if (shard.seen_fault.ok()) {
    faults_.fetch_add(1);
    shard.seen_fault = fault;
    shard.fault_since = now;
    shard.next_probe = now + std::chrono::milliseconds(options_.reprobe_interval_ms);
    shard.last_probe = Status::Ok();
    Log(LogLevel::kError, shard.dir + ": shard refuses new mail (" +
                              SmtpReplyFor(ShardFault(shard)).ToString() +
                              "): " + fault.ToString() + "; re-probing the disk every " +
                              std::to_string(options_.reprobe_interval_ms) + " ms");
    return;
  }
  if (now < shard.next_probe) return;
  shard.next_probe = now + std::chrono::milliseconds(options_.reprobe_interval_ms);
  Status probe = ProbeDisk(shard);
  // Cause gone: resume RocksDB, catch the index up with the log, clear the log's latch.
  if (probe.ok() && !shard.index->BackgroundError().ok()) {
    Status resumed = shard.index->Resume();
    if (!resumed.ok()) {
      // An error RocksDB will not resume from: open the index again. What it had not
      // flushed is gone, so the catch-up replays the log from its durable checkpoint.
      // The index fault is set under the hook mutex, so that from the next commit group on
      // the hook leaves the index alone; the reopen itself runs without it, so that
      // commits are not held up while it waits for scans of the old database to end.
      {
        MutexLock hook(&shard.hook_mu);
        MutexLock l(&shard.mu);
        if (shard.index_fault.ok()) shard.index_fault = resumed;
        shard.index_faulted.store(true);
      }
      probe = shard.index->Reopen();
      Log(LogLevel::kWarning, shard.dir + ": " + resumed.ToString() + "; reopened the index: " +
                                  (probe.ok() ? std::string("OK") : probe.ToString()));
    }
  }
  if (probe.ok()) probe = CatchUpIndex(shard);
  SPOOL_SYNC_POINT_CALLBACK("SpoolImpl::Reprobe:Probed", &probe);
  if (!probe.ok()) {
    if (probe.ToString() != shard.last_probe.ToString()) {
      Log(LogLevel::kWarning, shard.dir + ": re-probe: " + probe.ToString());
    }
    shard.last_probe = probe;
    return;
  }
  shard.log->ClearFault();
  recoveries_.fetch_add(1);
  const auto secs = std::chrono::duration_cast<std::chrono::seconds>(now - shard.fault_since);
  Log(LogLevel::kInfo, shard.dir + ": re-probe passed after " + std::to_string(secs.count()) +
                           " s: the shard accepts mail again (the fault was: " + fault.ToString() +
                           ")");
  shard.seen_fault = Status::Ok();
}

Status SpoolImpl::ProbeDisk(Shard& shard) {
  // Both directories the shard writes: the log's and the index's (they may fail apart,
  // e.g. a quota or a bad sector under one of them).
  for (const char* sub : {kLogDir, kIndexDir}) {
    const std::string path = shard.dir + "/" + sub + "/" + kProbeFile;
    {
      SPOOL_ASSIGN_OR_RETURN(std::unique_ptr<io::File> f,
                             fs_->Open(path, io::OpenOptions{.create = true}));
      const std::string block(log::kBlockSize, 'p');
      io::WriteOp op{0, block.data(), block.size()};
      SPOOL_RETURN_IF_ERROR(fs_->WriteBatch(*f, {&op, 1}, io::Sync::kData));
    }
    SPOOL_RETURN_IF_ERROR(fs_->Unlink(path));
  }
  SPOOL_ASSIGN_OR_RETURN(io::SpaceInfo space, fs_->GetSpace(shard.dir));
  if (space.bytes_free < options_.min_free_bytes) {
    return StorageFullError(shard.dir + ": " + std::to_string(space.bytes_free >> 20) +
                            " MiB free, under the minimum of " +
                            std::to_string(options_.min_free_bytes >> 20) + " MiB");
  }
  return Status::Ok();
}

Status SpoolImpl::CatchUpIndex(Shard& shard) {
  if (IndexHealth(shard).ok()) return Status::Ok();
  // The durable hook waits meanwhile: the log's records reach the index in order.
  MutexLock hook(&shard.hook_mu);
  SPOOL_ASSIGN_OR_RETURN(log::Location from, shard.index->Checkpoint());
  const log::Location to = shard.hooked_end;
  auto batch = std::make_unique<index::Index::Batch>(*shard.index);
  std::map<std::string, std::optional<IndexEntry>> pending;
  uint64_t records = 0;
  std::vector<log::Damage> damage;
  SPOOL_RETURN_IF_ERROR(shard.log->ScanRange(
      from, to,
      [&](const log::Record& r) -> Status {
        SPOOL_RETURN_IF_ERROR(Replay(shard, r, batch.get(), &pending));
        ++records;
        if (pending.size() < kReplayBatchOps) return Status::Ok();
        batch->SetCheckpoint({r.location.segment, r.location.offset + r.location.size, 0});
        SPOOL_RETURN_IF_ERROR(shard.index->Write(*batch));
        batch = std::make_unique<index::Index::Batch>(*shard.index);
        pending.clear();
        return Status::Ok();
      },
      &damage));
  if (to.segment != 0) batch->SetCheckpoint(to);
  SPOOL_RETURN_IF_ERROR(shard.index->Write(*batch));
  shard.dirty.store(true);
  for (const log::Damage& d : damage) {
    corrupt_found_.fetch_add(1);
    Log(LogLevel::kError, shard.dir + ": " + d.kind + " in segment " + std::to_string(d.segment) +
                              " at offset " + std::to_string(d.offset) + ": " + d.detail +
                              " (run spool-fsck)");
  }
  MutexLock l(&shard.mu);
  Log(LogLevel::kInfo, shard.dir + ": the index caught up with " + std::to_string(records) +
                           " log records written while it was failing (" +
                           shard.index_fault.ToString() + ")");
  shard.index_fault = Status::Ok();
  shard.index_faulted.store(false);
  return Status::Ok();
}

void SpoolImpl::Scrub(Shard& shard) {
  if (options_.scrub_bytes_per_sec == 0) return;
  const auto now = std::chrono::steady_clock::now();
  if (now < shard.scrub_at) return;
  const std::vector<uint64_t> live = shard.log->LiveSegments();
  const uint64_t active = shard.log->ActiveSegment();
  uint64_t seq = 0;
  for (int pass = 0; pass < 2 && seq == 0; ++pass) {
    for (uint64_t s : live) {
      if (s != active && s >= shard.scrub_next) {
        seq = s;
        break;
      }
    }
    if (seq == 0) shard.scrub_next = 0;  // a full pass done: start over
  }
  if (seq == 0) return;
  std::vector<log::Damage> damage;
  Status s = shard.log->ScanSealed(seq, {}, &damage);
  shard.scrub_next = seq + 1;
  const uint64_t bytes = shard.segment_size;
  shard.scrub_at = now + std::chrono::microseconds(bytes * 1000000 / options_.scrub_bytes_per_sec);
  if (!s.ok()) {
    // Reclaimed meanwhile, or unreadable: a read error is a disk fault the writes will
    // meet too; log it and go on.
    if (s.code() != Code::kInvalidArgument) {
      Log(LogLevel::kWarning,
          shard.dir + ": scrubbing segment " + std::to_string(seq) + ": " + s.ToString());
    }
    return;
  }
  scrubbed_bytes_.fetch_add(bytes);
  for (const log::Damage& d : damage) {
    corrupt_found_.fetch_add(1);
    Log(LogLevel::kError, shard.dir + ": scrubber: " + d.kind + " in segment " +
                              std::to_string(d.segment) + " at offset " + std::to_string(d.offset) +
                              ": " + d.detail);
    QuarantineDamage(shard, d);
  }
}

void SpoolImpl::QuarantineDamage(Shard& shard, const log::Damage& d) {
  // The records of `e` that the damage falls in.
  auto hit = [&](const IndexEntry& e) {
    std::vector<log::Location> out;
    auto take = [&](const log::Location& loc) {
      if (loc.segment == d.segment && loc.offset <= d.offset && d.offset < loc.offset + loc.size) {
        out.push_back(loc);
      }
    };
    take(e.main);
    if (e.state.segment != 0) take(e.state);
    for (const log::Location& c : e.chunks) take(c);
    return out;
  };
  std::vector<std::pair<MessageId, std::vector<log::Location>>> victims;
  if (d.id.hi != 0 || d.id.lo != 0) {
    const MessageId id(d.id.hi, d.id.lo);
    StatusOr<std::optional<IndexEntry>> e = shard.index->Get(id);
    if (e.ok() && e->has_value()) victims.emplace_back(id, hit(**e));
  } else {
    // The header is damaged too, so the id is unknown: find who points there.
    shard.index
        ->ForEach([&](const MessageId& id, const IndexEntry& e) {
          victims.emplace_back(id, hit(e));
          if (victims.back().second.empty()) victims.pop_back();
          return true;
        })
        .IgnoreError();  // best effort; spool-fsck finds the rest
  }
  for (const auto& victim : victims) {
    // Not a structured binding: clang before 16 cannot capture one in a lambda.
    const MessageId& id = victim.first;
    const std::vector<log::Location>& locations = victim.second;
    // Read the damaged records once more, the way a delivery would: damage that does not
    // repeat was on the read path, not on the disk.
    const bool confirmed = std::any_of(locations.begin(), locations.end(), [&](const auto& loc) {
      return ReadRecordPayload(shard, id, loc).status().code() == Code::kCorruption;
    });
    if (confirmed) {
      Quarantine(id, d.kind + ": " + d.detail);
    } else if (!locations.empty()) {
      Log(LogLevel::kWarning, "message " + id.ToString() + ": damage seen by the scrubber did " +
                                  "not repeat on a second read (" + d.detail + ")");
    }
  }
}

void SpoolImpl::Quarantine(const MessageId& id, const std::string& why) {
  bool changed = false;
  Status s = ChangeState(id, [&](MessageInfo* info) {
    changed = info->state != MessageState::kCorrupt;
    info->state = MessageState::kCorrupt;
    return Status::Ok();
  });
  if (s.ok() && changed) {
    quarantined_.fetch_add(1);
    Log(LogLevel::kError, "message " + id.ToString() + " quarantined as corrupt (" + why +
                              "); spool-ctl show/delete it, spool-fsck reports it");
  } else if (!s.ok()) {
    Log(LogLevel::kWarning,
        "message " + id.ToString() + ": could not quarantine it: " + s.ToString());
  }
}

}  // namespace spool::internal
