#include "log/record.h"

#define XXH_STATIC_LINKING_ONLY  // XXH3_state_t on the stack
#include <xxhash.h>
#if defined(__x86_64__) || defined(__i386__)
// libxxhash's run-time dispatch: XXH3 with AVX2 or AVX-512 where the CPU has them (the plain
// entry points are the SSE2 build: 10.7 GB/s against 2x that measured on the development
// machine; docs/benchmarks.md). Same hash values: XXH3's output does not depend on the
// instruction set.
#include <xxh_x86dispatch.h>
#endif

#include <algorithm>
#include <cstring>

namespace spool::log {
namespace {

bool AllZero(const std::byte* p, size_t n) {
  return std::all_of(p, p + n, [](std::byte b) { return b == std::byte{0}; });
}

}  // namespace

uint64_t Hash64(const void* data, size_t size) { return XXH3_64bits(data, size); }

void EncodeRecord(std::byte* dst, RecordType type, RecordId id,
                  std::span<const std::byte> payload) {
  RecordHeader h{};
  h.magic = kRecordMagic;
  h.type = static_cast<uint8_t>(type);
  h.header_size = sizeof(RecordHeader);
  h.payload_size = static_cast<uint32_t>(payload.size());
  h.id_hi = id.hi;
  h.id_lo = id.lo;
  h.payload_hash = Hash64(payload.data(), payload.size());
  std::memcpy(dst, &h, sizeof(h));
  if (!payload.empty()) std::memcpy(dst + sizeof(h), payload.data(), payload.size());
  const uint64_t end = sizeof(h) + payload.size();
  std::memset(dst + end, 0, RecordFootprint(payload.size()) - end);
}

void EncodeRecordParts(std::byte* dst, RecordType type, RecordId id,
                       std::span<const std::span<const std::byte>> parts) {
  XXH3_state_t state;
  XXH3_64bits_reset(&state);
  uint64_t size = 0;
  std::byte* p = dst + sizeof(RecordHeader);
  for (const auto& part : parts) {
    if (part.empty()) continue;
    std::memcpy(p, part.data(), part.size());
    XXH3_64bits_update(&state, part.data(), part.size());
    p += part.size();
    size += part.size();
  }
  RecordHeader h{};
  h.magic = kRecordMagic;
  h.type = static_cast<uint8_t>(type);
  h.header_size = sizeof(RecordHeader);
  h.payload_size = static_cast<uint32_t>(size);
  h.id_hi = id.hi;
  h.id_lo = id.lo;
  h.payload_hash = XXH3_64bits_digest(&state);
  std::memcpy(dst, &h, sizeof(h));
  const uint64_t end = sizeof(h) + size;
  std::memset(dst + end, 0, RecordFootprint(size) - end);
}

void FinalizeRecord(std::byte* record, uint64_t epoch, uint64_t batch_seq, uint64_t acked_through,
                    uint8_t extra_flags) {
  RecordHeader h;
  std::memcpy(&h, record, sizeof(h));
  h.epoch = epoch;
  h.batch_seq = batch_seq;
  h.acked_lag = static_cast<uint32_t>(std::min<uint64_t>(batch_seq - acked_through, UINT32_MAX));
  h.flags |= extra_flags;
  h.header_hash = Hash64(&h, kRecordHeaderChecksummed);
  std::memcpy(record, &h, sizeof(h));
}

void EncodePadding(std::byte* dst, uint64_t footprint, uint64_t epoch, uint64_t batch_seq,
                   uint64_t acked_through) {
  const uint64_t payload = footprint - sizeof(RecordHeader);
  RecordHeader h{};
  h.magic = kRecordMagic;
  h.type = static_cast<uint8_t>(RecordType::kPadding);
  h.header_size = sizeof(RecordHeader);
  h.payload_size = static_cast<uint32_t>(payload);
  std::memset(dst + sizeof(h), 0, payload);
  h.payload_hash = Hash64(dst + sizeof(h), payload);
  std::memcpy(dst, &h, sizeof(h));
  FinalizeRecord(dst, epoch, batch_seq, acked_through, kFlagBatchEnd);
}

HeaderState DecodeRecordHeader(const std::byte* p, uint64_t epoch, uint64_t room,
                               RecordHeader* out) {
  RecordHeader h;
  std::memcpy(&h, p, sizeof(h));
  if (h.magic != kRecordMagic) {
    return AllZero(p, sizeof(h)) ? HeaderState::kZero : HeaderState::kBad;
  }
  if (h.header_hash != Hash64(&h, kRecordHeaderChecksummed)) return HeaderState::kBad;
  // The header is intact: what it says was written by us, at some epoch.
  if (h.header_size != sizeof(RecordHeader) || h.type == 0 || h.type > kMaxRecordType ||
      h.acked_lag == 0 || h.acked_lag > h.batch_seq) {
    return HeaderState::kBad;
  }
  *out = h;
  if (h.epoch < epoch) return HeaderState::kStale;
  if (h.epoch != epoch) return HeaderState::kBad;
  if (RecordFootprint(h.payload_size) > room) return HeaderState::kBad;
  return HeaderState::kValid;
}

bool PayloadIntact(const RecordHeader& header, std::span<const std::byte> payload) {
  return payload.size() == header.payload_size &&
         Hash64(payload.data(), payload.size()) == header.payload_hash;
}

void EncodeSegmentHeader(const SegmentHeader& header, std::byte* block) {
  std::memset(block, 0, kBlockSize);
  SegmentHeader h = header;
  h.magic = kSegmentMagic;
  h.header_size = sizeof(SegmentHeader);
  h.checksum = Hash64(&h, kSegmentHeaderChecksummed);
  std::memcpy(block, &h, sizeof(h));
}

SegmentHeaderState DecodeSegmentHeader(const std::byte* block, SegmentHeader* out) {
  if (AllZero(block, kBlockSize)) return SegmentHeaderState::kFree;
  SegmentHeader h;
  std::memcpy(&h, block, sizeof(h));
  if (h.magic != kSegmentMagic || h.checksum != Hash64(&h, kSegmentHeaderChecksummed)) {
    return SegmentHeaderState::kBad;
  }
  *out = h;
  if (h.format_version > kFormatVersion) return SegmentHeaderState::kNewVersion;
  if (h.header_size != sizeof(SegmentHeader) || h.seq == 0) return SegmentHeaderState::kBad;
  return SegmentHeaderState::kValid;
}

std::string_view RecordTypeName(RecordType type) {
  switch (type) {
    case RecordType::kMessage:
      return "message";
    case RecordType::kBodyChunk:
      return "body_chunk";
    case RecordType::kCommit:
      return "commit";
    case RecordType::kStateUpdate:
      return "state_update";
    case RecordType::kRemove:
      return "remove";
    case RecordType::kPadding:
      return "padding";
  }
  return "unknown";
}

}  // namespace spool::log
