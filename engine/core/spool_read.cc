// Reads: a message's shard and index entry, its envelope and state, its body (whole or
// streamed), the due scan and the walk over every message.

#include <algorithm>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "core/spool_impl.h"
#include "spool/logging.h"

namespace spool::internal {

StatusOr<Shard*> SpoolImpl::ShardOf(const MessageId& id) {
  if (!id.valid()) return InvalidArgumentError("invalid message id");
  auto it = by_number_.find(id.shard());
  if (it == by_number_.end()) {
    return NotFoundError("message " + id.ToString() + " names shard " + std::to_string(id.shard()) +
                         ", which this spool does not have");
  }
  return it->second;
}

StatusOr<IndexEntry> SpoolImpl::Lookup(Shard& shard, const MessageId& id) {
  if (shard.Removing(id)) return RemovedError(id);
  SPOOL_ASSIGN_OR_RETURN(std::optional<IndexEntry> e, shard.index->Get(id));
  if (!e) {
    // A message acknowledged while the index was failing is in the log, not yet here.
    SPOOL_RETURN_IF_ERROR(IndexHealth(shard).WithContext("message " + id.ToString()));
    return NotFoundError("no message " + id.ToString());
  }
  return std::move(*e);
}

StatusOr<MessageInfo> SpoolImpl::Get(const MessageId& id) {
  SPOOL_ASSIGN_OR_RETURN(Shard * shard, ShardOf(id));
  SPOOL_ASSIGN_OR_RETURN(IndexEntry e, Lookup(*shard, id));
  return std::move(e.info);
}

StatusOr<std::string> SpoolImpl::ReadRecordPayload(Shard& shard, const MessageId& id,
                                                   const log::Location& loc) {
  const log::RecordId rid = ToRecordId(id);
  StatusOr<log::Record> r = shard.log->Read(loc, &rid);
  if (!r.ok()) return r.status();
  return std::move(r->payload);
}

Status SpoolImpl::ReadBodyStream(const MessageId& id,
                                 const std::function<Status(std::string_view)>& sink) {
  SPOOL_ASSIGN_OR_RETURN(Shard * shard, ShardOf(id));
  // Reclamation may move the message between the lookup and the read: look again when
  // the record is gone from where the index said.
  for (int attempt = 0;; ++attempt) {
    SPOOL_ASSIGN_OR_RETURN(IndexEntry e, Lookup(*shard, id));
    if (e.info.state == MessageState::kCorrupt) {
      return CorruptionError("message " + id.ToString() + " is quarantined as corrupt");
    }
    Status failed;
    if (!e.chunked()) {
      StatusOr<std::string> p = ReadRecordPayload(*shard, id, e.main);
      if (p.ok()) {
        if (e.body_offset > p->size()) {
          return CorruptionError("message " + id.ToString() + ": body offset past the record");
        }
        return sink(std::string_view(*p).substr(e.body_offset));
      }
      failed = p.status();
    } else {
      size_t i = 0;
      for (; i < e.chunks.size(); ++i) {
        StatusOr<std::string> p = ReadRecordPayload(*shard, id, e.chunks[i]);
        if (!p.ok()) {
          failed = p.status();
          break;
        }
        SPOOL_RETURN_IF_ERROR(sink(*p));
      }
      if (failed.ok()) return Status::Ok();
      if (i > 0) {
        return failed.WithContext("message " + id.ToString() + " (after part of the body)");
      }
    }
    StatusOr<IndexEntry> again = Lookup(*shard, id);
    if (attempt < 3 && again.ok() && again->main != e.main) continue;
    if (failed.code() == Code::kNotFound || failed.code() == Code::kCorruption) {
      Log(LogLevel::kError, "message " + id.ToString() + ": " + failed.ToString());
      // Reported, not quarantined: a read path that flips bits (memory, cable, driver)
      // would quarantine intact mail. The scrubber reads twice before it quarantines.
      corrupt_found_.fetch_add(1);
      return CorruptionError("message " + id.ToString() + ": stored bytes are damaged (" +
                             std::string(failed.message()) + ")");
    }
    return failed.WithContext("message " + id.ToString());
  }
}

StatusOr<std::string> SpoolImpl::ReadBody(const MessageId& id) {
  std::string body;
  SPOOL_RETURN_IF_ERROR(ReadBodyStream(id, [&](std::string_view piece) {
    body.append(piece);
    return Status::Ok();
  }));
  return body;
}

StatusOr<std::vector<MessageId>> SpoolImpl::ScanDue(std::string_view queue, int64_t now_ms,
                                                    size_t limit) {
  std::vector<std::pair<int64_t, MessageId>> all;
  for (auto& shard : shards_) {
    SPOOL_ASSIGN_OR_RETURN(auto due, shard->index->ScanDue(queue, now_ms, limit));
    all.insert(all.end(), due.begin(), due.end());
  }
  std::sort(all.begin(), all.end());
  std::vector<MessageId> out;
  for (size_t i = 0; i < all.size() && i < limit; ++i) out.push_back(all[i].second);
  return out;
}

Status SpoolImpl::ForEach(const std::function<bool(const MessageInfo&)>& visit) {
  bool stop = false;
  for (auto& shard : shards_) {
    SPOOL_RETURN_IF_ERROR(shard->index->ForEach([&](const MessageId&, const IndexEntry& e) {
      stop = !visit(e.info);
      return !stop;
    }));
    if (stop) break;
  }
  return Status::Ok();
}

}  // namespace spool::internal
