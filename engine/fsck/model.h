// What spool-fsck knows of a shard apart from its scan: the log replayed into an
// in-memory index (Model), the damaged stretches of segments (Range) and the known-damage
// file that records those a repair has dealt with. Private to engine/fsck/.
//
// Thread-safety: the functions are thread-compatible; a Model is thread-compatible.

#ifndef SPOOL_FSCK_MODEL_H_
#define SPOOL_FSCK_MODEL_H_

#include <map>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>

#include "index/codec.h"
#include "io/file_system.h"
#include "log/log.h"
#include "spool/status.h"

namespace spool::fsck {

// Damage a repair has dealt with (the messages it hit are quarantined): one range of a
// segment per line. Later checks report damage inside these ranges as known, not as an
// error. Segment numbers are never reused in a shard, so a line outlives nothing.
inline constexpr char kDamageFile[] = "DAMAGE";
inline constexpr char kDamageHeader[] = "spool-fsck known damage, format 1";

// A damaged stretch of a segment: [begin, end).
struct Range {
  uint64_t segment = 0, begin = 0, end = 0;
  friend bool operator<(const Range& a, const Range& b) {
    return std::tie(a.segment, a.begin, a.end) < std::tie(b.segment, b.begin, b.end);
  }
  friend bool operator==(const Range&, const Range&) = default;
};

// The ranges of the shard's DAMAGE file; none if it is missing or not of this format.
std::set<Range> LoadKnownDamage(const std::string& dir);

// Replaces the shard's DAMAGE file atomically (temporary file, sync, rename, directory
// sync) with `ranges`; removes it when there are none.
[[nodiscard]] Status WriteKnownDamage(io::FileSystem* fs, const std::string& dir,
                                      const std::set<Range>& ranges);

// The whole content of a small file, "" if it cannot be read.
std::string ReadSmallFile(const std::string& path);

// Whether `a` lies before `b` in the log.
inline bool Before(const log::Location& a, const log::Location& b) {
  return a.segment < b.segment || (a.segment == b.segment && a.offset < b.offset);
}

// The log replayed into an in-memory index from its first record, by the rules of the
// spool's open (internal::ReplayRecord).
class Model {
 public:
  // Applies one intact record. Sets *duplicate when an original (not relocated) message
  // record names an id that is already live, and *undecodable when its payload does not
  // decode.
  void Apply(const log::Record& r, bool* duplicate, Status* undecodable);

  std::map<std::string, internal::IndexEntry> live;  // by IdKey: the index's order
  std::unordered_map<std::string, log::Location> last_touch;
  std::set<std::string> removed;
};

}  // namespace spool::fsck

#endif  // SPOOL_FSCK_MODEL_H_
