#include "fsck/fsck.h"

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>

#include "fsck/shard_fsck.h"

namespace spool::fsck {

using internal::kLockFile;
using internal::kLogDir;
using internal::Marker;

void ShardFsck::Run() {
  Status s = ReadShardMarker(fs_, dir_, &marker_);
  if (!s.ok()) {
    Operational(s);
    return;
  }
  summary_.shard = marker_.shard;
  CheckLock();
  known_ = LoadKnownDamage(dir_);
  s = ScanSegmentHeaders();
  if (!s.ok()) {
    if (s.code() == Code::kCorruption) {
      Add("duplicate_segment", Severity::kError, 0, std::nullopt, "",
          std::string(s.message()) +
              " (move the stale copy away, then run spool-fsck again; not repaired "
              "automatically)");
    } else {
      Operational(s);
    }
    return;
  }
  // Truncated segment files: a repair gives them their size back first (zeros, read as
  // end of data or as damage it then records), so that their intact records are scanned
  // like any others; the log leaves files too small for a header and a batch aside.
  for (const auto& [path, size] : short_files_) {
    uint64_t seq = 0;
    for (const auto& [sq, p] : seg_path_) {
      if (p == path) seq = sq;
    }
    const size_t p = Add("truncated_segment", Severity::kError, seq, size, "",
                         path + " is " + std::to_string(size) + " bytes, not the spool's " +
                             std::to_string(marker_.segment_size));
    if (seq != 0) truncated_[seq] = size;
    if (!repair_ || size > marker_.segment_size) continue;
    StatusOr<std::unique_ptr<io::File>> f = fs_->Open(path, io::OpenOptions{});
    s = f.ok() ? fs_->Truncate(**f, marker_.segment_size) : f.status();
    if (!s.ok()) {
      Add("repair_failed", Severity::kError, seq, std::nullopt, "",
          "cannot extend " + path + ": " + s.ToString());
      continue;
    }
    Corrected(p, "extended with zeros to the segment size");
  }
  // The index before the log: everything it names was durable in the log when it was
  // flushed, so a writer appending meanwhile cannot make an entry look dangling.
  OpenIndex();
  if (!index_readable_) {
    index_problem_ = Add("index_unreadable", Severity::kError, 0, std::nullopt, "",
                         index_error_ + " (a repair rebuilds it from the log)");
  }
  std::unique_ptr<log::Log> log;
  s = ScanLog(/*writable=*/false, &log);
  if (!s.ok()) {
    if (s.code() == Code::kFailedPrecondition || s.code() == Code::kPermission ||
        s.code() == Code::kIoError) {
      Operational(s);
    } else {
      Add("log_unreadable", Severity::kError, 0, std::nullopt, "", std::string(s.message()));
    }
    return;
  }
  log.reset();
  summary_.checked = true;
  summary_.segments = recovery_.segments;
  summary_.free_segments = recovery_.free_segments;
  summary_.records = recovery_.records;
  summary_.bytes_scanned = recovery_.bytes;
  AnalyzeDamage();
  AnalyzeIndex();
  for (const auto& [key, e] : indexed_) {
    ++summary_.messages;
    if (e.info.state == MessageState::kCorrupt) {
      ++summary_.quarantined;
    } else {
      summary_.live_bytes += e.footprint();
    }
  }
  if (!repair_) return;
  if (options_.rebuild_index) {
    Add("index_rebuilt", Severity::kNote, 0, std::nullopt, "",
        "the index was rebuilt from the log (--rebuild-index)");
  }
  s = Repair();
  if (!s.ok()) {
    Add("repair_failed", Severity::kError, 0, std::nullopt, "",
        "repair stopped: " + s.ToString() + " (run spool-fsck --repair again)");
  }
}

Report Fsck(const FsckOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  Report report;
  report.dirs = options.dirs;
  report.mode = options.rebuild_index ? "rebuild-index" : options.repair ? "repair" : "check";
  StatusOr<std::unique_ptr<io::FileSystem>> fs = io::NewFileSystem(io::Backend::kAuto);
  auto fail = [&](const std::string& dir, const Status& s, std::string kind) {
    Problem p;
    p.kind = std::move(kind);
    p.dir = dir;
    p.detail = std::string(s.message());
    report.problems.push_back(std::move(p));
    report.operational_error = true;
  };
  if (!fs.ok()) {
    fail("", fs.status(), "cannot_open");
  } else {
    // A repair needs every shard to itself before it changes any.
    std::vector<std::unique_ptr<io::FileLock>> locks;
    bool locked = true;
    if (options.repair || options.rebuild_index) {
      const std::string holder = options.lock_holder.empty()
                                     ? "spool-fsck (pid " + std::to_string(getpid()) + ")"
                                     : options.lock_holder;
      for (const std::string& dir : options.dirs) {
        Marker m;
        Status s = ReadShardMarker(fs->get(), dir, &m);
        if (s.ok()) {
          StatusOr<std::unique_ptr<io::FileLock>> lock =
              (*fs)->LockFile(dir + "/" + kLockFile, holder);
          if (lock.ok()) {
            locks.push_back(std::move(lock).value());
            continue;
          }
          s = lock.status();
          fail(dir, s.WithContext("cannot repair"), "locked");
        } else {
          fail(dir, s, "cannot_open");
        }
        locked = false;
      }
    }
    if (locked) {
      uint64_t total = 0;
      for (const std::string& dir : options.dirs) {
        StatusOr<std::vector<std::string>> names = (*fs)->ListDir(dir + "/" + kLogDir);
        if (!names.ok()) continue;
        for (const std::string& n : *names) {
          struct stat st;
          uint32_t slot;
          if (log::ParseSegmentFileName(n, &slot) &&
              ::stat((dir + "/" + kLogDir + "/" + n).c_str(), &st) == 0) {
            total += static_cast<uint64_t>(st.st_size);
          }
        }
      }
      uint64_t base = 0;
      for (size_t i = 0; i < options.dirs.size(); ++i) {
        ShardFsck shard(fs->get(), options, options.dirs[i], static_cast<uint32_t>(i), &report,
                        &base, total);
        shard.Run();
        report.shards.push_back(shard.summary());
        report.bytes_scanned += shard.summary().bytes_scanned;
      }
      if (options.progress) options.progress(total, total);
    }
  }
  bool uncorrected = false, corrected = false;
  for (const Problem& p : report.problems) {
    if (p.severity != Severity::kError || p.kind == "cannot_open" || p.kind == "locked") continue;
    (p.corrected ? corrected : uncorrected) = true;
  }
  report.exit_code = (corrected ? kExitCorrected : 0) | (uncorrected ? kExitUncorrected : 0) |
                     (report.operational_error ? kExitOperational : 0);
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace spool::fsck
