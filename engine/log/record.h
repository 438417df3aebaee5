// Encoding and decoding of log records and segment headers (layouts in log/format.h).
//
// A record is encoded in two steps so that producers can do the expensive part in
// parallel: EncodeRecord (any thread) writes the header and payload and hashes the
// payload; FinalizeRecord (the shard's writer, when it places the batch in a segment)
// stamps the epoch and batch number and hashes the 64-byte header.
//
// Thread-safety: pure functions over caller-owned memory.

#ifndef SPOOL_LOG_RECORD_H_
#define SPOOL_LOG_RECORD_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "log/format.h"

namespace spool::log {

// The 128-bit id a record belongs to (the message id; zero for padding).
struct RecordId {
  uint64_t hi = 0;
  uint64_t lo = 0;
  friend bool operator==(const RecordId&, const RecordId&) = default;
  friend auto operator<=>(const RecordId&, const RecordId&) = default;
};

uint64_t Hash64(const void* data, size_t size);

// Writes header and payload (plus zero padding up to RecordFootprint) at dst.
// REQUIRES: dst has RecordFootprint(payload.size()) bytes.
void EncodeRecord(std::byte* dst, RecordType type, RecordId id, std::span<const std::byte> payload);

// The same with the payload given as the concatenation of `parts`, copied and hashed
// without joining them first.
void EncodeRecordParts(std::byte* dst, RecordType type, RecordId id,
                       std::span<const std::span<const std::byte>> parts);

// Stamps epoch, batch number, the newest acknowledged batch and flags (OR-ed in), and
// computes the header hash. REQUIRES: acked_through < batch_seq.
void FinalizeRecord(std::byte* record, uint64_t epoch, uint64_t batch_seq, uint64_t acked_through,
                    uint8_t extra_flags);

// The newest batch that was acknowledged when the record's batch was placed.
inline uint64_t AckedThrough(const RecordHeader& h) { return h.batch_seq - h.acked_lag; }

// Writes a kPadding record of `footprint` bytes (header + zero payload) at dst, finalized.
// REQUIRES: footprint >= sizeof(RecordHeader) and a multiple of kRecordAlignment.
void EncodePadding(std::byte* dst, uint64_t footprint, uint64_t epoch, uint64_t batch_seq,
                   uint64_t acked_through);

// How a header read from disk at a record position looks.
enum class HeaderState {
  kValid,  // intact header of the expected epoch
  kZero,   // all zeros: never written (end of data in a pre-formatted segment)
  kStale,  // an intact header of an older epoch: left over from the segment's previous
           // life (end of data in a recycled segment)
  kBad,    // anything else: a torn write or damage
};

// Checks the header at `p` (sizeof(RecordHeader) bytes) against `epoch`, and that the
// record's footprint fits in `room` bytes. On kValid and kStale fills *out.
HeaderState DecodeRecordHeader(const std::byte* p, uint64_t epoch, uint64_t room,
                               RecordHeader* out);

// True if `payload` matches header.payload_hash.
bool PayloadIntact(const RecordHeader& header, std::span<const std::byte> payload);

// Segment headers: the block is kBlockSize bytes, the header at its start, zeros after.
void EncodeSegmentHeader(const SegmentHeader& header, std::byte* block);

enum class SegmentHeaderState {
  kValid,       // intact, our format version
  kFree,        // all zeros: a free segment
  kBad,         // damaged or not a segment header
  kNewVersion,  // intact but written by a newer format version
};
SegmentHeaderState DecodeSegmentHeader(const std::byte* block, SegmentHeader* out);

std::string_view RecordTypeName(RecordType type);

}  // namespace spool::log

#endif  // SPOOL_LOG_RECORD_H_
