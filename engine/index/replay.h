// How each log record changes the index entry of its message: the rules by which an open
// replays the log into the index (engine/core/) and by which spool-fsck rebuilds
// the index it expects from the log. One function, so that the two never disagree.
//
// Thread-safety: pure functions.

#ifndef SPOOL_INDEX_REPLAY_H_
#define SPOOL_INDEX_REPLAY_H_

#include <optional>

#include "log/log.h"
#include "index/codec.h"
#include "spool/status.h"

namespace spool::internal {

// Whether records of `type` change an index entry: messages, commits, state updates and
// removes do; body chunks (reached through their commit) and padding do not.
bool ChangesIndexEntry(log::RecordType type);

// Whether `r` is the original message or commit record of its message, not a copy made
// by reclamation. An original one is new to the index: ids are unique.
bool IsOriginalMessage(const log::Record& r);

// The index entry of r's message after `r`, given the entry before it (nullopt: none):
//  - a message or commit record: a queued entry with every recipient pending, or, over an
//    existing entry (a relocated copy), one at the new location that keeps the delivery
//    state and the latest state record;
//  - a state update: the entry with the decoded state, at r's location; none without an
//    entry (the message was removed later on);
//  - a remove: none;
//  - any other record: `current` unchanged.
// Errors: the decoders' when the payload does not decode.
StatusOr<std::optional<IndexEntry>> ReplayRecord(const log::Record& r,
                                                 std::optional<IndexEntry> current);

}  // namespace spool::internal

#endif  // SPOOL_INDEX_REPLAY_H_
