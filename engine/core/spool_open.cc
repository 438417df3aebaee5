// Open and recovery: the spool's open (Spool::Open, in control/open.cc, adds the control
// channel's server), a shard's marker and open, the replay of the log into the index after
// the checkpoint, the close; RebuildIndex.

#include <unistd.h>

#include <algorithm>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "core/internal.h"
#include "core/layout.h"
#include "core/spool_impl.h"
#include "index/replay.h"
#include "spool/logging.h"
#include "spool/spool.h"

namespace spool {
namespace internal {

Status SpoolImpl::Init() {
  if (options_.dirs.empty()) return InvalidArgumentError("a spool needs at least one directory");
  if (options_.segment_size < (1ull << 20) || options_.segment_size % log::kBlockSize != 0) {
    return InvalidArgumentError("segment_size must be a multiple of 4096 and at least 1 MiB");
  }
  inline_limit_ = InlineLimit(options_.segment_size);
  io::Backend backend;
  if (!io::ParseBackend(options_.io_backend, &backend)) {
    return InvalidArgumentError("unknown io_backend '" + options_.io_backend +
                                "' (auto, io_uring, posix)");
  }
  if (fs_ == nullptr) {
    SPOOL_ASSIGN_OR_RETURN(owned_fs_, io::NewFileSystem(backend));
    fs_ = owned_fs_.get();
  }
  uint64_t spool_id = 0;
  for (size_t i = 0; i < options_.dirs.size(); ++i) {
    SPOOL_RETURN_IF_ERROR(OpenShard(options_.dirs[i], static_cast<uint32_t>(i), &spool_id));
  }
  // Bodies larger than a chunk are streamed: a chunk must fit one record of every shard.
  stream_chunk_size_ = std::min<uint64_t>(options_.stream_chunk_size, inline_limit_);
  if (stream_chunk_size_ == 0) return InvalidArgumentError("stream_chunk_size must be positive");
  if (!options_.read_only) {
    for (auto& shard : shards_) {
      threads_.emplace_back([this, s = shard.get()] { MaintenanceLoop(s); });
    }
    threads_.emplace_back([this] { BigEnqueueLoop(); });
  }
  return Status::Ok();
}

Status SpoolImpl::ReadOrCreateMarker(const std::string& dir, uint32_t ordinal, uint64_t* spool_id,
                                     uint32_t* shard_number, uint64_t* segment_size) {
  const std::string marker = dir + "/" + kMarkerFile;
  SPOOL_ASSIGN_OR_RETURN(bool exists, fs_->Exists(marker));
  if (exists) {
    internal::Marker m;
    m.segment_size = *segment_size;
    SPOOL_RETURN_IF_ERROR(internal::ReadMarker(fs_, dir, &m));
    if (*spool_id != 0 && m.spool_id != *spool_id) {
      return FailedPreconditionError(dir + " belongs to another spool than " + options_.dirs[0]);
    }
    *spool_id = m.spool_id;
    *shard_number = m.shard;
    *segment_size = m.segment_size;  // the spool's, fixed at creation
    return Status::Ok();
  }
  if (options_.read_only)
    return FailedPreconditionError(dir + " is not a spool (no " + marker + ")");
  SPOOL_ASSIGN_OR_RETURN(std::vector<std::string> names, fs_->ListDir(dir));
  for (const std::string& n : names) {
    if (n != "lost+found" && n != kLockFile) {
      return FailedPreconditionError(dir + " is not a spool and not empty (it holds '" + n +
                                     "'); refusing to use it");
    }
  }
  if (*spool_id == 0) {
    std::random_device rd;
    *spool_id = ((uint64_t{rd()} << 32) | rd()) | 1;
  }
  *shard_number = ordinal;
  const std::string text = "spool format " + std::to_string(kMarkerVersion) + "\nspool id " +
                           std::to_string(*spool_id) + "\nshard " + std::to_string(ordinal) +
                           "\nsegment size " + std::to_string(*segment_size) + "\n";
  const std::string tmp = marker + ".tmp";
  {
    SPOOL_ASSIGN_OR_RETURN(auto f, fs_->Open(tmp, io::OpenOptions{.create = true}));
    io::WriteOp op{0, text.data(), text.size()};
    SPOOL_RETURN_IF_ERROR(fs_->WriteBatch(*f, {&op, 1}, io::Sync::kData));
  }
  SPOOL_RETURN_IF_ERROR(fs_->Rename(tmp, marker));
  return fs_->SyncDir(dir);
}

Status SpoolImpl::OpenShard(const std::string& dir, uint32_t ordinal, uint64_t* spool_id) {
  SPOOL_ASSIGN_OR_RETURN(bool exists, fs_->Exists(dir));
  if (!exists) {
    if (!options_.create_if_missing || options_.read_only) {
      return FailedPreconditionError(dir + " does not exist");
    }
    // Create the parents too, like mkdir -p.
    std::string path;
    for (size_t pos = 0; pos != std::string::npos;) {
      pos = dir.find('/', pos + 1);
      path = dir.substr(0, pos);
      if (!path.empty()) SPOOL_RETURN_IF_ERROR(fs_->CreateDir(path));
    }
  }
  auto shard = std::make_unique<Shard>();
  shard->dir = dir;
  if (exists && !options_.read_only) {
    // Refuse a directory that is not ours before leaving anything (a lock file) in it.
    SPOOL_ASSIGN_OR_RETURN(bool marked, fs_->Exists(dir + "/" + kMarkerFile));
    SPOOL_ASSIGN_OR_RETURN(std::vector<std::string> names, fs_->ListDir(dir));
    for (const std::string& n : names) {
      if (!marked && n != "lost+found" && n != kLockFile) {
        return FailedPreconditionError(dir + " is not a spool and not empty (it holds '" + n +
                                       "'); refusing to use it");
      }
    }
  }
  if (!options_.read_only) {
    std::string holder = options_.lock_holder;
    if (holder.empty()) holder = "pid " + std::to_string(getpid());
    SPOOL_ASSIGN_OR_RETURN(shard->lock, fs_->LockFile(dir + "/" + kLockFile, holder));
  }
  uint64_t segment_size = options_.segment_size;
  SPOOL_RETURN_IF_ERROR(ReadOrCreateMarker(dir, ordinal, spool_id, &shard->number, &segment_size));
  inline_limit_ = std::min(inline_limit_, InlineLimit(segment_size));
  shard->segment_size = segment_size;
  if (by_number_.count(shard->number) != 0) {
    return FailedPreconditionError(dir + " is shard " + std::to_string(shard->number) + ", like " +
                                   by_number_[shard->number]->dir);
  }
  const std::string log_dir = dir + "/" + kLogDir;
  if (!options_.read_only) SPOOL_RETURN_IF_ERROR(fs_->CreateDir(log_dir));
  SPOOL_ASSIGN_OR_RETURN(shard->index,
                         index::Index::Open(dir + "/" + kIndexDir, options_.read_only));
  SPOOL_ASSIGN_OR_RETURN(log::Location checkpoint, shard->index->Checkpoint());

  log::LogOptions lo;
  lo.segment_size = segment_size;
  lo.batch_capacity = BatchCapacity(segment_size);
  lo.max_wait_ms = options_.max_commit_wait_ms;
  lo.spool_id = *spool_id;
  lo.shard = shard->number;
  lo.read_only = options_.read_only;
  lo.replay_from = checkpoint;
  lo.direct_io = options_.direct_io;
  if (lo.direct_io && !options_.read_only) {
    // tmpfs and some network filesystems refuse O_DIRECT: use buffered I/O there.
    const std::string probe = log_dir + "/direct-probe";
    StatusOr<std::unique_ptr<io::File>> f =
        fs_->Open(probe, io::OpenOptions{.create = true, .direct = true});
    if (!f.ok()) {
      lo.direct_io = false;
      Log(LogLevel::kInfo, dir + ": O_DIRECT unavailable (" + f.status().ToString() +
                               "); using buffered writes + fdatasync");
    }
    f = Status(Code::kInternal, "closed");
    fs_->Unlink(probe).IgnoreError();  // a leftover probe file is harmless
  }

  Shard* s = shard.get();
  auto batch = std::make_unique<index::Index::Batch>(*s->index);
  std::map<std::string, std::optional<IndexEntry>> pending;
  log::Location last;
  Status replay_status;
  log::RecoveryReport report;
  StatusOr<std::unique_ptr<log::Log>> opened = log::Log::Open(
      fs_, log_dir, lo,
      [&](const log::Record& r) -> Status {
        SPOOL_RETURN_IF_ERROR(Replay(*s, r, batch.get(), &pending));
        last = {r.location.segment, r.location.offset + r.location.size, 0};
        if (batch->empty() || pending.size() < kReplayBatchOps) return Status::Ok();
        batch->SetCheckpoint(last);
        SPOOL_RETURN_IF_ERROR(s->index->Write(*batch));
        batch = std::make_unique<index::Index::Batch>(*s->index);
        pending.clear();
        return Status::Ok();
      },
      &report);
  SPOOL_RETURN_IF_ERROR(opened.status().WithContext("shard " + dir));
  shard->log = std::move(opened).value();
  if (last.segment != 0) batch->SetCheckpoint(last);
  SPOOL_RETURN_IF_ERROR(s->index->Write(*batch));
  if (!options_.read_only) SPOOL_RETURN_IF_ERROR(s->index->Flush());
  for (const log::Damage& d : report.damage) {
    Log(LogLevel::kError, dir + ": " + d.kind + " in segment " + std::to_string(d.segment) +
                              " at offset " + std::to_string(d.offset) + ": " + d.detail +
                              " (run spool-fsck)");
  }
  if (report.torn_tail_bytes > 0) {
    Log(LogLevel::kInfo, dir + ": log ended in a torn write of " +
                             std::to_string(report.torn_tail_bytes) +
                             " bytes (an unacknowledged commit cut short by a crash)");
  }
  if (!options_.read_only) {
    shard->log->SetDurableHook(
        [this, s](std::span<const log::CommittedRecord> records) { OnDurable(*s, records); });
  }
  by_number_[shard->number] = shard.get();
  shards_.push_back(std::move(shard));
  return Status::Ok();
}

// Applies one log record to the index, as the live path would have.
Status SpoolImpl::Replay(Shard& shard, const log::Record& r, index::Index::Batch* batch,
                         std::map<std::string, std::optional<IndexEntry>>* pending) {
  if (!internal::ChangesIndexEntry(r.type)) return Status::Ok();
  const MessageId id(r.id.hi, r.id.lo);
  const std::string key = internal::IdKey(id);
  std::optional<IndexEntry> current;
  if (auto it = pending->find(key); it != pending->end()) {
    current = it->second;
  } else if (!internal::IsOriginalMessage(r)) {
    // An original message record after the checkpoint is new to the index (ids are
    // unique); anything else may refer to an entry from before the checkpoint.
    SPOOL_ASSIGN_OR_RETURN(current, shard.index->Get(id));
  }
  SPOOL_ASSIGN_OR_RETURN(std::optional<IndexEntry> next, internal::ReplayRecord(r, current));
  if (next) {
    batch->Put(*next, current ? &*current : nullptr);
  } else if (current) {
    batch->Delete(*current);
  }
  (*pending)[key] = std::move(next);
  return Status::Ok();
}

SpoolImpl::~SpoolImpl() {
  attachment_.reset();  // it calls this spool (the control channel's requests)
  {
    MutexLock l(&mu_);
    closing_ = true;
  }
  for (std::thread& t : threads_) t.join();
  for (auto& shard : shards_) {
    shard->log.reset();  // finishes the commits in flight; their index writes land
    if (!options_.read_only && !crash_on_close_ && shard->index != nullptr) {
      Status s = shard->index->Flush();
      if (!s.ok()) Log(LogLevel::kWarning, shard->dir + ": index flush at close: " + s.ToString());
    }
  }
}

StatusOr<std::unique_ptr<Spool>> OpenWithFileSystem(const Options& options, io::FileSystem* fs) {
  auto spool = std::make_unique<SpoolImpl>(options, fs);
  SPOOL_RETURN_IF_ERROR(spool->Init());
  return std::unique_ptr<Spool>(std::move(spool));
}

}  // namespace internal

Status RebuildIndex(const Options& options) {
  if (options.read_only) return InvalidArgumentError("rebuilding the index needs write access");
  auto fs = io::NewFileSystem(io::Backend::kAuto);
  SPOOL_RETURN_IF_ERROR(fs.status());
  // Take the locks first: nobody may be writing while the index is replaced.
  std::vector<std::unique_ptr<io::FileLock>> locks;
  for (const std::string& dir : options.dirs) {
    SPOOL_ASSIGN_OR_RETURN(bool is_spool, (*fs)->Exists(dir + "/" + internal::kMarkerFile));
    if (!is_spool) return FailedPreconditionError(dir + " is not a spool");
    SPOOL_ASSIGN_OR_RETURN(
        auto lock, (*fs)->LockFile(dir + "/" + internal::kLockFile,
                                   "pid " + std::to_string(getpid()) + " (rebuilding the index)"));
    locks.push_back(std::move(lock));
  }
  // Move each index aside (kept for the operator), then open: with no checkpoint the
  // whole log is replayed into a fresh index.
  const std::string suffix = ".old-" + std::to_string(internal::NowMs());
  for (const std::string& dir : options.dirs) {
    const std::string index_dir = dir + "/" + internal::kIndexDir;
    SPOOL_ASSIGN_OR_RETURN(bool exists, (*fs)->Exists(index_dir));
    if (exists) SPOOL_RETURN_IF_ERROR((*fs)->Rename(index_dir, index_dir + suffix));
    SPOOL_RETURN_IF_ERROR((*fs)->SyncDir(dir));
  }
  locks.clear();
  Options o = options;
  o.create_if_missing = false;
  o.control_socket = false;  // opened only to replay
  SPOOL_ASSIGN_OR_RETURN(std::unique_ptr<Spool> spool, Spool::Open(o));
  spool.reset();
  Log(LogLevel::kInfo, "index rebuilt from the log; the previous index was kept as index" + suffix);
  return Status::Ok();
}

}  // namespace spool
