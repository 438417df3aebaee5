// ShardFsck, the check and repair of one shard, private to engine/fsck/. Its parts, each
// in the file named for it:
//   scan.cc     the shard's files read: marker, lock, segment headers, index, log;
//   analyze.cc  what the scan found, told apart: damage, and index against log;
//   repair.cc   the fixes, in the order fsck/fsck.h gives;
//   fsck.cc     a shard's run from scan to repair, and Fsck over every shard.
//
// Thread-safety: a ShardFsck is used by one thread; different shards' by different ones
// only with different reports.

#ifndef SPOOL_FSCK_SHARD_FSCK_H_
#define SPOOL_FSCK_SHARD_FSCK_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/layout.h"
#include "fsck/fsck.h"
#include "fsck/model.h"
#include "index/codec.h"
#include "io/file_system.h"
#include "log/log.h"
#include "spool/message_id.h"
#include "spool/status.h"

namespace spool::fsck {

// Reads a shard's SPOOL marker; a shard that names no segment size has the default one.
[[nodiscard]] Status ReadShardMarker(io::FileSystem* fs, const std::string& dir,
                                     internal::Marker* m);

// "segment 3 offset 4096", for problem details.
inline std::string LocText(uint64_t segment, uint64_t offset) {
  return "segment " + std::to_string(segment) + " offset " + std::to_string(offset);
}

// What the scan knows about an intact record.
struct RecInfo {
  log::RecordId id;
  log::RecordType type = log::RecordType::kMessage;
  uint32_t size = 0;
};

struct PairHash {
  size_t operator()(const std::pair<uint64_t, uint64_t>& p) const {
    return static_cast<size_t>(p.first * 0x9E3779B97F4A7C15ull ^ p.second);
  }
};

// Checks and repairs one shard: Run() adds what it finds (and fixes) to the report.
class ShardFsck {
 public:
  ShardFsck(io::FileSystem* fs, const FsckOptions& options, const std::string& dir,
            uint32_t ordinal, Report* report, uint64_t* progress_base, uint64_t progress_total)
      : fs_(fs),
        options_(options),
        repair_(options.repair || options.rebuild_index),
        dir_(dir),
        report_(report),
        progress_base_(progress_base),
        progress_total_(progress_total) {
    summary_.dir = dir;
    summary_.shard = ordinal;
  }

  void Run();
  ShardSummary summary() const { return summary_; }

 private:
  // Adds a problem; returns its index in the report.
  size_t Add(std::string kind, Severity severity, uint64_t segment, std::optional<uint64_t> offset,
             const std::string& id, std::string detail) {
    Problem p;
    p.kind = std::move(kind);
    p.severity = severity;
    p.dir = dir_;
    p.shard = summary_.shard;
    p.segment = segment;
    if (auto it = seg_path_.find(segment); segment != 0 && it != seg_path_.end()) {
      p.path = it->second;
    }
    p.has_offset = offset.has_value();
    p.offset = offset.value_or(0);
    p.id = id;
    p.detail = std::move(detail);
    report_->problems.push_back(std::move(p));
    return report_->problems.size() - 1;
  }
  void Corrected(size_t problem, std::string action) {
    if (problem >= report_->problems.size()) return;  // not reported (planned again)
    report_->problems[problem].corrected = true;
    report_->problems[problem].action = std::move(action);
  }
  void Operational(const Status& s) {
    Add("cannot_open", Severity::kError, 0, std::nullopt, "", std::string(s.message()));
    report_->operational_error = true;
  }

  void CheckLock();
  Status ScanSegmentHeaders();
  void OpenIndex();
  Status ScanLog(bool writable, std::unique_ptr<log::Log>* log);
  void AnalyzeDamage();
  void AnalyzeIndex();
  Status Repair();

  enum class LocState { kIntact, kDamaged, kMissingSegment, kNothing };
  LocState CheckLocation(const log::Location& loc, const log::RecordId& id,
                         log::RecordType type) const;
  // Whether all records of `e` are intact; otherwise the worst state found.
  LocState CheckBody(const internal::IndexEntry& e) const;
  // A quarantine entry for `id` from the best source: the index, the replay, or the
  // damaged record itself.
  internal::IndexEntry QuarantineEntry(const MessageId& id, const internal::IndexEntry* indexed,
                                       const internal::IndexEntry* replayed,
                                       const log::Location* damaged) const;
  void AddQuarantine(internal::IndexEntry entry, std::optional<internal::IndexEntry> old,
                     size_t problem);
  log::LogOptions LogOptionsFor(bool writable) const;

  io::FileSystem* const fs_;
  const FsckOptions& options_;
  const bool repair_;
  const std::string dir_;
  Report* const report_;
  uint64_t* const progress_base_;
  const uint64_t progress_total_;
  ShardSummary summary_;

  internal::Marker marker_;
  bool held_by_other_ = false;
  bool direct_io_ = false;
  std::map<uint64_t, std::string> seg_path_;  // seq -> file, for valid segment headers
  std::map<uint64_t, uint64_t> seg_size_;     // seq -> file size
  std::vector<std::pair<std::string, uint64_t>> short_files_;  // path, size

  // The index as read at the start.
  bool index_readable_ = false;
  std::string index_error_;
  log::Location checkpoint_;
  std::map<std::string, internal::IndexEntry> indexed_;

  // The log scan.
  std::unordered_map<std::pair<uint64_t, uint64_t>, RecInfo, PairHash> records_;
  std::map<uint64_t, std::vector<uint64_t>> offsets_;  // seq -> sorted record offsets
  std::set<uint64_t> live_segments_;
  log::RecoveryReport recovery_;
  Model model_;
  log::Location log_end_;
  uint64_t newest_segment_ = 0;
  uint64_t last_end_newest_ = 0;  // end of the last record of the newest segment
  std::optional<uint64_t> torn_at_;
  std::vector<Range> damage_;                                          // this run's damaged ranges
  std::set<Range> known_;                                              // from the DAMAGE file
  std::map<std::pair<uint64_t, uint64_t>, log::RecordId> damage_ids_;  // (seq, offset) -> id

  // Repair plan.
  struct Fix {
    enum class Kind { kQuarantine, kPut, kDelete } kind;
    internal::IndexEntry entry;
    std::optional<internal::IndexEntry> old;
    size_t problem;
  };
  std::vector<Fix> fixes_;
  std::set<std::string> quarantined_keys_;
  std::optional<size_t> torn_problem_;
  std::vector<size_t> damage_problems_;
  std::map<uint64_t, uint64_t> truncated_;  // seq -> file size before any repair
  std::optional<size_t> checkpoint_problem_;
  std::optional<size_t> index_problem_;
  std::vector<size_t> missing_problems_;
  uint64_t progress_reported_ = 0;
};

}  // namespace spool::fsck

#endif  // SPOOL_FSCK_SHARD_FSCK_H_
