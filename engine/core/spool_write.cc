// The write path: new messages (Enqueue, EnqueueAsync, streamed bodies through
// BodyWriter), their appends to the log, and the durable hook that indexes every record
// once the log has made it durable.

#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/spool_impl.h"
#include "index/codec.h"
#include "spool/logging.h"
#include "util/futex.h"

namespace spool::internal {
namespace {

// Validates an envelope for storing: kInvalidArgument with a clear reason.
Status ValidateEnvelope(const Envelope& envelope) {
  if (envelope.recipients.empty()) return InvalidArgumentError("a message needs a recipient");
  for (size_t i = 0; i < envelope.recipients.size(); ++i) {
    if (envelope.recipients[i].empty()) {
      return InvalidArgumentError("recipient " + std::to_string(i) + " is empty");
    }
  }
  if (envelope.queue.empty()) return InvalidArgumentError("the queue name is empty");
  if (envelope.queue.find('\0') != std::string::npos) {
    return InvalidArgumentError("the queue name contains a NUL byte");
  }
  return ValidateMetadata(envelope.metadata);
}

}  // namespace

// ---- The durable hook ----------------------------------------------------------------------

void SpoolImpl::OnDurable(Shard& shard, std::span<const log::CommittedRecord> records) {
  MutexLock hook(&shard.hook_mu);
  index::Index::Batch batch(*shard.index);
  for (const log::CommittedRecord& r : records) {
    auto* op = static_cast<IndexOp*>(r.context);
    if (op == nullptr) continue;
    op->locations.push_back(r.location);
    if (op->locations.size() < op->slots.size()) continue;
    const bool count = shard.Counted(op->entry.info.id);
    if (op->remove) {
      batch.Delete(op->entry);
      if (count) {
        shard.messages.fetch_sub(1);
        shard.body_bytes.fetch_sub(op->entry.info.size);
        shard.live_bytes.fetch_sub(op->entry.footprint());
      }
      continue;
    }
    for (size_t i = 0; i < op->slots.size(); ++i) {
      if (op->slots[i] == IndexOp::Slot::kMain) op->entry.main = op->locations[i];
      if (op->slots[i] == IndexOp::Slot::kState) op->entry.state = op->locations[i];
    }
    batch.Put(op->entry, op->old ? &*op->old : nullptr);
    if (!count) continue;
    shard.live_bytes.fetch_add(op->entry.footprint());
    if (op->old) {
      shard.live_bytes.fetch_sub(op->old->footprint());
    } else {
      shard.messages.fetch_add(1);
      shard.body_bytes.fetch_add(op->entry.info.size);
    }
  }
  const log::Location& last = records.back().location;
  shard.hooked_end = {last.segment, last.offset + last.size, 0};
  batch.SetCheckpoint(shard.hooked_end);
  shard.unflushed_records.fetch_add(records.size());
  // Once a write failed, later batches are left to the catch-up too: the checkpoint must
  // stay before the first record the index missed. (index_faulted changes only under
  // hook_mu, which is held.)
  if (shard.index_faulted.load()) return;
  Status s = shard.index->Write(batch);
  shard.dirty.store(true);
  if (s.ok()) return;
  MutexLock l(&shard.mu);
  if (shard.index_fault.ok()) {
    // The records are durable in the log: the index catches up from it once a re-probe
    // passes (or at the next open). Until then the shard takes no new mail.
    shard.index_fault = s;
    shard.index_faulted.store(true);
    Log(LogLevel::kError,
        shard.dir + ": index write failed, shard refuses new mail: " + s.ToString());
  }
}

// ---- Writes --------------------------------------------------------------------------------

Status SpoolImpl::WritableCheck() const {
  if (options_.read_only) return FailedPreconditionError("the spool is open read-only");
  return Status::Ok();
}

MessageInfo SpoolImpl::NewMessage(const Envelope& envelope, uint64_t size, uint32_t shard) {
  uint64_t now = NowMicros();
  uint64_t last = last_time_.load();
  uint64_t t;
  do {
    t = std::max(now, last + 1);
  } while (!last_time_.compare_exchange_weak(last, t));
  MessageInfo info;
  info.id = MessageId(t, (uint64_t{shard} << 48) | nonce_);
  info.envelope = envelope;
  info.size = size;
  info.arrival_ms = static_cast<int64_t>(t / 1000);
  info.next_attempt_ms = info.arrival_ms;
  info.recipient_status.assign(envelope.recipients.size(), RecipientStatus::kPending);
  return info;
}

Status SpoolImpl::AppendSync(Shard& shard, std::span<const log::AppendRecord> records,
                             std::vector<log::Location>* locations) {
  return shard.log->Append(records, locations);
}

// Appends a message record (envelope and body) and calls `done` once it is durable and
// indexed, or failed. The body may be released when this returns.
void SpoolImpl::AppendMessage(Shard& shard, const MessageInfo& info, std::string_view body,
                              EnqueueCallback done, int64_t max_wait_ms, bool lead) {
  const std::string head = internal::EncodeEnvelope(info);
  auto op = std::make_unique<IndexOp>();
  op->entry.info = info;
  op->entry.body_offset = static_cast<uint32_t>(head.size());
  op->slots = {IndexOp::Slot::kMain};
  log::AppendRecord rec;
  rec.type = log::RecordType::kMessage;
  rec.id = ToRecordId(info.id);
  rec.parts[0] = AsBytes(head);
  rec.parts[1] = AsBytes(body);
  rec.part_count = 2;
  rec.context = op.get();
  IndexOp* raw = op.release();  // owned by the callback, which the log always calls
  log::AppendCallback answer = [this, raw, id = info.id, done = std::move(done)](
                                   const Status& st, std::span<const log::Location>) {
    std::unique_ptr<IndexOp> own(raw);
    if (st.ok()) {
      enqueued_.fetch_add(1);
      done(id);
    } else {
      done(st);
    }
  };
  if (lead) {
    shard.log->AppendLeading({&rec, 1}, std::move(answer), max_wait_ms);
  } else {
    shard.log->AppendAsync({&rec, 1}, std::move(answer), max_wait_ms);
  }
}

StatusOr<MessageId> SpoolImpl::EnqueueInline(Shard& shard, const MessageInfo& info,
                                             std::string_view body) {
  Completion done;
  StatusOr<MessageId> result = InternalError("no result");
  // No lock is held here: on an idle shard this thread writes its own batch.
  AppendMessage(
      shard, info, body,
      [&](const StatusOr<MessageId>& id) {
        result = id;
        done.Notify();
      },
      -1, /*lead=*/true);
  done.Wait();
  return result;
}

Status SpoolImpl::CheckNewMessage(const Envelope& envelope, uint64_t size) const {
  SPOOL_RETURN_IF_ERROR(WritableCheck());
  SPOOL_RETURN_IF_ERROR(ValidateEnvelope(envelope));
  if (size > options_.max_message_size) {
    return TooBigError("message of " + std::to_string(size) + " bytes over the limit of " +
                       std::to_string(options_.max_message_size));
  }
  return Status::Ok();
}

StatusOr<MessageId> SpoolImpl::Enqueue(const Envelope& envelope, std::string_view body) {
  SPOOL_RETURN_IF_ERROR(CheckNewMessage(envelope, body.size()));
  if (body.size() > inline_limit_) {
    SPOOL_ASSIGN_OR_RETURN(std::unique_ptr<BodyWriter> w, BeginMessage(envelope));
    for (size_t off = 0; off < body.size(); off += stream_chunk_size_) {
      SPOOL_RETURN_IF_ERROR(w->Append(body.substr(off, stream_chunk_size_)));
    }
    return w->Commit();
  }
  SPOOL_ASSIGN_OR_RETURN(Shard * shard, PickShard(body.size()));
  return EnqueueInline(*shard, NewMessage(envelope, body.size(), shard->number), body);
}

void SpoolImpl::EnqueueAsync(const Envelope& envelope, std::string_view body,
                             EnqueueCallback done) {
  if (Status s = CheckNewMessage(envelope, body.size()); !s.ok()) {
    done(s);
    return;
  }
  if (body.size() > inline_limit_) {
    // Chunked bodies take several synchronous appends: do them off the caller's thread.
    auto job = [this, envelope, body = std::string(body), done] { done(Enqueue(envelope, body)); };
    {
      MutexLock l(&mu_);
      if (!closing_) {
        big_queue_.push_back(std::move(job));
        return;
      }
    }
    done(UnavailableError("the spool is closing"));
    return;
  }
  StatusOr<Shard*> shard = PickShard(body.size());
  if (!shard.ok()) {
    done(shard.status());
    return;
  }
  AppendMessage(**shard, NewMessage(envelope, body.size(), (*shard)->number), body, std::move(done),
                options_.async_commit_wait_ms);
}

void SpoolImpl::BigEnqueueLoop() {
  for (;;) {
    std::function<void()> job;
    {
      MutexLock l(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return closing_ || !big_queue_.empty();
      };
      mu_.Await(absl::Condition(&ready));
      if (big_queue_.empty()) return;
      job = std::move(big_queue_.front());
      big_queue_.pop_front();
    }
    job();
  }
}

StatusOr<std::unique_ptr<BodyWriter>> SpoolImpl::BeginMessage(const Envelope& envelope) {
  SPOOL_RETURN_IF_ERROR(WritableCheck());
  SPOOL_RETURN_IF_ERROR(ValidateEnvelope(envelope));
  SPOOL_ASSIGN_OR_RETURN(Shard * shard, PickShard(0));
  return std::unique_ptr<BodyWriter>(
      new BodyWriterImpl(this, shard, NewMessage(envelope, 0, shard->number)));
}

Status BodyWriterImpl::WriteChunk(std::string_view chunk) {
  log::AppendRecord rec;
  rec.type = log::RecordType::kBodyChunk;
  rec.id = ToRecordId(info_.id);
  rec.parts[0] = AsBytes(chunk);
  rec.part_count = 1;
  std::vector<log::Location> loc;
  SPOOL_RETURN_IF_ERROR(spool_->AppendSync(*shard_, {&rec, 1}, &loc));
  chunks_.push_back(loc[0]);
  MutexLock l(&shard_->mu);
  shard_->pinned.insert(loc[0].segment);
  return Status::Ok();
}

void BodyWriterImpl::Unpin() {
  // After Commit or Abort nothing is pinned: the shard (and spool) may be gone by the
  // time a finished writer is destroyed.
  if (chunks_.empty()) return;
  MutexLock l(&shard_->mu);
  for (const log::Location& c : chunks_) {
    auto it = shard_->pinned.find(c.segment);
    if (it != shard_->pinned.end()) shard_->pinned.erase(it);
  }
  chunks_.clear();
}

Status BodyWriterImpl::Append(std::string_view piece) {
  if (done_) return FailedPreconditionError("the message was already committed or aborted");
  const uint64_t limit = spool_->options().max_message_size;
  if (info_.size + piece.size() > limit) {
    done_ = true;
    return TooBigError("message over the limit of " + std::to_string(limit) + " bytes");
  }
  info_.size += piece.size();
  const size_t chunk = spool_->stream_chunk_size();
  if (spool_->options().stream_write_through) {
    for (size_t off = 0; off < piece.size(); off += chunk) {
      const std::string_view part = piece.substr(off, chunk);
      Status s = spool_->ChunkAdmission(*shard_, part.size());
      if (s.ok()) s = WriteChunk(part);
      if (!s.ok()) {
        done_ = true;
        return s;
      }
    }
    return Status::Ok();
  }
  pending_.append(piece);
  size_t off = 0;
  while (pending_.size() - off >= chunk &&
         (info_.size > spool_->inline_limit() || !chunks_.empty())) {
    // Admission holds while the body arrives, not only at its start: a disk that fills
    // up or fails meanwhile ends the message with the reply for it.
    Status s = spool_->ChunkAdmission(*shard_, chunk);
    if (s.ok()) s = WriteChunk(std::string_view(pending_).substr(off, chunk));
    if (!s.ok()) {
      done_ = true;
      return s;
    }
    off += chunk;
  }
  pending_.erase(0, off);
  return Status::Ok();
}

StatusOr<MessageId> BodyWriterImpl::Commit() {
  if (done_) return FailedPreconditionError("the message was already committed or aborted");
  done_ = true;
  if (chunks_.empty() && info_.size <= spool_->inline_limit()) {
    return spool_->EnqueueInline(*shard_, info_, pending_);
  }
  if (!pending_.empty()) SPOOL_RETURN_IF_ERROR(WriteChunk(pending_));
  StatusOr<MessageId> id = spool_->CommitChunked(*shard_, info_, chunks_);
  Unpin();  // committed: the index references the chunks now (or they are garbage)
  return id;
}

StatusOr<MessageId> SpoolImpl::CommitChunked(Shard& shard, MessageInfo info,
                                             std::vector<log::Location> chunks) {
  const std::string payload = internal::EncodeCommit(info, chunks);
  IndexOp op;
  op.entry.info = info;
  op.entry.chunks = std::move(chunks);
  op.slots = {IndexOp::Slot::kMain};
  log::AppendRecord rec;
  rec.type = log::RecordType::kCommit;
  rec.id = ToRecordId(info.id);
  rec.parts[0] = AsBytes(payload);
  rec.part_count = 1;
  rec.context = &op;
  SPOOL_RETURN_IF_ERROR(shard.log->Append({&rec, 1}, nullptr));
  enqueued_.fetch_add(1);
  return info.id;
}

}  // namespace spool::internal
