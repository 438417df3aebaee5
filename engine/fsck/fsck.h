// Checks and repairs the files of a spool: the logic of spool-fsck (docs/operations.md,
// "spool-fsck"), whose command line and report printing are tools/fsck/.
//
// A check opens every shard read-only and takes no lock, so it runs beside a writer. It
// scans every segment in large sequential reads, verifying every record's checksums
// (through the log's own recovery scan, so that torn tails and corruption are told apart
// exactly as an open would), replays the log into an in-memory index and compares that
// with the RocksDB index in both directions.
//
// A repair (or index rebuild) first takes every shard's lock, then, per shard and in this
// order, so that a crash at any point leaves a spool that a second repair finishes:
//   1. quarantines damaged messages in the index (state corrupt, envelope from the index
//      or salvaged from the damaged record), flushed;
//   2. truncates a torn tail the way the log's own recovery does (a fresh segment whose
//      header seals the torn one at its valid end);
//   3. applies the other index fixes (unindexed records, stale or dangling entries) and
//      advances the checkpoint, flushed;
//   4. restores truncated segment files to their size and records the damage it has dealt
//      with in the shard's DAMAGE file, so that later checks report it as known.
// A repair never removes a message whose records are intact.
//
// Thread-safety: Fsck may be called from several threads for different spools.

#ifndef SPOOL_FSCK_FSCK_H_
#define SPOOL_FSCK_FSCK_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace spool::fsck {

// Exit codes, as fsck(8): the bits combine (5: some errors corrected, some not). The
// usage error's 16 belongs to the command line (tools/fsck/fsck_tool.h).
inline constexpr int kExitClean = 0;
inline constexpr int kExitCorrected = 1;
inline constexpr int kExitUncorrected = 4;
// Cannot open a shard (missing, not a spool, newer format version, I/O error), or the
// spool is held by another process (repair, rebuild_index).
inline constexpr int kExitOperational = 8;

struct FsckOptions {
  std::vector<std::string> dirs;  // the shards
  bool repair = false;
  // Replaces each shard's index with one rebuilt from the log (the old one is kept as
  // index.old-<unix ms>); implies repair.
  bool rebuild_index = false;
  // Written into the lock files while repairing. Empty: "spool-fsck (pid N)".
  std::string lock_holder;
  // Called now and then with bytes scanned so far and the total; may be empty.
  std::function<void(uint64_t done, uint64_t total)> progress;
};

enum class Severity {
  kError,    // damage or an inconsistency: exit code 4 unless corrected
  kWarning,  // worth a look, not an error (a check beside a writer, say)
  kNote,     // for the record: known damage, quarantined messages, a stale lock file
};

// One thing found.
struct Problem {
  std::string kind;  // stable name, see docs/operations.md
  Severity severity = Severity::kError;
  std::string dir;  // the shard's directory
  uint32_t shard = 0;
  uint64_t segment = 0;  // 0: unknown or not about one segment
  std::string path;      // the file, where one is concerned
  bool has_offset = false;
  uint64_t offset = 0;
  std::string id;  // the message id (canonical text), "" if unknown
  std::string detail;
  bool corrected = false;  // repaired by this run
  std::string action;      // what the repair did ("quarantined", "indexed", ...)
};

struct ShardSummary {
  std::string dir;
  uint32_t shard = 0;
  bool checked = false;  // false: could not be opened (see the operational problem)
  uint64_t segments = 0;
  uint64_t free_segments = 0;
  uint64_t records = 0;  // intact records scanned
  uint64_t bytes_scanned = 0;
  uint64_t messages = 0;     // live messages after the run
  uint64_t quarantined = 0;  // of which in state corrupt
  uint64_t live_bytes = 0;   // log bytes the index references
  uint64_t segment_bytes = 0;
  uint64_t checkpoint_segment = 0, checkpoint_offset = 0;
  std::string lock;  // "free", "stale (pid 42)", "held by pid 42 ..."
};

struct Report {
  std::vector<std::string> dirs;
  std::string mode;  // "check", "repair", "rebuild-index"
  std::vector<ShardSummary> shards;
  std::vector<Problem> problems;
  bool operational_error = false;
  uint64_t bytes_scanned = 0;
  double seconds = 0;
  int exit_code = kExitClean;
};

// Checks (and with options.repair or rebuild_index, repairs) the spool. Never fails as a
// whole: what could not be done is in the report as problems, and exit_code says how it
// went.
Report Fsck(const FsckOptions& options);

}  // namespace spool::fsck

#endif  // SPOOL_FSCK_FSCK_H_
