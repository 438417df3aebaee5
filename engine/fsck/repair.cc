#include <chrono>
#include <cstdint>

#include "fsck/shard_fsck.h"
#include "index/index.h"

namespace spool::fsck {

using internal::IndexEntry;
using internal::kIndexDir;

namespace {

// Index writes of a repair go in batches of this many operations.
constexpr int kIndexBatchOps = 1024;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

Status ShardFsck::Repair() {
  const std::string index_path = dir_ + "/" + kIndexDir;
  const bool rebuild = options_.rebuild_index || !index_readable_;
  std::unique_ptr<index::Index> index;
  if (rebuild) {
    // Keep the old index for the operator, as RebuildIndex does.
    SPOOL_ASSIGN_OR_RETURN(bool exists, fs_->Exists(index_path));
    if (exists) {
      SPOOL_RETURN_IF_ERROR(
          fs_->Rename(index_path, index_path + ".old-" + std::to_string(NowMs())));
      SPOOL_RETURN_IF_ERROR(fs_->SyncDir(dir_));
    }
  }
  SPOOL_ASSIGN_OR_RETURN(index, index::Index::Open(index_path, /*read_only=*/false));

  // 1. Quarantine first: nothing that follows may make a damaged message look dangling.
  {
    index::Index::Batch batch(*index);
    for (const Fix& f : fixes_) {
      if (f.kind != Fix::Kind::kQuarantine) continue;
      const IndexEntry* old = rebuild || !f.old ? nullptr : &*f.old;
      batch.Put(f.entry, old);
    }
    if (!batch.empty()) {
      SPOOL_RETURN_IF_ERROR(index->Write(batch));
      SPOOL_RETURN_IF_ERROR(index->Flush());
    }
    for (const Fix& f : fixes_) {
      if (f.kind == Fix::Kind::kQuarantine) Corrected(f.problem, "quarantined");
    }
    for (size_t p : missing_problems_) Corrected(p, "its messages quarantined");
  }

  // 2. A torn tail is cut the way the log's open does: a fresh segment whose header
  // states where the torn one validly ends. The writable open also rewrites intact
  // records found past the tear, so the replay is taken again from it.
  // The fixes planned from the first scan, for marking what got corrected.
  const std::vector<Fix> planned = fixes_;
  const std::optional<size_t> checkpoint_problem = checkpoint_problem_;
  std::vector<Fix> fixes;
  for (const Fix& f : planned) {
    if (f.kind != Fix::Kind::kQuarantine) fixes.push_back(f);
  }
  if (torn_problem_) {
    std::unique_ptr<log::Log> log;
    SPOOL_RETURN_IF_ERROR(ScanLog(/*writable=*/true, &log));
    // One padding record: its batch activates the fresh segment that seals the torn one.
    log::AppendRecord pad;
    pad.type = log::RecordType::kPadding;
    SPOOL_RETURN_IF_ERROR(log->Append({&pad, 1}, nullptr));
    log.reset();
    Corrected(*torn_problem_, "truncated");
    // Records past the tear may have moved: plan the index fixes again against the new
    // replay, with the quarantine already in place, without reporting anything twice.
    for (const Fix& f : planned) {
      if (f.kind == Fix::Kind::kQuarantine) indexed_[internal::IdKey(f.entry.info.id)] = f.entry;
    }
    const size_t keep = report_->problems.size();
    AnalyzeIndex();
    report_->problems.resize(keep);
    fixes = fixes_;
    for (Fix& f : fixes) f.problem = SIZE_MAX;
  }

  // 3. The other index fixes, against the replay of the log as it is now.
  if (rebuild) {
    fixes.clear();
    for (const auto& [key, e] : model_.live) {
      auto old = indexed_.find(key);
      const bool was_quarantined =
          old != indexed_.end() && old->second.info.state == MessageState::kCorrupt;
      if (quarantined_keys_.count(key) != 0 || was_quarantined) continue;
      if (CheckBody(e) == LocState::kIntact) {
        fixes.push_back({Fix::Kind::kPut, e, std::nullopt, SIZE_MAX});
      } else {
        fixes.push_back({Fix::Kind::kQuarantine,
                         QuarantineEntry(e.info.id, old == indexed_.end() ? nullptr : &old->second,
                                         &e, nullptr),
                         std::nullopt, SIZE_MAX});
      }
    }
    // Quarantined entries of the old index stay quarantined in the new one.
    for (const auto& [key, e] : indexed_) {
      if (e.info.state == MessageState::kCorrupt) {
        fixes.push_back({Fix::Kind::kQuarantine, e, std::nullopt, SIZE_MAX});
      }
    }
  }
  index::Index::Batch* batch = nullptr;
  std::unique_ptr<index::Index::Batch> holder;
  int ops = 0;
  for (size_t i = 0; i <= fixes.size(); ++i) {
    if (holder == nullptr) {
      holder = std::make_unique<index::Index::Batch>(*index);
      batch = holder.get();
    }
    if (i < fixes.size()) {
      const Fix& f = fixes[i];
      const IndexEntry* old = f.old ? &*f.old : nullptr;
      if (f.kind == Fix::Kind::kDelete) {
        batch->Delete(*old);
      } else {
        batch->Put(f.entry, old);
      }
      if (++ops < kIndexBatchOps) continue;
    }
    if (i == fixes.size() && log_end_.segment != 0) batch->SetCheckpoint(log_end_);
    SPOOL_RETURN_IF_ERROR(index->Write(*batch));
    holder.reset();
    ops = 0;
  }
  SPOOL_RETURN_IF_ERROR(index->Flush());
  for (const Fix& f : planned) {
    if (f.kind == Fix::Kind::kPut) Corrected(f.problem, "indexed from the log");
    if (f.kind == Fix::Kind::kDelete) Corrected(f.problem, "dropped from the index");
  }
  if (checkpoint_problem) Corrected(*checkpoint_problem, "checkpoint moved to the log's end");
  if (index_problem_) Corrected(*index_problem_, rebuild ? "rebuilt from the log" : "");

  // 4. The damage dealt with, for later checks.
  std::set<Range> known;
  for (const Range& r : known_) {
    if (seg_path_.count(r.segment) != 0) known.insert(r);
  }
  for (const Range& r : damage_) known.insert(r);
  SPOOL_RETURN_IF_ERROR(WriteKnownDamage(fs_, dir_, known));
  for (size_t p : damage_problems_) Corrected(p, "recorded as known damage");
  index.reset();

  // What the index holds now, for the summary.
  StatusOr<std::unique_ptr<index::Index>> after = index::Index::Open(index_path, true);
  if (after.ok()) {
    summary_.messages = 0;
    summary_.quarantined = 0;
    (*after)
        ->ForEach([&](const MessageId&, const IndexEntry& e) {
          ++summary_.messages;
          if (e.info.state == MessageState::kCorrupt) ++summary_.quarantined;
          return true;
        })
        .IgnoreError();  // the summary is informative
    StatusOr<log::Location> cp = (*after)->Checkpoint();
    if (cp.ok()) {
      summary_.checkpoint_segment = cp->segment;
      summary_.checkpoint_offset = cp->offset;
    }
  }
  return Status::Ok();
}

}  // namespace spool::fsck
