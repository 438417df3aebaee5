#include "index/codec.h"

#include <cstring>
#include <utility>

namespace spool::internal {
namespace {

Status Malformed(std::string_view what) {
  return CorruptionError("malformed " + std::string(what) + " encoding");
}

void PutFixed64BE(std::string* out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out->push_back(static_cast<char>(v >> (8 * i)));
}

uint64_t GetFixed64BE(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

// Signed values (times) as zigzag varints.
void PutSigned(std::string* out, int64_t v) {
  PutVarint(out, (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63));
}
bool GetSigned(std::string_view* in, int64_t* v) {
  uint64_t u;
  if (!GetVarint(in, &u)) return false;
  *v = static_cast<int64_t>((u >> 1) ^ (~(u & 1) + 1));
  return true;
}

bool GetVersion(std::string_view* in) {
  if (in->empty() || static_cast<uint8_t>((*in)[0]) != kCodecVersion) return false;
  in->remove_prefix(1);
  return true;
}

}  // namespace

void PutVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

bool GetVarint(std::string_view* in, uint64_t* v) {
  uint64_t result = 0;
  for (int shift = 0; shift <= 63 && !in->empty(); shift += 7) {
    const uint8_t byte = static_cast<uint8_t>((*in)[0]);
    in->remove_prefix(1);
    // The tenth byte holds bit 63 alone: a larger one names a value beyond 64 bits.
    if (shift == 63 && byte > 1) return false;
    result |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) {
      *v = result;
      return true;
    }
  }
  return false;
}

void PutBytes(std::string* out, std::string_view s) {
  PutVarint(out, s.size());
  out->append(s);
}

bool GetBytes(std::string_view* in, std::string_view* s) {
  uint64_t n;
  if (!GetVarint(in, &n) || n > in->size()) return false;
  *s = in->substr(0, n);
  in->remove_prefix(n);
  return true;
}

void PutLocation(std::string* out, const log::Location& loc) {
  PutVarint(out, loc.segment);
  PutVarint(out, loc.offset);
  PutVarint(out, loc.size);
}

bool GetLocation(std::string_view* in, log::Location* loc) {
  uint64_t seg, off, size;
  if (!GetVarint(in, &seg) || !GetVarint(in, &off) || !GetVarint(in, &size) || size > UINT32_MAX) {
    return false;
  }
  *loc = {seg, off, static_cast<uint32_t>(size)};
  return true;
}

std::string EncodeEnvelope(const MessageInfo& info) {
  std::string out;
  out.push_back(static_cast<char>(kCodecVersion));
  PutSigned(&out, info.arrival_ms);
  PutVarint(&out, info.size);
  PutBytes(&out, info.envelope.sender);
  PutVarint(&out, info.envelope.recipients.size());
  for (const std::string& r : info.envelope.recipients) PutBytes(&out, r);
  PutBytes(&out, info.envelope.queue);
  PutBytes(&out, info.envelope.metadata);
  return out;
}

Status DecodeEnvelope(std::string_view* in, MessageInfo* info) {
  uint64_t size, n;
  std::string_view s;
  if (!GetVersion(in) || !GetSigned(in, &info->arrival_ms) || !GetVarint(in, &size) ||
      !GetBytes(in, &s)) {
    return Malformed("envelope");
  }
  info->size = size;
  info->envelope.sender.assign(s);
  if (!GetVarint(in, &n) || n > in->size()) return Malformed("envelope");
  info->envelope.recipients.clear();
  info->envelope.recipients.reserve(n);
  for (uint64_t i = 0; i < n; ++i) {
    if (!GetBytes(in, &s)) return Malformed("envelope");
    info->envelope.recipients.emplace_back(s);
  }
  if (!GetBytes(in, &s)) return Malformed("envelope");
  info->envelope.queue.assign(s);
  if (!GetBytes(in, &s)) return Malformed("envelope");
  info->envelope.metadata.assign(s);
  return Status::Ok();
}

std::string EncodeState(const IndexEntry& entry) {
  const MessageInfo& info = entry.info;
  std::string out;
  out.push_back(
      static_cast<char>(entry.metadata_in_state ? kStateWithMetadataVersion : kCodecVersion));
  out.push_back(static_cast<char>(info.state));
  PutVarint(&out, info.attempts);
  PutSigned(&out, info.next_attempt_ms);
  PutVarint(&out, info.recipient_status.size());
  for (RecipientStatus r : info.recipient_status) out.push_back(static_cast<char>(r));
  if (entry.metadata_in_state) PutBytes(&out, info.envelope.metadata);
  return out;
}

Status DecodeState(std::string_view* in, IndexEntry* entry) {
  MessageInfo* info = &entry->info;
  if (in->empty()) return Malformed("state");
  const uint8_t version = static_cast<uint8_t>((*in)[0]);
  if (version != kCodecVersion && version != kStateWithMetadataVersion) {
    return Malformed("state");
  }
  in->remove_prefix(1);
  uint64_t attempts, n;
  if (in->empty()) return Malformed("state");
  const uint8_t state = static_cast<uint8_t>((*in)[0]);
  in->remove_prefix(1);
  if (state > static_cast<uint8_t>(MessageState::kCorrupt) || !GetVarint(in, &attempts) ||
      !GetSigned(in, &info->next_attempt_ms) || !GetVarint(in, &n) || n > in->size()) {
    return Malformed("state");
  }
  info->state = static_cast<MessageState>(state);
  info->attempts = static_cast<uint32_t>(attempts);
  info->recipient_status.resize(n);
  for (uint64_t i = 0; i < n; ++i) {
    const uint8_t r = static_cast<uint8_t>((*in)[i]);
    if (r > static_cast<uint8_t>(RecipientStatus::kDeferred)) return Malformed("state");
    info->recipient_status[i] = static_cast<RecipientStatus>(r);
  }
  in->remove_prefix(n);
  if (version == kStateWithMetadataVersion) {
    std::string_view metadata;
    if (!GetBytes(in, &metadata) || metadata.size() > kMaxMetadataSize) {
      return Malformed("state");
    }
    info->envelope.metadata.assign(metadata);
    entry->metadata_in_state = true;
  }
  return Status::Ok();
}

std::string EncodeState(const MessageInfo& info) {
  IndexEntry entry;
  entry.info = info;
  return EncodeState(entry);
}

Status DecodeState(std::string_view* in, MessageInfo* info) {
  IndexEntry entry;
  entry.info = std::move(*info);
  Status s = DecodeState(in, &entry);
  *info = std::move(entry.info);
  return s;
}

std::string EncodeCommit(const MessageInfo& info, const std::vector<log::Location>& chunks) {
  std::string out = EncodeEnvelope(info);
  PutVarint(&out, chunks.size());
  for (const log::Location& c : chunks) PutLocation(&out, c);
  return out;
}

Status DecodeCommit(std::string_view payload, MessageInfo* info,
                    std::vector<log::Location>* chunks) {
  SPOOL_RETURN_IF_ERROR(DecodeEnvelope(&payload, info));
  uint64_t n;
  if (!GetVarint(&payload, &n) || n > payload.size()) return Malformed("commit");
  chunks->resize(n);
  for (uint64_t i = 0; i < n; ++i) {
    if (!GetLocation(&payload, &(*chunks)[i])) return Malformed("commit");
  }
  return Status::Ok();
}

std::string EncodeIndexEntry(const IndexEntry& e) {
  std::string out = EncodeEnvelope(e.info);
  out += EncodeState(e);
  PutLocation(&out, e.main);
  PutVarint(&out, e.body_offset);
  PutLocation(&out, e.state);
  PutVarint(&out, e.chunks.size());
  for (const log::Location& c : e.chunks) PutLocation(&out, c);
  return out;
}

Status DecodeIndexEntry(std::string_view in, IndexEntry* e) {
  SPOOL_RETURN_IF_ERROR(DecodeEnvelope(&in, &e->info));
  SPOOL_RETURN_IF_ERROR(DecodeState(&in, e));
  uint64_t body_offset, n;
  if (!GetLocation(&in, &e->main) || !GetVarint(&in, &body_offset) ||
      !GetLocation(&in, &e->state) || !GetVarint(&in, &n) || n > in.size()) {
    return Malformed("index entry");
  }
  e->body_offset = static_cast<uint32_t>(body_offset);
  e->chunks.resize(n);
  for (uint64_t i = 0; i < n; ++i) {
    if (!GetLocation(&in, &e->chunks[i])) return Malformed("index entry");
  }
  return Status::Ok();
}

std::string IdKey(const MessageId& id) {
  std::string key;
  key.reserve(16);
  PutFixed64BE(&key, id.time());
  PutFixed64BE(&key, id.tag());
  return key;
}

MessageId IdFromKey(std::string_view key) {
  if (key.size() < 16) return MessageId();
  return MessageId(GetFixed64BE(key.data()), GetFixed64BE(key.data() + 8));
}

}  // namespace spool::internal
