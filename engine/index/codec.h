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
// The version byte of a state that also carries the message's metadata: written once the
// metadata was replaced (Spool::SetMetadata), so that the state record, which reclamation
// copies forward and the index keeps, holds the metadata that replaces the envelope's. A
// spool whose metadata was never replaced has no such state and stays readable by builds
// that know only kCodecVersion.
inline constexpr uint8_t kStateWithMetadataVersion = 2;

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
  // The metadata was replaced after the enqueue: info.envelope.metadata is the
  // replacement, and every state record of the message carries it.
  bool metadata_in_state = false;
  bool chunked() const { return !chunks.empty(); }
  // Bytes of log that the entry keeps alive (its records' footprints).
  uint64_t footprint() const {
    uint64_t n = main.size + state.size;
    for (const log::Location& c : chunks) n += c.size;
    return n;
  }
};

// The delivery state (state, attempts, next attempt, per-recipient status), plus the
// metadata when entry.metadata_in_state (version kStateWithMetadataVersion).
std::string EncodeState(const IndexEntry& entry);
// Decodes a state of either version into entry->info; one with the metadata replaces
// entry->info.envelope.metadata and sets entry->metadata_in_state.
Status DecodeState(std::string_view* in, IndexEntry* entry);
// The same over the info alone: the state of version 1 (never the metadata; the spool's
// writers use the entry's form, which keeps a replaced metadata), and a decode of either
// version into *info.
std::string EncodeState(const MessageInfo& info);
Status DecodeState(std::string_view* in, MessageInfo* info);

std::string EncodeIndexEntry(const IndexEntry& entry);
Status DecodeIndexEntry(std::string_view in, IndexEntry* entry);

// The 16-byte big-endian key of an id (sorts by time) and back.
std::string IdKey(const MessageId& id);
MessageId IdFromKey(std::string_view key);

}  // namespace spool::internal

#endif  // SPOOL_INDEX_CODEC_H_
