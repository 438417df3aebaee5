#include "index/replay.h"

#include <string_view>
#include <utility>

namespace spool::internal {

bool ChangesIndexEntry(log::RecordType type) {
  switch (type) {
    case log::RecordType::kMessage:
    case log::RecordType::kCommit:
    case log::RecordType::kStateUpdate:
    case log::RecordType::kRemove:
      return true;
    default:
      return false;
  }
}

bool IsOriginalMessage(const log::Record& r) {
  return (r.type == log::RecordType::kMessage || r.type == log::RecordType::kCommit) &&
         (r.flags & log::kFlagRelocated) == 0;
}

StatusOr<std::optional<IndexEntry>> ReplayRecord(const log::Record& r,
                                                 std::optional<IndexEntry> current) {
  switch (r.type) {
    case log::RecordType::kMessage:
    case log::RecordType::kCommit: {
      IndexEntry e;
      std::string_view payload(r.payload);
      if (r.type == log::RecordType::kMessage) {
        SPOOL_RETURN_IF_ERROR(DecodeEnvelope(&payload, &e.info));
        e.body_offset = static_cast<uint32_t>(r.payload.size() - payload.size());
      } else {
        SPOOL_RETURN_IF_ERROR(DecodeCommit(payload, &e.info, &e.chunks));
      }
      e.main = r.location;
      e.info.id = MessageId(r.id.hi, r.id.lo);
      if (current) {  // a relocated copy: the state stays
        e.info.state = current->info.state;
        e.info.attempts = current->info.attempts;
        e.info.next_attempt_ms = current->info.next_attempt_ms;
        e.info.recipient_status = std::move(current->info.recipient_status);
        e.state = current->state;
        if (current->metadata_in_state) {  // the copy holds the metadata of the enqueue
          e.info.envelope.metadata = std::move(current->info.envelope.metadata);
          e.metadata_in_state = true;
        }
      } else {
        e.info.state = MessageState::kQueued;
        e.info.next_attempt_ms = e.info.arrival_ms;
        e.info.recipient_status.assign(e.info.envelope.recipients.size(),
                                       RecipientStatus::kPending);
      }
      return e;
    }
    case log::RecordType::kStateUpdate: {
      if (!current) return std::nullopt;  // removed later on: nothing to update
      std::string_view payload(r.payload);
      SPOOL_RETURN_IF_ERROR(DecodeState(&payload, &*current));
      current->state = r.location;
      return current;
    }
    case log::RecordType::kRemove:
      return std::nullopt;
    default:
      return current;  // chunks are reached through their commit; padding is nothing
  }
}

}  // namespace spool::internal
