// A shard's directory layout and its SPOOL marker, and the sizes derived from a shard's
// segment size: shared by the spool (engine/core/) and spool-fsck, which must
// read a shard exactly as the spool writes it. Layouts: docs/format.md.
//
// Thread-safety: constants and pure functions; ReadMarker as thread-safe as `fs`.

#ifndef SPOOL_CORE_LAYOUT_H_
#define SPOOL_CORE_LAYOUT_H_

#include <algorithm>
#include <cstdint>
#include <string>

#include "io/file_system.h"
#include "log/format.h"
#include "spool/status.h"

namespace spool::internal {

// The files and directories of a shard.
inline constexpr char kMarkerFile[] = "SPOOL";
inline constexpr char kLockFile[] = "LOCK";
inline constexpr char kLogDir[] = "log";
inline constexpr char kIndexDir[] = "index";
// Written, synced and removed in the shard's log and index directories by the re-probe
// of a shard with a latched fault.
inline constexpr char kProbeFile[] = "PROBE";
// The newest marker format this build reads and writes.
inline constexpr int kMarkerVersion = 1;

// The largest commit group: 8 MiB, or a quarter of a small segment.
inline uint64_t BatchCapacity(uint64_t segment_size) {
  return std::min<uint64_t>(8ull << 20, segment_size / 4 / log::kBlockSize * log::kBlockSize);
}
// Bodies up to this size are one record; larger ones are streamed as chunks. Half a
// batch, less room for the envelope.
inline uint64_t InlineLimit(uint64_t segment_size) {
  return BatchCapacity(segment_size) / 2 - 65536;
}

// What a shard's SPOOL marker says.
struct Marker {
  int version = 0;
  uint64_t spool_id = 0;
  uint32_t shard = 0;
  // The shard's segment size. ReadMarker leaves the value it had when the marker names no
  // valid one (at least 1 MiB, a multiple of the block size).
  uint64_t segment_size = 0;
};

// Reads and parses `dir`/SPOOL into *marker. Errors: kFailedPrecondition when it does not
// parse ("DIR is not a spool: DIR/SPOOL is unreadable") or was written by a newer format
// than kMarkerVersion; the file system's errors (a missing marker among them: callers
// that tell "not a spool" apart check for it first).
Status ReadMarker(io::FileSystem* fs, const std::string& dir, Marker* marker);

}  // namespace spool::internal

#endif  // SPOOL_CORE_LAYOUT_H_
