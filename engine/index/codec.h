// Encodings of the spool's log payloads and index values. Layouts: docs/format.md,
// "Spool records". Every encoding starts with a version byte.
//
// Thread-safety: pure functions.

#ifndef SPOOL_INDEX_CODEC_H_
#define SPOOL_INDEX_CODEC_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "log/log.h"
#include "spool/spool.h"
#include "spool/status.h"

namespace spool::internal {

inline constexpr uint8_t kCodecVersion = 1;

// Primitive encoders. Decoders consume from the front of *in and return false on short
// or malformed input.
void PutVarint(std::string* out, uint64_t v);
bool GetVarint(std::string_view* in, uint64_t* v);
void PutBytes(std::string* out, std::string_view s);
bool GetBytes(std::string_view* in, std::string_view* s);
void PutLocation(std::string* out, const log::Location& loc);
bool GetLocation(std::string_view* in, log::Location* loc);

// Envelope plus arrival time and body size: the head of a message record (the body
// follows it) and of a commit record.
std::string EncodeEnvelope(const MessageInfo& info);
Status DecodeEnvelope(std::string_view* in, MessageInfo* info);

// The delivery state: state, attempts, next attempt, per-recipient status.
std::string EncodeState(const MessageInfo& info);
Status DecodeState(std::string_view* in, MessageInfo* info);

// A commit record: the envelope, then the chunk locations of the body.
std::string EncodeCommit(const MessageInfo& info, const std::vector<log::Location>& chunks);
Status DecodeCommit(std::string_view payload, MessageInfo* info,
                    std::vector<log::Location>* chunks);

// What the index keeps per message: everything but the body, and where the log holds it.
struct IndexEntry {
  MessageInfo info;
  log::Location main;                 // the message record, or the commit record
  uint32_t body_offset = 0;           // in the message record's payload; 0 if chunked
  std::vector<log::Location> chunks;  // body chunks of a streamed message, in order
  log::Location state;                // the latest state record; segment 0 if none
  bool chunked() const { return !chunks.empty(); }
  // Bytes of log that the entry keeps alive (its records' footprints).
  uint64_t footprint() const {
    uint64_t n = main.size + state.size;
    for (const log::Location& c : chunks) n += c.size;
    return n;
  }
};
std::string EncodeIndexEntry(const IndexEntry& entry);
Status DecodeIndexEntry(std::string_view in, IndexEntry* entry);

// The 16-byte big-endian key of an id (sorts by time) and back.
std::string IdKey(const MessageId& id);
MessageId IdFromKey(std::string_view key);

}  // namespace spool::internal

#endif  // SPOOL_INDEX_CODEC_H_
