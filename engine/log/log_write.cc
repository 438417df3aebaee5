// Group commit: producers reserve room in the open batch and encode their records in
// parallel; the I/O workers place each batch at the end of the active segment, write it,
// acknowledge the batches in log order, and run the durable hook and the producers'
// callbacks. After a failed write or sync, the unacknowledged batches are written once
// more into a fresh segment (docs/durability.md, "Write protocol").

#include <algorithm>
#include <chrono>

#include "log/log.h"
#include "log/log_impl.h"
#include "spool/logging.h"
#include "util/futex.h"

namespace spool::log {
namespace {

using Clock = std::chrono::steady_clock;

// A batch written with O_DIRECT goes out in at most this many parallel pieces.
constexpr size_t kMaxWritePieces = 64;

}  // namespace

uint64_t AppendRecord::payload_size() const {
  uint64_t n = 0;
  for (int i = 0; i < part_count; ++i) n += parts[i].size();
  return n;
}

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
  io::WriteOp ops[kMaxWritePieces];
  size_t nops = 0;
  io::Sync sync = io::Sync::kData;
  if (b.seg->direct != nullptr) {
    // O_DSYNC writes are durable on completion and run in parallel.
    sync = io::Sync::kNone;
    const uint64_t piece = std::max<uint64_t>(AlignUp(options_.direct_io_piece, kBlockSize),
                                              AlignUp(b.total / kMaxWritePieces + 1, kBlockSize));
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
  // Nothing written to the segment after its last acknowledged batch is trusted, not even
  // later batches that reported success (docs/durability.md, rule 4 of the contract).
  // Seal it there; the next segment's header records that end. Every unacknowledged batch
  // is written again, once, in order, into fresh segments.
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

}  // namespace spool::log
