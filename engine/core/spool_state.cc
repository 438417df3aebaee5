// State changes of a message (attempts, hold, release, requeue, metadata) and its removal,
// each under the message's stripe lock until it is durable and indexed; the names of the
// states.

#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "core/spool_impl.h"
#include "index/codec.h"
#include "util/futex.h"

namespace spool {

std::string_view MessageStateName(MessageState state) {
  switch (state) {
    case MessageState::kQueued:
      return "queued";
    case MessageState::kHeld:
      return "held";
    case MessageState::kCorrupt:
      return "corrupt";
  }
  return "unknown";
}

std::string_view RecipientStatusName(RecipientStatus status) {
  switch (status) {
    case RecipientStatus::kPending:
      return "pending";
    case RecipientStatus::kDelivered:
      return "delivered";
    case RecipientStatus::kFailed:
      return "failed";
    case RecipientStatus::kDeferred:
      return "deferred";
  }
  return "unknown";
}

namespace internal {

Status SpoolImpl::ChangeState(const MessageId& id,
                              const std::function<Status(MessageInfo* info)>& change) {
  SPOOL_RETURN_IF_ERROR(WritableCheck());
  SPOOL_ASSIGN_OR_RETURN(Shard * shard, ShardOf(id));
  SPOOL_RETURN_IF_ERROR(IndexHealth(*shard));
  MutexLock stripe(&StripeOf(*shard, id));
  SPOOL_ASSIGN_OR_RETURN(IndexEntry old, Lookup(*shard, id));
  IndexOp op;
  op.entry = old;
  op.old = old;
  SPOOL_RETURN_IF_ERROR(change(&op.entry.info));
  // Once replaced, the metadata lives in the state records (codec.h).
  if (op.entry.info.envelope.metadata != old.info.envelope.metadata) {
    op.entry.metadata_in_state = true;
  }
  op.slots = {IndexOp::Slot::kState};
  const std::string payload = internal::EncodeState(op.entry);
  log::AppendRecord rec;
  rec.type = log::RecordType::kStateUpdate;
  rec.id = ToRecordId(id);
  rec.parts[0] = AsBytes(payload);
  rec.part_count = 1;
  rec.context = &op;
  return shard->log->Append({&rec, 1}, nullptr);
}

Status SpoolImpl::RecordAttempt(const MessageId& id, const AttemptResult& result) {
  return ChangeState(id, [&](MessageInfo* info) -> Status {
    for (const auto& [index, status] : result.recipients) {
      if (index >= info->recipient_status.size()) {
        return InvalidArgumentError("recipient index " + std::to_string(index) +
                                    " out of range: message " + id.ToString() + " has " +
                                    std::to_string(info->recipient_status.size()));
      }
      info->recipient_status[index] = status;
    }
    if (result.next_attempt_ms) info->next_attempt_ms = *result.next_attempt_ms;
    if (result.count_attempt) ++info->attempts;
    return Status::Ok();
  });
}

Status SpoolImpl::Hold(const MessageId& id) {
  return ChangeState(id, [&](MessageInfo* info) -> Status {
    if (info->state == MessageState::kCorrupt) {
      return FailedPreconditionError("message " + id.ToString() + " is quarantined as corrupt");
    }
    info->state = MessageState::kHeld;
    return Status::Ok();
  });
}

Status SpoolImpl::Release(const MessageId& id) {
  return ChangeState(id, [&](MessageInfo* info) -> Status {
    if (info->state == MessageState::kCorrupt) {
      return FailedPreconditionError("message " + id.ToString() + " is quarantined as corrupt");
    }
    info->state = MessageState::kQueued;
    info->next_attempt_ms = std::min(info->next_attempt_ms, NowMs());
    return Status::Ok();
  });
}

Status SpoolImpl::Requeue(const MessageId& id) {
  return ChangeState(id, [&](MessageInfo* info) -> Status {
    if (info->state == MessageState::kCorrupt) {
      return FailedPreconditionError("message " + id.ToString() + " is quarantined as corrupt");
    }
    info->state = MessageState::kQueued;
    info->next_attempt_ms = NowMs();
    return Status::Ok();
  });
}

Status ValidateMetadata(std::string_view metadata) {
  if (metadata.size() > kMaxMetadataSize) {
    return InvalidArgumentError("metadata of " + std::to_string(metadata.size()) +
                                " bytes over the limit of " + std::to_string(kMaxMetadataSize));
  }
  return Status::Ok();
}

Status SpoolImpl::SetMetadata(const MessageId& id, std::string_view metadata) {
  SPOOL_RETURN_IF_ERROR(ValidateMetadata(metadata));
  return ChangeState(id, [&](MessageInfo* info) -> Status {
    info->envelope.metadata.assign(metadata);
    return Status::Ok();
  });
}

void SpoolImpl::SetMetadataAsync(const MessageId& id, std::string_view metadata,
                                 std::function<void(const Status&)> done) {
  Status early = ValidateMetadata(metadata);
  if (early.ok()) early = WritableCheck();
  if (early.ok()) early = ShardOf(id).status();
  if (early.ok()) {
    MutexLock l(&mu_);
    if (!closing_) {
      big_queue_.push_back([this, id, bytes = std::string(metadata), done = std::move(done)] {
        const Status s = SetMetadata(id, bytes);
        if (done) done(s);
      });
      return;
    }
    early = UnavailableError("the spool is closing");
  }
  if (done) done(early);
}

Status SpoolImpl::Remove(const MessageId& id) {
  Completion done;
  Status result;
  RemoveAsync(id, [&](const Status& s) {
    result = s;
    done.Notify();
  });
  done.Wait();
  return result;
}

void SpoolImpl::RemoveAsync(const MessageId& id, std::function<void(const Status&)> done) {
  auto answer = [&](const Status& s) {
    if (done) done(s);
  };
  if (Status s = WritableCheck(); !s.ok()) return answer(s);
  StatusOr<Shard*> found = ShardOf(id);
  if (!found.ok()) return answer(found.status());
  Shard* shard = *found;
  if (Status s = IndexHealth(*shard); !s.ok()) return answer(s);
  // The stripe lock orders this removal with other changes of the message; the removing
  // set then hides it until the removal is durable and applied to the index.
  Mutex& stripe = StripeOf(*shard, id);
  if (stripe.TryLock()) {
    StatusOr<IndexEntry> old = Lookup(*shard, id);
    if (old.ok() && !MarkRemoving(*shard, id)) old = RemovedError(id);
    if (old.ok()) AppendRemoval(*shard, std::move(old).value(), std::move(done));
    stripe.Unlock();
    if (!old.ok()) answer(old.status());
    return;
  }
  // The stripe is busy (reclamation copying a group of messages, a state change waiting
  // for its commit): the removal waits for it on the spool's worker thread, never on the
  // caller's, which may be an event loop or an I/O worker running a callback that the
  // holder of the stripe waits for. The message is hidden from now on, and a second
  // removal of it finds it gone.
  if (Status s = Lookup(*shard, id).status(); !s.ok()) return answer(s);
  if (!MarkRemoving(*shard, id)) return answer(RemovedError(id));
  auto job = [this, shard, id, done]() mutable {
    MutexLock l(&StripeOf(*shard, id));
    // Not Lookup: the removing set hides the message already.
    StatusOr<std::optional<IndexEntry>> e = shard->index->Get(id);
    Status s = e.ok() ? IndexHealth(*shard) : e.status();
    if (s.ok() && !e->has_value()) s = NotFoundError("no message " + id.ToString());
    if (s.ok()) s = WritableCheck();
    if (!s.ok()) {
      UnmarkRemoving(*shard, id);
      if (done) done(s);
      return;
    }
    AppendRemoval(*shard, std::move(**e), std::move(done));
  };
  {
    MutexLock l(&mu_);
    if (!closing_) {
      big_queue_.push_back(std::move(job));
      return;
    }
  }
  UnmarkRemoving(*shard, id);
  answer(UnavailableError("the spool is closing"));
}

bool SpoolImpl::MarkRemoving(Shard& shard, const MessageId& id) {
  MutexLock l(&shard.removing_mu);
  if (!shard.removing.insert(id).second) return false;
  shard.removing_count.fetch_add(1);
  return true;
}

void SpoolImpl::UnmarkRemoving(Shard& shard, const MessageId& id) {
  MutexLock l(&shard.removing_mu);
  shard.removing.erase(id);
  shard.removing_count.fetch_sub(1);
}

void SpoolImpl::AppendRemoval(Shard& shard, IndexEntry old,
                              std::function<void(const Status&)> done) {
  const MessageId id = old.info.id;
  auto op = std::make_unique<IndexOp>();
  op->remove = true;
  op->entry = std::move(old);
  op->slots = {IndexOp::Slot::kMain};
  log::AppendRecord rec;
  rec.type = log::RecordType::kRemove;
  rec.id = ToRecordId(id);
  rec.part_count = 0;
  rec.context = op.get();
  IndexOp* raw = op.release();  // owned by the callback, which the log always calls
  Shard* s = &shard;
  s->log->AppendAsync({&rec, 1}, [this, raw, s, id, done = std::move(done)](
                                     const Status& st, std::span<const log::Location>) {
    std::unique_ptr<IndexOp> own(raw);
    // The durable hook has applied the removal (or it failed and the message stays).
    UnmarkRemoving(*s, id);
    if (st.ok()) removed_.fetch_add(1);
    if (done) done(st);
  });
}

}  // namespace internal
}  // namespace spool
