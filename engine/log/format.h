// The on-disk format of the segment log: every constant and layout in one place.
// The prose specification is docs/format.md; keep the two in step (tests/format_doc_test.cc
// checks every field's offset and size and every constant's value against it).
//
// A shard (one spool directory) holds fixed-size segment files "seg-NNNNNNNN" (NNNNNNNN is
// a slot number, not an order). A segment starts with a kBlockSize header block; records
// follow. Records are written in batches (commit groups): a batch starts on a kBlockSize
// boundary and ends with a kPadding record carrying kFlagBatchEnd that fills it up to the
// next boundary, so that a batch is whole blocks (O_DIRECT-able) and an acknowledged
// block is never rewritten.
//
// Every integer is little-endian. Checksums are XXH3-64 (seed 0).

#ifndef SPOOL_LOG_FORMAT_H_
#define SPOOL_LOG_FORMAT_H_

#include <cstddef>
#include <cstdint>

namespace spool::log {

// Format version written in every segment header. A reader refuses a higher version.
inline constexpr uint32_t kFormatVersion = 1;

// Writes are in whole blocks; batches and segment data start on block boundaries.
inline constexpr size_t kBlockSize = 4096;

// Records start on kRecordAlignment boundaries within a batch.
inline constexpr size_t kRecordAlignment = 8;

// ---- Segment header: the first kBlockSize bytes of a segment --------------------------
//
// A header block of all zeros marks a free segment (pre-formatted or recycled).

inline constexpr uint64_t kSegmentMagic = 0x3147534C4F4F5053ull;  // "SPOOLSG1" as bytes

struct SegmentHeader {
  uint64_t magic;           // kSegmentMagic
  uint32_t format_version;  // kFormatVersion
  uint32_t header_size;     // sizeof(SegmentHeader)
  uint64_t spool_id;        // random id of the spool, the same in every shard's segments
  uint32_t shard;           // index of the shard (directory) in the spool; not checked
  uint32_t reserved0;       // written as zero, not checked
  uint64_t seq;             // segment sequence number, also the epoch of its records
  uint64_t prev_seq;        // seq of the shard's previous segment (0: none)
  uint64_t prev_end;        // valid end offset of segment prev_seq; bytes past it are void
  uint64_t segment_size;    // size of the file in bytes when activated; not checked
  uint64_t created_ms;      // unix time of activation, milliseconds; not checked
  uint64_t checksum;        // XXH3-64 of the bytes before this field
};
static_assert(sizeof(SegmentHeader) == 80);
inline constexpr size_t kSegmentHeaderChecksummed = offsetof(SegmentHeader, checksum);

// Offset of the first record of a segment.
inline constexpr uint64_t kSegmentDataStart = kBlockSize;

// The smallest file recovery takes for a segment: a header block and two blocks of
// records. A shorter file is reported as "truncated" and left aside; the log never makes
// one (LogOptions requires larger segments).
inline constexpr uint64_t kMinSegmentFileSize = kSegmentDataStart + 2 * kBlockSize;

// ---- Record header ---------------------------------------------------------------------

inline constexpr uint32_t kRecordMagic = 0x43525053u;  // "SPRC" as bytes

enum class RecordType : uint8_t {
  kMessage = 1,      // a whole message: envelope and body
  kBodyChunk = 2,    // a piece of a streamed body; void without a later kCommit
  kCommit = 3,       // commits a streamed message: its envelope and the chunks' digest
  kStateUpdate = 4,  // a change of a message's delivery state (or of its metadata)
  kRemove = 5,       // the message is gone
  kPadding = 6,      // fills a batch up to the next block boundary; payload is zeros
};
inline constexpr uint8_t kMaxRecordType = 6;

// Flags (RecordHeader::flags bits). The other bits are written as zero and not checked.
// kFlagBatchEnd: the last record of a batch (its padding record).
inline constexpr uint8_t kFlagBatchEnd = 0x01;
// kFlagRelocated: a copy of a record made by reclamation, kept when the copy is written
// again; a message or commit record without it is its message's original.
inline constexpr uint8_t kFlagRelocated = 0x02;

struct RecordHeader {
  uint32_t magic;         // kRecordMagic
  uint8_t type;           // RecordType
  uint8_t flags;          // kFlag*
  uint16_t header_size;   // sizeof(RecordHeader)
  uint32_t payload_size;  // bytes of payload that follow the header
  uint32_t acked_lag;     // batch_seq minus the newest batch acknowledged when this
                          // record's batch was placed, 1..batch_seq, saturated at
                          // UINT32_MAX (docs/format.md, "Torn tails and corruption")
  uint64_t epoch;         // seq of the segment it was written into
  uint64_t batch_seq;     // commit group number within the shard, increasing
  uint64_t id_hi;         // message id (zero for kPadding)
  uint64_t id_lo;
  uint64_t payload_hash;  // XXH3-64 of the payload
  uint64_t header_hash;   // XXH3-64 of the bytes of this header before this field
};
static_assert(sizeof(RecordHeader) == 64);
inline constexpr size_t kRecordHeaderChecksummed = offsetof(RecordHeader, header_hash);

// The bytes a record occupies: header plus payload, rounded up to kRecordAlignment.
constexpr uint64_t RecordFootprint(uint64_t payload_size) {
  return (sizeof(RecordHeader) + payload_size + kRecordAlignment - 1) & ~(kRecordAlignment - 1);
}

constexpr uint64_t AlignUp(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

// ---- Segment file names ------------------------------------------------------------------

// "seg-" and the slot in kSegmentSlotDigits decimal digits, zero-padded: "seg-00000012".
inline constexpr char kSegmentPrefix[] = "seg-";
inline constexpr int kSegmentSlotDigits = 8;
// A segment file being pre-formatted: its name plus this suffix until it is renamed into
// place. Open removes such files (they never held data).
inline constexpr char kSegmentTempSuffix[] = ".tmp";

}  // namespace spool::log

#endif  // SPOOL_LOG_FORMAT_H_
