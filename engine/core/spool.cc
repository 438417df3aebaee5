// The Spool: shards of (segment log, RocksDB index), ids, state changes, reads,
// replay at open and reclamation. The design is in docs/design.md.

#include "spool/spool.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <utility>

#include "index/index.h"
#include "io/file_system.h"
#include "log/log.h"
#include "index/codec.h"
#include "core/internal.h"
#include "core/layout.h"
#include "spool/logging.h"
#include "index/replay.h"
#include "spool/smtp_reply.h"
#include "util/futex.h"
#include "util/mutex.h"

namespace spool {

std::string_view MessageStateName(MessageState state) {
  switch (state) {
    case MessageState::kQueued:
      return "queued";
    case MessageState::kHeld:
      return "held";
    case MessageState::kCorrupt:
      return "corrupt";
  }
  return "unknown";
}

std::string_view RecipientStatusName(RecipientStatus status) {
  switch (status) {
    case RecipientStatus::kPending:
      return "pending";
    case RecipientStatus::kDelivered:
      return "delivered";
    case RecipientStatus::kFailed:
      return "failed";
    case RecipientStatus::kDeferred:
      return "deferred";
  }
  return "unknown";
}

namespace {

using internal::IndexEntry;

// Shard layout: core/layout.h.
using internal::BatchCapacity;
using internal::InlineLimit;
using internal::kIndexDir;
using internal::kLockFile;
using internal::kLogDir;
using internal::kMarkerFile;
using internal::kMarkerVersion;
using internal::kProbeFile;
constexpr size_t kLockStripes = 256;
// The index is flushed early when this many records were indexed since the last flush:
// an open after a crash replays at most about this many.
constexpr uint64_t kFlushRecords = 20000;
// A segment the reclaimer decided to keep is scanned again after this long at the
// earliest (each scan reads it whole and looks up every record in the index).
constexpr std::chrono::seconds kRescanInterval{2};
// Reclamation copies forward this many messages at once, holding their stripe locks
// until the copies are durable and indexed (about one group commit).
constexpr size_t kRelocateGroup = 64;
// ... and keeps at most this many payload bytes of them in flight at once (the log's
// batches stay open to other producers).
constexpr uint64_t kRelocateBytesInFlight = 4u << 20;
// The scan of a segment being reclaimed keeps at most this many payload bytes for the
// copies; the rest are read again when copied.
constexpr uint64_t kScanKeepBytes = 32u << 20;
// How long a statfs of a shard with plenty of room is reused by admission.
constexpr int64_t kSpaceCacheUs = 100000;
// Replay writes the index in batches of this many operations.
constexpr int kReplayBatchOps = 1024;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

uint64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

log::RecordId ToRecordId(const MessageId& id) { return {id.time(), id.tag()}; }

// The answer for a message whose removal is under way or done.
Status RemovedError(const MessageId& id) {
  return NotFoundError("no message " + id.ToString() + " (removed)");
}

std::span<const std::byte> AsBytes(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

bool References(const IndexEntry& e, const log::Location& loc) {
  if (e.main == loc || (e.state.segment != 0 && e.state == loc)) return true;
  return std::find(e.chunks.begin(), e.chunks.end(), loc) != e.chunks.end();
}

// An index change waiting for its log records to become durable. The durable hook fills
// the locations of its records (in append order) and applies it.
struct IndexOp {
  enum class Slot { kMain, kState };
  bool remove = false;
  IndexEntry entry;               // the new entry, or the removed one
  std::optional<IndexEntry> old;  // the entry replaced
  std::vector<Slot> slots;        // what each appended record of this op is
  std::vector<log::Location> locations;
};

// A record's payload kept from reclamation's scan of a segment, so that relocating it
// needs no second read.
struct ScannedRecord {
  log::Location location;
  std::string payload;
};

// Fills recs[0] (the main record: `main_type`, `main_payload`) and, if the message has a
// state record, recs[1] (its state, encoded into *state_payload) for a copy of `entry`
// made by reclamation; op->slots says which is which. Returns the number of records.
// The records point into the payloads and at op: all must outlive the append.
size_t PrepareCopy(const IndexEntry& entry, log::RecordType main_type,
                   std::string_view main_payload, std::string* state_payload, IndexOp* op,
                   log::AppendRecord recs[2]) {
  const log::RecordId id = ToRecordId(entry.info.id);
  recs[0].type = main_type;
  recs[0].id = id;
  recs[0].parts[0] = AsBytes(main_payload);
  recs[0].part_count = 1;
  recs[0].context = op;
  recs[0].flags = log::kFlagRelocated;
  op->slots.push_back(IndexOp::Slot::kMain);
  if (entry.state.segment == 0) return 1;
  *state_payload = internal::EncodeState(entry.info);
  recs[1].type = log::RecordType::kStateUpdate;
  recs[1].id = id;
  recs[1].parts[0] = AsBytes(*state_payload);
  recs[1].part_count = 1;
  recs[1].context = op;
  recs[1].flags = log::kFlagRelocated;
  op->slots.push_back(IndexOp::Slot::kState);
  return 2;
}

// Holds a set of mutexes, locked in the order given (callers sort them), for a scope.
class StripeLocks {
 public:
  explicit StripeLocks(std::span<Mutex* const> mutexes) ABSL_NO_THREAD_SAFETY_ANALYSIS
      : mutexes_(mutexes) {
    for (Mutex* m : mutexes_) m->Lock();
  }
  ~StripeLocks() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    for (auto it = mutexes_.rbegin(); it != mutexes_.rend(); ++it) (*it)->Unlock();
  }
  StripeLocks(const StripeLocks&) = delete;
  StripeLocks& operator=(const StripeLocks&) = delete;

 private:
  std::span<Mutex* const> mutexes_;
};

struct Shard {
  uint32_t number = 0;
  // Per-message locks (SpoolImpl::StripeOf): a change of a message holds its stripe
  // until the change is durable and indexed.
  std::array<Mutex, kLockStripes> stripes;
  std::string dir;
  uint64_t segment_size = 0;  // the shard's own, from its marker
  std::unique_ptr<io::FileLock> lock;
  std::unique_ptr<log::Log> log;
  std::unique_ptr<index::Index> index;

  // Held by the durable hook while it indexes a batch, and by the index catch-up after an
  // index fault, so that the two never interleave.
  Mutex hook_mu;
  // The end of the last record the durable hook has seen.
  log::Location hooked_end ABSL_GUARDED_BY(hook_mu);

  Mutex mu;
  // A failed index write: the shard refuses new mail and stops writing the index (so its
  // checkpoint stays before every record it missed) until a re-probe passes and the index
  // has caught up with the log.
  Status index_fault ABSL_GUARDED_BY(mu);
  std::atomic<bool> index_faulted{false};  // index_fault is set (read without mu)
  std::atomic<bool> dirty{false};          // index written since the last flush
  // Records indexed since the last flush: a flush is due early past kFlushRecords, to
  // bound the log that an open after a crash replays.
  std::atomic<uint64_t> unflushed_records{0};
  // The last segment the reclaimer scanned and left alone, and when: it is not scanned
  // again for kRescanInterval (a scan reads the segment and looks up every record).
  // Used by the shard's maintenance thread only.
  uint64_t kept_segment = 0;
  std::chrono::steady_clock::time_point kept_at;
  // Failure handling, by the maintenance thread only: the fault seen in the last round
  // (each fault is logged once), when it began, the next re-probe and its last result.
  Status seen_fault;
  std::chrono::steady_clock::time_point fault_since, next_probe;
  Status last_probe;
  // The scrubber: the next sealed segment to verify and when.
  uint64_t scrub_next = 0;
  std::chrono::steady_clock::time_point scrub_at;

  // The last statfs of the shard's filesystem and when (ShardSpace).
  Mutex space_mu;
  io::SpaceInfo space ABSL_GUARDED_BY(space_mu);
  int64_t space_at_us ABSL_GUARDED_BY(space_mu) = -1;

  // Messages whose asynchronous removal is not yet durable: gone for lookups, and a
  // reason for reclamation to wait (their records must stay until the removal holds).
  Mutex removing_mu;
  std::set<MessageId> removing ABSL_GUARDED_BY(removing_mu);
  std::atomic<size_t> removing_count{0};
  bool Removing(const MessageId& id) {
    if (removing_count.load() == 0) return false;
    MutexLock l(&removing_mu);
    return removing.count(id) != 0;
  }

  // Segments holding chunks of streamed messages not yet committed: the index does not
  // know them yet, so reclamation must leave these segments alone.
  std::multiset<uint64_t> pinned ABSL_GUARDED_BY(mu);

  std::atomic<int64_t> messages{0};
  std::atomic<int64_t> body_bytes{0};
  std::atomic<int64_t> live_bytes{0};
  std::once_flag counted;  // the counters above include the start-up count
  // The start-up count walks the index in id order under hook_mu, a chunk at a time; the
  // durable hook counts a change only if the walk has passed its id, so that every entry
  // is counted exactly once however the two interleave.
  bool counting ABSL_GUARDED_BY(hook_mu) = true;
  std::optional<MessageId> counted_through ABSL_GUARDED_BY(hook_mu);
  bool Counted(const MessageId& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(hook_mu) {
    return !counting || (counted_through && id <= *counted_through);
  }
};

class SpoolImpl;

class BodyWriterImpl : public BodyWriter {
 public:
  BodyWriterImpl(SpoolImpl* spool, Shard* shard, MessageInfo info)
      : spool_(spool), shard_(shard), info_(std::move(info)) {}
  ~BodyWriterImpl() override { Unpin(); }
  Status Append(std::string_view piece) override;
  StatusOr<MessageId> Commit() override;
  void Abort() override {
    done_ = true;
    Unpin();
  }

 private:
  Status WriteChunk(std::string_view chunk);
  void Unpin();

  SpoolImpl* spool_;
  Shard* shard_;
  MessageInfo info_;
  std::string pending_;
  std::vector<log::Location> chunks_;
  bool done_ = false;
};

class SpoolImpl : public Spool {
 public:
  SpoolImpl(const Options& options, io::FileSystem* fs) : options_(options), fs_(fs) {
    std::random_device rd;
    nonce_ = ((uint64_t{rd()} << 32) | rd()) & ((uint64_t{1} << 48) - 1);
  }
  ~SpoolImpl() override;

  Status Init();
  // As after a crash: the index is not flushed at close.
  void SetCrashOnClose() { crash_on_close_ = true; }
  void FailIndexWritesForTest(size_t shard, Status status) {
    shards_.at(shard)->index->FailWritesForTest(std::move(status));
  }
  uint64_t inline_limit() const { return inline_limit_; }
  uint64_t stream_chunk_size() const { return stream_chunk_size_; }

  StatusOr<MessageId> Enqueue(const Envelope& envelope, std::string_view body) override;
  void EnqueueAsync(const Envelope& envelope, std::string_view body, EnqueueCallback done) override;
  StatusOr<std::unique_ptr<BodyWriter>> BeginMessage(const Envelope& envelope) override;
  StatusOr<MessageInfo> Get(const MessageId& id) override;
  StatusOr<std::string> ReadBody(const MessageId& id) override;
  Status ReadBodyStream(const MessageId& id,
                        const std::function<Status(std::string_view)>& sink) override;
  Status RecordAttempt(const MessageId& id, const AttemptResult& result) override;
  Status Hold(const MessageId& id) override;
  Status Release(const MessageId& id) override;
  Status Requeue(const MessageId& id) override;
  Status Remove(const MessageId& id) override;
  void RemoveAsync(const MessageId& id, std::function<void(const Status&)> done) override;
  StatusOr<std::vector<MessageId>> ScanDue(std::string_view queue, int64_t now_ms,
                                           size_t limit) override;
  Status ForEach(const std::function<bool(const MessageInfo&)>& visit) override;
  Status Admission(uint64_t expected_size) override;
  Health GetHealth() override;
  Stats GetStats() override;
  const Options& options() const override { return options_; }

  // Used by BodyWriterImpl.
  Status AppendSync(Shard& shard, std::span<const log::AppendRecord> records,
                    std::vector<log::Location>* locations);
  StatusOr<MessageId> CommitChunked(Shard& shard, MessageInfo info,
                                    std::vector<log::Location> chunks);
  StatusOr<MessageId> EnqueueInline(Shard& shard, const MessageInfo& info, std::string_view body);
  // `max_wait_ms` as Log::AppendAsync's.
  // lead: the caller waits for `done` (Log::AppendLeading) and holds no lock.
  void AppendMessage(Shard& shard, const MessageInfo& info, std::string_view body,
                     EnqueueCallback done, int64_t max_wait_ms = -1, bool lead = false);
  Status CheckNewMessage(const Envelope& envelope, uint64_t size) const;
  Status ChunkAdmission(Shard& shard, uint64_t size) { return ShardAdmission(shard, size); }

 private:
  Status OpenShard(const std::string& dir, uint32_t ordinal, uint64_t* spool_id);
  // Reads the shard's SPOOL marker, or writes it for a new shard. *segment_size comes in
  // as the option and goes out as the shard's own.
  Status ReadOrCreateMarker(const std::string& dir, uint32_t ordinal, uint64_t* spool_id,
                            uint32_t* shard_number, uint64_t* segment_size);
  Status Replay(Shard& shard, const log::Record& record, index::Index::Batch* batch,
                std::map<std::string, std::optional<IndexEntry>>* pending);
  void OnDurable(Shard& shard, std::span<const log::CommittedRecord> records);
  Status ShardAdmission(Shard& shard, uint64_t expected_size);
  // The shard's free space: statfs at most every kSpaceCacheUs while there is plenty, at
  // every call near the minimum.
  StatusOr<io::SpaceInfo> ShardSpace(Shard& shard, uint64_t expected_size);
  // A latched fault of the shard (log, index, RocksDB background error), or OK.
  Status LatchedFault(Shard& shard);
  // The same as the status to answer with (an I/O error latched: kUnavailable).
  Status ShardFault(Shard& shard);
  // Refuses changes to a shard whose index missed records: they would be based on stale
  // entries.
  Status IndexHealth(Shard& shard);
  // The background re-probe: logs a new fault, and clears it once a write + sync of a probe
  // file passes and there is space again.
  void Reprobe(Shard& shard);
  Status ProbeDisk(Shard& shard);
  // After an index fault: replays the log records the index missed.
  Status CatchUpIndex(Shard& shard);
  // The scrubber: verifies the next sealed segment if its turn has come.
  void Scrub(Shard& shard);
  // Puts the message(s) whose record `damage` hit in state kCorrupt.
  void QuarantineDamage(Shard& shard, const log::Damage& damage);
  void Quarantine(const MessageId& id, const std::string& why);
  StatusOr<Shard*> PickShard(uint64_t expected_size);
  StatusOr<Shard*> ShardOf(const MessageId& id);
  MessageInfo NewMessage(const Envelope& envelope, uint64_t size, uint32_t shard);
  Status WritableCheck() const;
  // Appends a state record for `id` after `change` edits the info (under the id's lock).
  Status ChangeState(const MessageId& id, const std::function<Status(MessageInfo* info)>& change);
  StatusOr<IndexEntry> Lookup(Shard& shard, const MessageId& id);
  // The removing set (Shard::removing): hides a message whose removal is under way.
  // MarkRemoving is false if its removal is under way already.
  bool MarkRemoving(Shard& shard, const MessageId& id);
  void UnmarkRemoving(Shard& shard, const MessageId& id);
  // Appends the removal of `old` (marked removing) and answers `done` once it is durable
  // and indexed, or failed. REQUIRES: the id's stripe lock is held.
  void AppendRemoval(Shard& shard, IndexEntry old, std::function<void(const Status&)> done);
  StatusOr<std::string> ReadRecordPayload(Shard& shard, const MessageId& id,
                                          const log::Location& loc);
  // The lock that orders the changes of message `id` of `shard`. Each shard has its own
  // stripes, so that a shard stuck on its disk holds up no other shard's changes.
  static Mutex& StripeOf(Shard& shard, const MessageId& id) {
    return shard.stripes[(id.time() ^ (id.tag() * 0x9E3779B97F4A7C15ull)) % kLockStripes];
  }

  void MaintenanceLoop(Shard* shard);
  void CountEntries(Shard& shard);
  void CountEntriesOnce(Shard& shard);
  // Reclaims the oldest sealed segment if the policy says so; true if it did.
  StatusOr<bool> ReclaimOldest(Shard& shard);
  // Copies forward the records in segment `oldest` of the messages in `group`, all at
  // once (one group commit rather than one per message; streamed ones are left to the
  // caller). False if a removal of one of them is in flight (reclamation must wait for
  // its outcome).
  // What reclamation does with message `id` while copying segment `oldest` forward:
  // kCopy (its entry in *entry), kSkip (removed, quarantined, or nothing of it in the
  // segment), kWait (its removal is in flight). REQUIRES: the id's stripe lock is held.
  enum class CopyVerdict { kCopy, kSkip, kWait };
  StatusOr<CopyVerdict> JudgeCopy(Shard& shard, const MessageId& id, uint64_t oldest,
                                  IndexEntry* entry);
  StatusOr<bool> RelocateGroup(Shard& shard, uint64_t oldest, std::span<const MessageId> group,
                               std::map<MessageId, ScannedRecord>& scanned);
  Status RelocateChunked(Shard& shard, const IndexEntry& entry);
  void BigEnqueueLoop();

  const Options options_;
  uint64_t inline_limit_ = 0;
  uint64_t stream_chunk_size_ = 0;
  std::unique_ptr<io::FileSystem> owned_fs_;
  io::FileSystem* fs_ = nullptr;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::map<uint32_t, Shard*> by_number_;
  std::atomic<uint64_t> last_time_{0};
  uint64_t nonce_ = 0;
  std::atomic<uint32_t> next_shard_{0};

  std::atomic<uint64_t> enqueued_{0}, removed_{0}, reclaimed_{0}, relocated_bytes_{0};
  std::atomic<uint64_t> faults_{0}, recoveries_{0}, scrubbed_bytes_{0}, corrupt_found_{0},
      quarantined_{0};

  Mutex mu_;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  // Work that may block, taken off the callers' threads: EnqueueAsync of a streamed body,
  // RemoveAsync of a message whose stripe is busy. One worker thread (BigEnqueueLoop)
  // runs it in order, and drains it at close.
  std::deque<std::function<void()>> big_queue_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_;
  bool crash_on_close_ = false;
};

// ---- Open ----------------------------------------------------------------------------------

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

// ---- The durable hook ----------------------------------------------------------------------

void SpoolImpl::OnDurable(Shard& shard, std::span<const log::CommittedRecord> records) {
  MutexLock hook(&shard.hook_mu);
  index::Index::Batch batch(*shard.index);
  for (const log::CommittedRecord& r : records) {
    auto* op = static_cast<IndexOp*>(r.context);
    if (op == nullptr) continue;
    op->locations.push_back(r.location);
    if (op->locations.size() < op->slots.size()) continue;
    const bool count = shard.Counted(op->entry.info.id);
    if (op->remove) {
      batch.Delete(op->entry);
      if (count) {
        shard.messages.fetch_sub(1);
        shard.body_bytes.fetch_sub(op->entry.info.size);
        shard.live_bytes.fetch_sub(op->entry.footprint());
      }
      continue;
    }
    for (size_t i = 0; i < op->slots.size(); ++i) {
      if (op->slots[i] == IndexOp::Slot::kMain) op->entry.main = op->locations[i];
      if (op->slots[i] == IndexOp::Slot::kState) op->entry.state = op->locations[i];
    }
    batch.Put(op->entry, op->old ? &*op->old : nullptr);
    if (!count) continue;
    shard.live_bytes.fetch_add(op->entry.footprint());
    if (op->old) {
      shard.live_bytes.fetch_sub(op->old->footprint());
    } else {
      shard.messages.fetch_add(1);
      shard.body_bytes.fetch_add(op->entry.info.size);
    }
  }
  const log::Location& last = records.back().location;
  shard.hooked_end = {last.segment, last.offset + last.size, 0};
  batch.SetCheckpoint(shard.hooked_end);
  shard.unflushed_records.fetch_add(records.size());
  // Once a write failed, later batches are left to the catch-up too: the checkpoint must
  // stay before the first record the index missed. (index_faulted changes only under
  // hook_mu, which is held.)
  if (shard.index_faulted.load()) return;
  Status s = shard.index->Write(batch);
  shard.dirty.store(true);
  if (s.ok()) return;
  MutexLock l(&shard.mu);
  if (shard.index_fault.ok()) {
    // The records are durable in the log: the index catches up from it once a re-probe
    // passes (or at the next open). Until then the shard takes no new mail.
    shard.index_fault = s;
    shard.index_faulted.store(true);
    Log(LogLevel::kError,
        shard.dir + ": index write failed, shard refuses new mail: " + s.ToString());
  }
}

// ---- Writes --------------------------------------------------------------------------------

Status SpoolImpl::WritableCheck() const {
  if (options_.read_only) return FailedPreconditionError("the spool is open read-only");
  return Status::Ok();
}

MessageInfo SpoolImpl::NewMessage(const Envelope& envelope, uint64_t size, uint32_t shard) {
  uint64_t now = NowMicros();
  uint64_t last = last_time_.load();
  uint64_t t;
  do {
    t = std::max(now, last + 1);
  } while (!last_time_.compare_exchange_weak(last, t));
  MessageInfo info;
  info.id = MessageId(t, (uint64_t{shard} << 48) | nonce_);
  info.envelope = envelope;
  info.size = size;
  info.arrival_ms = static_cast<int64_t>(t / 1000);
  info.next_attempt_ms = info.arrival_ms;
  info.recipient_status.assign(envelope.recipients.size(), RecipientStatus::kPending);
  return info;
}

Status SpoolImpl::LatchedFault(Shard& shard) {
  Status s = shard.log->health();
  if (s.ok()) s = IndexHealth(shard);
  if (s.ok()) s = shard.index->BackgroundError();
  return s;
}

Status SpoolImpl::ShardFault(Shard& shard) {
  Status s = LatchedFault(shard);
  if (s.ok()) return s;
  // A full disk and a permission or read-only fault keep their own replies (452, 451
  // 4.3.5): they tell the sender and the operator what is wrong. After an I/O error the
  // operation that met it got 451 4.3.0; until a re-probe passes the shard is not serving
  // (421 4.3.2, SPEC §3 "latched unhealthy").
  if (s.code() == Code::kStorageFull || s.code() == Code::kPermission) return s;
  return UnavailableError(shard.dir + " is latched unhealthy until a re-probe passes (" +
                          s.ToString() + ")");
}

Status SpoolImpl::IndexHealth(Shard& shard) {
  if (!shard.index_faulted.load()) return Status::Ok();
  MutexLock l(&shard.mu);
  return shard.index_fault;
}

StatusOr<io::SpaceInfo> SpoolImpl::ShardSpace(Shard& shard, uint64_t expected_size) {
  const int64_t now = static_cast<int64_t>(NowMicros());
  {
    MutexLock l(&shard.space_mu);
    // Plenty: four times what admission needs, so that 100 ms of writing at any speed a
    // disk can take cannot cross the minimum unnoticed.
    const bool plenty = shard.space.bytes_free > 4 * (options_.min_free_bytes + expected_size) &&
                        shard.space.inodes_free > 4 * options_.min_free_inodes;
    if (shard.space_at_us >= 0 && now - shard.space_at_us < kSpaceCacheUs && plenty) {
      return shard.space;
    }
  }
  SPOOL_ASSIGN_OR_RETURN(io::SpaceInfo space, fs_->GetSpace(shard.dir));
  MutexLock l(&shard.space_mu);
  shard.space = space;
  shard.space_at_us = now;
  return space;
}

Status SpoolImpl::ShardAdmission(Shard& shard, uint64_t expected_size) {
  SPOOL_RETURN_IF_ERROR(ShardFault(shard));
  SPOOL_ASSIGN_OR_RETURN(io::SpaceInfo space, ShardSpace(shard, expected_size));
  if (space.bytes_free < options_.min_free_bytes + expected_size) {
    return StorageFullError(shard.dir + ": " + std::to_string(space.bytes_free >> 20) +
                            " MiB free, under the minimum of " +
                            std::to_string(options_.min_free_bytes >> 20) +
                            " MiB plus the message");
  }
  if (space.inodes_total > 0 && space.inodes_free < options_.min_free_inodes) {
    return StorageFullError(shard.dir + ": " + std::to_string(space.inodes_free) +
                            " inodes free, under the minimum of " +
                            std::to_string(options_.min_free_inodes));
  }
  return Status::Ok();
}

StatusOr<Shard*> SpoolImpl::PickShard(uint64_t expected_size) {
  {
    MutexLock l(&mu_);
    if (closing_) return UnavailableError("the spool is closing");
  }
  Status first;
  const uint32_t start = next_shard_.fetch_add(1);
  for (size_t i = 0; i < shards_.size(); ++i) {
    Shard* s = shards_[(start + i) % shards_.size()].get();
    Status a = ShardAdmission(*s, expected_size);
    if (a.ok()) return s;
    if (first.ok()) first = a;
  }
  return first;
}

StatusOr<Shard*> SpoolImpl::ShardOf(const MessageId& id) {
  if (!id.valid()) return InvalidArgumentError("invalid message id");
  auto it = by_number_.find(id.shard());
  if (it == by_number_.end()) {
    return NotFoundError("message " + id.ToString() + " names shard " + std::to_string(id.shard()) +
                         ", which this spool does not have");
  }
  return it->second;
}

Status SpoolImpl::AppendSync(Shard& shard, std::span<const log::AppendRecord> records,
                             std::vector<log::Location>* locations) {
  return shard.log->Append(records, locations);
}

// Appends a message record (envelope and body) and calls `done` once it is durable and
// indexed, or failed. The body may be released when this returns.
void SpoolImpl::AppendMessage(Shard& shard, const MessageInfo& info, std::string_view body,
                              EnqueueCallback done, int64_t max_wait_ms, bool lead) {
  const std::string head = internal::EncodeEnvelope(info);
  auto op = std::make_unique<IndexOp>();
  op->entry.info = info;
  op->entry.body_offset = static_cast<uint32_t>(head.size());
  op->slots = {IndexOp::Slot::kMain};
  log::AppendRecord rec;
  rec.type = log::RecordType::kMessage;
  rec.id = ToRecordId(info.id);
  rec.parts[0] = AsBytes(head);
  rec.parts[1] = AsBytes(body);
  rec.part_count = 2;
  rec.context = op.get();
  IndexOp* raw = op.release();  // owned by the callback, which the log always calls
  log::AppendCallback answer = [this, raw, id = info.id, done = std::move(done)](
                                   const Status& st, std::span<const log::Location>) {
    std::unique_ptr<IndexOp> own(raw);
    if (st.ok()) {
      enqueued_.fetch_add(1);
      done(id);
    } else {
      done(st);
    }
  };
  if (lead) {
    shard.log->AppendLeading({&rec, 1}, std::move(answer), max_wait_ms);
  } else {
    shard.log->AppendAsync({&rec, 1}, std::move(answer), max_wait_ms);
  }
}

StatusOr<MessageId> SpoolImpl::EnqueueInline(Shard& shard, const MessageInfo& info,
                                             std::string_view body) {
  Completion done;
  StatusOr<MessageId> result = InternalError("no result");
  // No lock is held here: on an idle shard this thread writes its own batch.
  AppendMessage(
      shard, info, body,
      [&](const StatusOr<MessageId>& id) {
        result = id;
        done.Notify();
      },
      -1, /*lead=*/true);
  done.Wait();
  return result;
}

Status SpoolImpl::CheckNewMessage(const Envelope& envelope, uint64_t size) const {
  SPOOL_RETURN_IF_ERROR(WritableCheck());
  SPOOL_RETURN_IF_ERROR(internal::ValidateEnvelope(envelope));
  if (size > options_.max_message_size) {
    return TooBigError("message of " + std::to_string(size) + " bytes over the limit of " +
                       std::to_string(options_.max_message_size));
  }
  return Status::Ok();
}

StatusOr<MessageId> SpoolImpl::Enqueue(const Envelope& envelope, std::string_view body) {
  SPOOL_RETURN_IF_ERROR(CheckNewMessage(envelope, body.size()));
  if (body.size() > inline_limit_) {
    SPOOL_ASSIGN_OR_RETURN(std::unique_ptr<BodyWriter> w, BeginMessage(envelope));
    for (size_t off = 0; off < body.size(); off += stream_chunk_size_) {
      SPOOL_RETURN_IF_ERROR(w->Append(body.substr(off, stream_chunk_size_)));
    }
    return w->Commit();
  }
  SPOOL_ASSIGN_OR_RETURN(Shard * shard, PickShard(body.size()));
  return EnqueueInline(*shard, NewMessage(envelope, body.size(), shard->number), body);
}

void SpoolImpl::EnqueueAsync(const Envelope& envelope, std::string_view body,
                             EnqueueCallback done) {
  if (Status s = CheckNewMessage(envelope, body.size()); !s.ok()) {
    done(s);
    return;
  }
  if (body.size() > inline_limit_) {
    // Chunked bodies take several synchronous appends: do them off the caller's thread.
    auto job = [this, envelope, body = std::string(body), done] { done(Enqueue(envelope, body)); };
    {
      MutexLock l(&mu_);
      if (!closing_) {
        big_queue_.push_back(std::move(job));
        return;
      }
    }
    done(UnavailableError("the spool is closing"));
    return;
  }
  StatusOr<Shard*> shard = PickShard(body.size());
  if (!shard.ok()) {
    done(shard.status());
    return;
  }
  AppendMessage(**shard, NewMessage(envelope, body.size(), (*shard)->number), body, std::move(done),
                options_.async_commit_wait_ms);
}

void SpoolImpl::BigEnqueueLoop() {
  for (;;) {
    std::function<void()> job;
    {
      MutexLock l(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return closing_ || !big_queue_.empty();
      };
      mu_.Await(absl::Condition(&ready));
      if (big_queue_.empty()) return;
      job = std::move(big_queue_.front());
      big_queue_.pop_front();
    }
    job();
  }
}

StatusOr<std::unique_ptr<BodyWriter>> SpoolImpl::BeginMessage(const Envelope& envelope) {
  SPOOL_RETURN_IF_ERROR(WritableCheck());
  SPOOL_RETURN_IF_ERROR(internal::ValidateEnvelope(envelope));
  SPOOL_ASSIGN_OR_RETURN(Shard * shard, PickShard(0));
  return std::unique_ptr<BodyWriter>(
      new BodyWriterImpl(this, shard, NewMessage(envelope, 0, shard->number)));
}

Status BodyWriterImpl::WriteChunk(std::string_view chunk) {
  log::AppendRecord rec;
  rec.type = log::RecordType::kBodyChunk;
  rec.id = ToRecordId(info_.id);
  rec.parts[0] = AsBytes(chunk);
  rec.part_count = 1;
  std::vector<log::Location> loc;
  SPOOL_RETURN_IF_ERROR(spool_->AppendSync(*shard_, {&rec, 1}, &loc));
  chunks_.push_back(loc[0]);
  MutexLock l(&shard_->mu);
  shard_->pinned.insert(loc[0].segment);
  return Status::Ok();
}

void BodyWriterImpl::Unpin() {
  // After Commit or Abort nothing is pinned: the shard (and spool) may be gone by the
  // time a finished writer is destroyed.
  if (chunks_.empty()) return;
  MutexLock l(&shard_->mu);
  for (const log::Location& c : chunks_) {
    auto it = shard_->pinned.find(c.segment);
    if (it != shard_->pinned.end()) shard_->pinned.erase(it);
  }
  chunks_.clear();
}

Status BodyWriterImpl::Append(std::string_view piece) {
  if (done_) return FailedPreconditionError("the message was already committed or aborted");
  const uint64_t limit = spool_->options().max_message_size;
  if (info_.size + piece.size() > limit) {
    done_ = true;
    return TooBigError("message over the limit of " + std::to_string(limit) + " bytes");
  }
  info_.size += piece.size();
  pending_.append(piece);
  const size_t chunk = spool_->stream_chunk_size();
  size_t off = 0;
  while (pending_.size() - off >= chunk &&
         (info_.size > spool_->inline_limit() || !chunks_.empty())) {
    // Admission holds while the body arrives, not only at its start: a disk that fills
    // up or fails meanwhile ends the message with the reply for it.
    Status s = spool_->ChunkAdmission(*shard_, chunk);
    if (s.ok()) s = WriteChunk(std::string_view(pending_).substr(off, chunk));
    if (!s.ok()) {
      done_ = true;
      return s;
    }
    off += chunk;
  }
  pending_.erase(0, off);
  return Status::Ok();
}

StatusOr<MessageId> BodyWriterImpl::Commit() {
  if (done_) return FailedPreconditionError("the message was already committed or aborted");
  done_ = true;
  if (chunks_.empty() && info_.size <= spool_->inline_limit()) {
    return spool_->EnqueueInline(*shard_, info_, pending_);
  }
  if (!pending_.empty()) SPOOL_RETURN_IF_ERROR(WriteChunk(pending_));
  StatusOr<MessageId> id = spool_->CommitChunked(*shard_, info_, chunks_);
  Unpin();  // committed: the index references the chunks now (or they are garbage)
  return id;
}

StatusOr<MessageId> SpoolImpl::CommitChunked(Shard& shard, MessageInfo info,
                                             std::vector<log::Location> chunks) {
  const std::string payload = internal::EncodeCommit(info, chunks);
  IndexOp op;
  op.entry.info = info;
  op.entry.chunks = std::move(chunks);
  op.slots = {IndexOp::Slot::kMain};
  log::AppendRecord rec;
  rec.type = log::RecordType::kCommit;
  rec.id = ToRecordId(info.id);
  rec.parts[0] = AsBytes(payload);
  rec.part_count = 1;
  rec.context = &op;
  SPOOL_RETURN_IF_ERROR(shard.log->Append({&rec, 1}, nullptr));
  enqueued_.fetch_add(1);
  return info.id;
}

StatusOr<IndexEntry> SpoolImpl::Lookup(Shard& shard, const MessageId& id) {
  if (shard.Removing(id)) return RemovedError(id);
  SPOOL_ASSIGN_OR_RETURN(std::optional<IndexEntry> e, shard.index->Get(id));
  if (!e) {
    // A message acknowledged while the index was failing is in the log, not yet here.
    SPOOL_RETURN_IF_ERROR(IndexHealth(shard).WithContext("message " + id.ToString()));
    return NotFoundError("no message " + id.ToString());
  }
  return std::move(*e);
}

Status SpoolImpl::ChangeState(const MessageId& id,
                              const std::function<Status(MessageInfo* info)>& change) {
  SPOOL_RETURN_IF_ERROR(WritableCheck());
  SPOOL_ASSIGN_OR_RETURN(Shard * shard, ShardOf(id));
  SPOOL_RETURN_IF_ERROR(IndexHealth(*shard));
  MutexLock stripe(&StripeOf(*shard, id));
  SPOOL_ASSIGN_OR_RETURN(IndexEntry old, Lookup(*shard, id));
  IndexOp op;
  op.entry = old;
  op.old = old;
  SPOOL_RETURN_IF_ERROR(change(&op.entry.info));
  op.slots = {IndexOp::Slot::kState};
  const std::string payload = internal::EncodeState(op.entry.info);
  log::AppendRecord rec;
  rec.type = log::RecordType::kStateUpdate;
  rec.id = ToRecordId(id);
  rec.parts[0] = AsBytes(payload);
  rec.part_count = 1;
  rec.context = &op;
  return shard->log->Append({&rec, 1}, nullptr);
}

Status SpoolImpl::RecordAttempt(const MessageId& id, const AttemptResult& result) {
  return ChangeState(id, [&](MessageInfo* info) -> Status {
    for (const auto& [index, status] : result.recipients) {
      if (index >= info->recipient_status.size()) {
        return InvalidArgumentError("recipient index " + std::to_string(index) +
                                    " out of range: message " + id.ToString() + " has " +
                                    std::to_string(info->recipient_status.size()));
      }
      info->recipient_status[index] = status;
    }
    if (result.next_attempt_ms) info->next_attempt_ms = *result.next_attempt_ms;
    if (result.count_attempt) ++info->attempts;
    return Status::Ok();
  });
}

Status SpoolImpl::Hold(const MessageId& id) {
  return ChangeState(id, [&](MessageInfo* info) -> Status {
    if (info->state == MessageState::kCorrupt) {
      return FailedPreconditionError("message " + id.ToString() + " is quarantined as corrupt");
    }
    info->state = MessageState::kHeld;
    return Status::Ok();
  });
}

Status SpoolImpl::Release(const MessageId& id) {
  return ChangeState(id, [&](MessageInfo* info) -> Status {
    if (info->state == MessageState::kCorrupt) {
      return FailedPreconditionError("message " + id.ToString() + " is quarantined as corrupt");
    }
    info->state = MessageState::kQueued;
    info->next_attempt_ms = std::min(info->next_attempt_ms, NowMs());
    return Status::Ok();
  });
}

Status SpoolImpl::Requeue(const MessageId& id) {
  return ChangeState(id, [&](MessageInfo* info) -> Status {
    if (info->state == MessageState::kCorrupt) {
      return FailedPreconditionError("message " + id.ToString() + " is quarantined as corrupt");
    }
    info->state = MessageState::kQueued;
    info->next_attempt_ms = NowMs();
    return Status::Ok();
  });
}

Status SpoolImpl::Remove(const MessageId& id) {
  Completion done;
  Status result;
  RemoveAsync(id, [&](const Status& s) {
    result = s;
    done.Notify();
  });
  done.Wait();
  return result;
}

void SpoolImpl::RemoveAsync(const MessageId& id, std::function<void(const Status&)> done) {
  auto answer = [&](const Status& s) {
    if (done) done(s);
  };
  if (Status s = WritableCheck(); !s.ok()) return answer(s);
  StatusOr<Shard*> found = ShardOf(id);
  if (!found.ok()) return answer(found.status());
  Shard* shard = *found;
  if (Status s = IndexHealth(*shard); !s.ok()) return answer(s);
  // The stripe lock orders this removal with other changes of the message; the removing
  // set then hides it until the removal is durable and applied to the index.
  Mutex& stripe = StripeOf(*shard, id);
  if (stripe.TryLock()) {
    StatusOr<IndexEntry> old = Lookup(*shard, id);
    if (old.ok() && !MarkRemoving(*shard, id)) old = RemovedError(id);
    if (old.ok()) AppendRemoval(*shard, std::move(old).value(), std::move(done));
    stripe.Unlock();
    if (!old.ok()) answer(old.status());
    return;
  }
  // The stripe is busy (reclamation copying a group of messages, a state change waiting
  // for its commit): the removal waits for it on the spool's worker thread, never on the
  // caller's, which may be an event loop or an I/O worker running a callback that the
  // holder of the stripe waits for. The message is hidden from now on, and a second
  // removal of it finds it gone.
  if (Status s = Lookup(*shard, id).status(); !s.ok()) return answer(s);
  if (!MarkRemoving(*shard, id)) return answer(RemovedError(id));
  auto job = [this, shard, id, done]() mutable {
    MutexLock l(&StripeOf(*shard, id));
    // Not Lookup: the removing set hides the message already.
    StatusOr<std::optional<IndexEntry>> e = shard->index->Get(id);
    Status s = e.ok() ? IndexHealth(*shard) : e.status();
    if (s.ok() && !e->has_value()) s = NotFoundError("no message " + id.ToString());
    if (s.ok()) s = WritableCheck();
    if (!s.ok()) {
      UnmarkRemoving(*shard, id);
      if (done) done(s);
      return;
    }
    AppendRemoval(*shard, std::move(**e), std::move(done));
  };
  {
    MutexLock l(&mu_);
    if (!closing_) {
      big_queue_.push_back(std::move(job));
      return;
    }
  }
  UnmarkRemoving(*shard, id);
  answer(UnavailableError("the spool is closing"));
}

bool SpoolImpl::MarkRemoving(Shard& shard, const MessageId& id) {
  MutexLock l(&shard.removing_mu);
  if (!shard.removing.insert(id).second) return false;
  shard.removing_count.fetch_add(1);
  return true;
}

void SpoolImpl::UnmarkRemoving(Shard& shard, const MessageId& id) {
  MutexLock l(&shard.removing_mu);
  shard.removing.erase(id);
  shard.removing_count.fetch_sub(1);
}

void SpoolImpl::AppendRemoval(Shard& shard, IndexEntry old,
                              std::function<void(const Status&)> done) {
  const MessageId id = old.info.id;
  auto op = std::make_unique<IndexOp>();
  op->remove = true;
  op->entry = std::move(old);
  op->slots = {IndexOp::Slot::kMain};
  log::AppendRecord rec;
  rec.type = log::RecordType::kRemove;
  rec.id = ToRecordId(id);
  rec.part_count = 0;
  rec.context = op.get();
  IndexOp* raw = op.release();  // owned by the callback, which the log always calls
  Shard* s = &shard;
  s->log->AppendAsync({&rec, 1}, [this, raw, s, id, done = std::move(done)](
                                     const Status& st, std::span<const log::Location>) {
    std::unique_ptr<IndexOp> own(raw);
    // The durable hook has applied the removal (or it failed and the message stays).
    UnmarkRemoving(*s, id);
    if (st.ok()) removed_.fetch_add(1);
    if (done) done(st);
  });
}

// ---- Reads ---------------------------------------------------------------------------------

StatusOr<MessageInfo> SpoolImpl::Get(const MessageId& id) {
  SPOOL_ASSIGN_OR_RETURN(Shard * shard, ShardOf(id));
  SPOOL_ASSIGN_OR_RETURN(IndexEntry e, Lookup(*shard, id));
  return std::move(e.info);
}

StatusOr<std::string> SpoolImpl::ReadRecordPayload(Shard& shard, const MessageId& id,
                                                   const log::Location& loc) {
  const log::RecordId rid = ToRecordId(id);
  StatusOr<log::Record> r = shard.log->Read(loc, &rid);
  if (!r.ok()) return r.status();
  return std::move(r->payload);
}

Status SpoolImpl::ReadBodyStream(const MessageId& id,
                                 const std::function<Status(std::string_view)>& sink) {
  SPOOL_ASSIGN_OR_RETURN(Shard * shard, ShardOf(id));
  // Reclamation may move the message between the lookup and the read: look again when
  // the record is gone from where the index said.
  for (int attempt = 0;; ++attempt) {
    SPOOL_ASSIGN_OR_RETURN(IndexEntry e, Lookup(*shard, id));
    if (e.info.state == MessageState::kCorrupt) {
      return CorruptionError("message " + id.ToString() + " is quarantined as corrupt");
    }
    Status failed;
    if (!e.chunked()) {
      StatusOr<std::string> p = ReadRecordPayload(*shard, id, e.main);
      if (p.ok()) {
        if (e.body_offset > p->size()) {
          return CorruptionError("message " + id.ToString() + ": body offset past the record");
        }
        return sink(std::string_view(*p).substr(e.body_offset));
      }
      failed = p.status();
    } else {
      size_t i = 0;
      for (; i < e.chunks.size(); ++i) {
        StatusOr<std::string> p = ReadRecordPayload(*shard, id, e.chunks[i]);
        if (!p.ok()) {
          failed = p.status();
          break;
        }
        SPOOL_RETURN_IF_ERROR(sink(*p));
      }
      if (failed.ok()) return Status::Ok();
      if (i > 0) {
        return failed.WithContext("message " + id.ToString() + " (after part of the body)");
      }
    }
    StatusOr<IndexEntry> again = Lookup(*shard, id);
    if (attempt < 3 && again.ok() && again->main != e.main) continue;
    if (failed.code() == Code::kNotFound || failed.code() == Code::kCorruption) {
      Log(LogLevel::kError, "message " + id.ToString() + ": " + failed.ToString());
      // Reported, not quarantined: a read path that flips bits (memory, cable, driver)
      // would quarantine intact mail. The scrubber reads twice before it quarantines.
      corrupt_found_.fetch_add(1);
      return CorruptionError("message " + id.ToString() + ": stored bytes are damaged (" +
                             std::string(failed.message()) + ")");
    }
    return failed.WithContext("message " + id.ToString());
  }
}

StatusOr<std::string> SpoolImpl::ReadBody(const MessageId& id) {
  std::string body;
  SPOOL_RETURN_IF_ERROR(ReadBodyStream(id, [&](std::string_view piece) {
    body.append(piece);
    return Status::Ok();
  }));
  return body;
}

StatusOr<std::vector<MessageId>> SpoolImpl::ScanDue(std::string_view queue, int64_t now_ms,
                                                    size_t limit) {
  std::vector<std::pair<int64_t, MessageId>> all;
  for (auto& shard : shards_) {
    SPOOL_ASSIGN_OR_RETURN(auto due, shard->index->ScanDue(queue, now_ms, limit));
    all.insert(all.end(), due.begin(), due.end());
  }
  std::sort(all.begin(), all.end());
  std::vector<MessageId> out;
  for (size_t i = 0; i < all.size() && i < limit; ++i) out.push_back(all[i].second);
  return out;
}

Status SpoolImpl::ForEach(const std::function<bool(const MessageInfo&)>& visit) {
  bool stop = false;
  for (auto& shard : shards_) {
    SPOOL_RETURN_IF_ERROR(shard->index->ForEach([&](const MessageId&, const IndexEntry& e) {
      stop = !visit(e.info);
      return !stop;
    }));
    if (stop) break;
  }
  return Status::Ok();
}

// ---- Health and statistics ---------------------------------------------------------------

Status SpoolImpl::Admission(uint64_t expected_size) {
  if (options_.read_only) return UnavailableError("the spool is open read-only");
  if (expected_size > options_.max_message_size) {
    return TooBigError("message of " + std::to_string(expected_size) + " bytes over the limit of " +
                       std::to_string(options_.max_message_size));
  }
  return PickShard(expected_size).status();
}

Health SpoolImpl::GetHealth() {
  Health h;
  size_t bad = 0;
  Status first;
  for (auto& shard : shards_) {
    Status s = options_.read_only ? Status::Ok() : ShardAdmission(*shard, 0);
    if (!s.ok()) {
      ++bad;
      if (first.ok()) first = s;
    }
    h.shards.push_back({shard->dir, s});
  }
  bool closing;
  {
    MutexLock l(&mu_);
    closing = closing_;
  }
  if (closing) {
    h.state = HealthState::kRefusing;
    h.status = UnavailableError("the spool is closing");
  } else if (bad == 0) {
    h.state = HealthState::kHealthy;
  } else if (bad < shards_.size()) {
    h.state = HealthState::kDegraded;  // some shards refuse; the others accept
  } else {
    h.state = HealthState::kRefusing;
    h.status = first;
  }
  return h;
}

Stats SpoolImpl::GetStats() {
  Stats st;
  Histogram sync;
  uint64_t batch_records = 0;
  for (auto& shard : shards_) {
    CountEntries(*shard);
    st.messages += static_cast<uint64_t>(std::max<int64_t>(0, shard->messages.load()));
    st.body_bytes += static_cast<uint64_t>(std::max<int64_t>(0, shard->body_bytes.load()));
    st.live_bytes += static_cast<uint64_t>(std::max<int64_t>(0, shard->live_bytes.load()));
    log::LogStats ls = shard->log->Stats();
    st.segments_live += ls.segments_live;
    st.segments_free += ls.segments_free;
    st.segment_bytes += (ls.segments_live + ls.segments_free) * ls.segment_size;
    st.batches += ls.batches;
    st.log_bytes_written += ls.bytes;
    batch_records += ls.records;
    sync.Merge(ls.sync_us);
    StatusOr<io::SpaceInfo> space = fs_->GetSpace(shard->dir);
    if (space.ok()) st.disk_free_bytes += space->bytes_free;
    // Ids are time-ordered: the first entry of each shard is its oldest message.
    shard->index
        ->ForEach([&](const MessageId&, const IndexEntry& e) {
          if (st.oldest_arrival_ms == 0 || e.info.arrival_ms < st.oldest_arrival_ms) {
            st.oldest_arrival_ms = e.info.arrival_ms;
          }
          return false;
        })
        .IgnoreError();  // statistics are best effort
  }
  st.enqueued = enqueued_.load();
  st.removed = removed_.load();
  st.reclaimed_segments = reclaimed_.load();
  st.relocated_bytes = relocated_bytes_.load();
  st.faults = faults_.load();
  st.recoveries = recoveries_.load();
  st.scrubbed_bytes = scrubbed_bytes_.load();
  st.corrupt_found = corrupt_found_.load();
  st.quarantined = quarantined_.load();
  st.sync_p50_us = sync.Percentile(0.5);
  st.sync_p99_us = sync.Percentile(0.99);
  st.sync_p999_us = sync.Percentile(0.999);
  if (st.batches > 0) {
    st.mean_batch_records = static_cast<double>(batch_records) / st.batches;
    st.mean_batch_bytes = static_cast<double>(st.log_bytes_written) / st.batches;
  }
  return st;
}

// Counts entries and live bytes once after open; the durable hook keeps them current from
// then on (see Shard::Counted).
void SpoolImpl::CountEntries(Shard& shard) {
  std::call_once(shard.counted, [&] { CountEntriesOnce(shard); });
}

void SpoolImpl::CountEntriesOnce(Shard& shard) {
  // Chunks, so that commits wait for the hook only briefly.
  constexpr int kChunk = 10000;
  std::optional<MessageId> from;
  for (bool more = true; more;) {
    MutexLock hook(&shard.hook_mu);
    int64_t n = 0, body = 0, live = 0;
    more = false;
    Status s = shard.index->ForEach(
        [&](const MessageId& id, const IndexEntry& e) {
          if (from && id == *from) return true;  // counted in the previous chunk
          if (n == kChunk) {
            more = true;
            return false;
          }
          ++n;
          body += static_cast<int64_t>(e.info.size);
          live += static_cast<int64_t>(e.footprint());
          shard.counted_through = id;
          return true;
        },
        from ? &*from : nullptr);
    if (!s.ok()) {
      Log(LogLevel::kWarning, shard.dir + ": counting the messages: " + s.ToString() +
                                  " (statistics are estimates until the next open)");
      more = false;
    }
    shard.messages.fetch_add(n);
    shard.body_bytes.fetch_add(body);
    shard.live_bytes.fetch_add(live);
    from = shard.counted_through;
    if (!more) shard.counting = false;
  }
}

// ---- Maintenance: checkpoints and reclamation ----------------------------------------------

void SpoolImpl::MaintenanceLoop(Shard* shard) {
  CountEntries(*shard);
  auto last_flush = std::chrono::steady_clock::now();
  for (;;) {
    {
      MutexLock l(&mu_);
      auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return closing_; };
      mu_.AwaitWithTimeout(absl::Condition(&stop), absl::Milliseconds(100));
      if (closing_) return;
    }
    Reprobe(*shard);
    if (!LatchedFault(*shard).ok()) continue;  // no flushes or relocation until it recovers
    Scrub(*shard);
    const auto now = std::chrono::steady_clock::now();
    if (now - last_flush >= std::chrono::milliseconds(options_.checkpoint_interval_ms) ||
        shard->unflushed_records.load() >= kFlushRecords) {
      shard->unflushed_records.store(0);
      if (shard->dirty.exchange(false)) {
        Status s = shard->index->Flush();
        if (!s.ok()) Log(LogLevel::kWarning, shard->dir + ": index checkpoint: " + s.ToString());
      }
      last_flush = now;
    }
    // A few segments per round, so that reclamation keeps up with a busy writer.
    for (int i = 0; options_.reclaim && i < 8; ++i) {
      StatusOr<bool> reclaimed = ReclaimOldest(*shard);
      if (!reclaimed.ok()) {
        Log(LogLevel::kWarning, shard->dir + ": reclamation: " + reclaimed.status().ToString());
      }
      if (!reclaimed.ok() || !*reclaimed) break;
    }
  }
}

// ---- Failure handling: re-probe and scrubbing ----------------------------------------------

void SpoolImpl::Reprobe(Shard& shard) {
  const Status fault = LatchedFault(shard);
  const auto now = std::chrono::steady_clock::now();
  if (fault.ok()) {
    shard.seen_fault = Status::Ok();
    return;
  }
  if (shard.seen_fault.ok()) {
    faults_.fetch_add(1);
    shard.seen_fault = fault;
    shard.fault_since = now;
    shard.next_probe = now + std::chrono::milliseconds(options_.reprobe_interval_ms);
    shard.last_probe = Status::Ok();
    Log(LogLevel::kError, shard.dir + ": shard refuses new mail (" +
                              SmtpReplyFor(ShardFault(shard)).ToString() +
                              "): " + fault.ToString() + "; re-probing the disk every " +
                              std::to_string(options_.reprobe_interval_ms) + " ms");
    return;
  }
  if (now < shard.next_probe) return;
  shard.next_probe = now + std::chrono::milliseconds(options_.reprobe_interval_ms);
  Status probe = ProbeDisk(shard);
  // Cause gone: resume RocksDB, catch the index up with the log, clear the log's latch.
  if (probe.ok() && !shard.index->BackgroundError().ok()) {
    Status resumed = shard.index->Resume();
    if (!resumed.ok()) {
      // An error RocksDB will not resume from: open the index again. What it had not
      // flushed is gone, so the catch-up replays the log from its durable checkpoint.
      // The index fault is set under the hook mutex, so that from the next commit group on
      // the hook leaves the index alone; the reopen itself runs without it, so that
      // commits are not held up while it waits for scans of the old database to end.
      {
        MutexLock hook(&shard.hook_mu);
        MutexLock l(&shard.mu);
        if (shard.index_fault.ok()) shard.index_fault = resumed;
        shard.index_faulted.store(true);
      }
      probe = shard.index->Reopen();
      Log(LogLevel::kWarning, shard.dir + ": " + resumed.ToString() + "; reopened the index: " +
                                  (probe.ok() ? std::string("OK") : probe.ToString()));
    }
  }
  if (probe.ok()) probe = CatchUpIndex(shard);
  if (!probe.ok()) {
    if (probe.ToString() != shard.last_probe.ToString()) {
      Log(LogLevel::kWarning, shard.dir + ": re-probe: " + probe.ToString());
    }
    shard.last_probe = probe;
    return;
  }
  shard.log->ClearFault();
  recoveries_.fetch_add(1);
  const auto secs = std::chrono::duration_cast<std::chrono::seconds>(now - shard.fault_since);
  Log(LogLevel::kInfo, shard.dir + ": re-probe passed after " + std::to_string(secs.count()) +
                           " s: the shard accepts mail again (the fault was: " + fault.ToString() +
                           ")");
  shard.seen_fault = Status::Ok();
}

Status SpoolImpl::ProbeDisk(Shard& shard) {
  // Both directories the shard writes: the log's and the index's (they may fail apart,
  // e.g. a quota or a bad sector under one of them).
  for (const char* sub : {kLogDir, kIndexDir}) {
    const std::string path = shard.dir + "/" + sub + "/" + kProbeFile;
    {
      SPOOL_ASSIGN_OR_RETURN(std::unique_ptr<io::File> f,
                             fs_->Open(path, io::OpenOptions{.create = true}));
      const std::string block(log::kBlockSize, 'p');
      io::WriteOp op{0, block.data(), block.size()};
      SPOOL_RETURN_IF_ERROR(fs_->WriteBatch(*f, {&op, 1}, io::Sync::kData));
    }
    SPOOL_RETURN_IF_ERROR(fs_->Unlink(path));
  }
  SPOOL_ASSIGN_OR_RETURN(io::SpaceInfo space, fs_->GetSpace(shard.dir));
  if (space.bytes_free < options_.min_free_bytes) {
    return StorageFullError(shard.dir + ": " + std::to_string(space.bytes_free >> 20) +
                            " MiB free, under the minimum of " +
                            std::to_string(options_.min_free_bytes >> 20) + " MiB");
  }
  return Status::Ok();
}

Status SpoolImpl::CatchUpIndex(Shard& shard) {
  if (IndexHealth(shard).ok()) return Status::Ok();
  // The durable hook waits meanwhile: the log's records reach the index in order.
  MutexLock hook(&shard.hook_mu);
  SPOOL_ASSIGN_OR_RETURN(log::Location from, shard.index->Checkpoint());
  const log::Location to = shard.hooked_end;
  auto batch = std::make_unique<index::Index::Batch>(*shard.index);
  std::map<std::string, std::optional<IndexEntry>> pending;
  uint64_t records = 0;
  std::vector<log::Damage> damage;
  SPOOL_RETURN_IF_ERROR(shard.log->ScanRange(
      from, to,
      [&](const log::Record& r) -> Status {
        SPOOL_RETURN_IF_ERROR(Replay(shard, r, batch.get(), &pending));
        ++records;
        if (pending.size() < kReplayBatchOps) return Status::Ok();
        batch->SetCheckpoint({r.location.segment, r.location.offset + r.location.size, 0});
        SPOOL_RETURN_IF_ERROR(shard.index->Write(*batch));
        batch = std::make_unique<index::Index::Batch>(*shard.index);
        pending.clear();
        return Status::Ok();
      },
      &damage));
  if (to.segment != 0) batch->SetCheckpoint(to);
  SPOOL_RETURN_IF_ERROR(shard.index->Write(*batch));
  shard.dirty.store(true);
  for (const log::Damage& d : damage) {
    corrupt_found_.fetch_add(1);
    Log(LogLevel::kError, shard.dir + ": " + d.kind + " in segment " + std::to_string(d.segment) +
                              " at offset " + std::to_string(d.offset) + ": " + d.detail +
                              " (run spool-fsck)");
  }
  MutexLock l(&shard.mu);
  Log(LogLevel::kInfo, shard.dir + ": the index caught up with " + std::to_string(records) +
                           " log records written while it was failing (" +
                           shard.index_fault.ToString() + ")");
  shard.index_fault = Status::Ok();
  shard.index_faulted.store(false);
  return Status::Ok();
}

void SpoolImpl::Scrub(Shard& shard) {
  if (options_.scrub_bytes_per_sec == 0) return;
  const auto now = std::chrono::steady_clock::now();
  if (now < shard.scrub_at) return;
  const std::vector<uint64_t> live = shard.log->LiveSegments();
  const uint64_t active = shard.log->ActiveSegment();
  uint64_t seq = 0;
  for (int pass = 0; pass < 2 && seq == 0; ++pass) {
    for (uint64_t s : live) {
      if (s != active && s >= shard.scrub_next) {
        seq = s;
        break;
      }
    }
    if (seq == 0) shard.scrub_next = 0;  // a full pass done: start over
  }
  if (seq == 0) return;
  std::vector<log::Damage> damage;
  Status s = shard.log->ScanSealed(seq, {}, &damage);
  shard.scrub_next = seq + 1;
  const uint64_t bytes = shard.segment_size;
  shard.scrub_at = now + std::chrono::microseconds(bytes * 1000000 / options_.scrub_bytes_per_sec);
  if (!s.ok()) {
    // Reclaimed meanwhile, or unreadable: a read error is a disk fault the writes will
    // meet too; log it and go on.
    if (s.code() != Code::kInvalidArgument) {
      Log(LogLevel::kWarning,
          shard.dir + ": scrubbing segment " + std::to_string(seq) + ": " + s.ToString());
    }
    return;
  }
  scrubbed_bytes_.fetch_add(bytes);
  for (const log::Damage& d : damage) {
    corrupt_found_.fetch_add(1);
    Log(LogLevel::kError, shard.dir + ": scrubber: " + d.kind + " in segment " +
                              std::to_string(d.segment) + " at offset " + std::to_string(d.offset) +
                              ": " + d.detail);
    QuarantineDamage(shard, d);
  }
}

void SpoolImpl::QuarantineDamage(Shard& shard, const log::Damage& d) {
  // The records of `e` that the damage falls in.
  auto hit = [&](const IndexEntry& e) {
    std::vector<log::Location> out;
    auto take = [&](const log::Location& loc) {
      if (loc.segment == d.segment && loc.offset <= d.offset && d.offset < loc.offset + loc.size) {
        out.push_back(loc);
      }
    };
    take(e.main);
    if (e.state.segment != 0) take(e.state);
    for (const log::Location& c : e.chunks) take(c);
    return out;
  };
  std::vector<std::pair<MessageId, std::vector<log::Location>>> victims;
  if (d.id.hi != 0 || d.id.lo != 0) {
    const MessageId id(d.id.hi, d.id.lo);
    StatusOr<std::optional<IndexEntry>> e = shard.index->Get(id);
    if (e.ok() && e->has_value()) victims.emplace_back(id, hit(**e));
  } else {
    // The header is damaged too, so the id is unknown: find who points there.
    shard.index
        ->ForEach([&](const MessageId& id, const IndexEntry& e) {
          victims.emplace_back(id, hit(e));
          if (victims.back().second.empty()) victims.pop_back();
          return true;
        })
        .IgnoreError();  // best effort; spool-fsck finds the rest
  }
  for (const auto& [id, locations] : victims) {
    // Read the damaged records once more, the way a delivery would: damage that does not
    // repeat was on the read path, not on the disk.
    const bool confirmed = std::any_of(locations.begin(), locations.end(), [&](const auto& loc) {
      return ReadRecordPayload(shard, id, loc).status().code() == Code::kCorruption;
    });
    if (confirmed) {
      Quarantine(id, d.kind + ": " + d.detail);
    } else if (!locations.empty()) {
      Log(LogLevel::kWarning, "message " + id.ToString() + ": damage seen by the scrubber did " +
                                  "not repeat on a second read (" + d.detail + ")");
    }
  }
}

void SpoolImpl::Quarantine(const MessageId& id, const std::string& why) {
  bool changed = false;
  Status s = ChangeState(id, [&](MessageInfo* info) {
    changed = info->state != MessageState::kCorrupt;
    info->state = MessageState::kCorrupt;
    return Status::Ok();
  });
  if (s.ok() && changed) {
    quarantined_.fetch_add(1);
    Log(LogLevel::kError, "message " + id.ToString() + " quarantined as corrupt (" + why +
                              "); spool-ctl show/delete it, spool-fsck reports it");
  } else if (!s.ok()) {
    Log(LogLevel::kWarning,
        "message " + id.ToString() + ": could not quarantine it: " + s.ToString());
  }
}

StatusOr<bool> SpoolImpl::ReclaimOldest(Shard& shard) {
  const std::vector<uint64_t> live = shard.log->LiveSegments();
  const uint64_t active = shard.log->ActiveSegment();
  std::vector<uint64_t> sealed;
  for (uint64_t seq : live) {
    if (seq != active) sealed.push_back(seq);
  }
  // Keep a couple of sealed segments: recently written mail is usually removed soon.
  if (sealed.size() < 3) return false;
  const uint64_t oldest = sealed.front();
  {
    MutexLock l(&shard.mu);
    if (shard.pinned.count(oldest) != 0) return false;  // a streamed message is being written
  }
  // Every record of the segment must have reached the index (the durable hook runs after
  // the log, in order), or the scan below could miss a message about to be indexed.
  SPOOL_ASSIGN_OR_RETURN(log::Location applied, shard.index->Checkpoint());
  if (applied.segment <= oldest) return false;
  const uint64_t segment = shard.segment_size;
  const uint64_t used = live.size() * segment;
  const uint64_t live_bytes = static_cast<uint64_t>(std::max<int64_t>(0, shard.live_bytes.load()));

  if (oldest == shard.kept_segment &&
      std::chrono::steady_clock::now() - shard.kept_at < kRescanInterval) {
    return false;
  }
  // Measure what in the oldest segment is still referenced by the index, keeping the
  // payloads of whole (not chunked) messages for the copy, up to kScanKeepBytes.
  uint64_t referenced = 0, kept = 0;
  std::vector<MessageId> movers, streamed;  // whole messages; streamed ones (chunks)
  std::map<MessageId, ScannedRecord> scanned;
  std::vector<log::Damage> scan_damage;
  SPOOL_RETURN_IF_ERROR(shard.log->ScanSealed(
      oldest,
      [&](const log::Record& r) -> Status {
        // The index never points at a removal (about half the records of a busy spool):
        // no lookup needed.
        if (r.type == log::RecordType::kRemove) return Status::Ok();
        const MessageId id(r.id.hi, r.id.lo);
        SPOOL_ASSIGN_OR_RETURN(std::optional<IndexEntry> e, shard.index->Get(id));
        if (!e || !References(*e, r.location)) return Status::Ok();
        referenced += r.location.size;
        std::vector<MessageId>& list = e->chunked() ? streamed : movers;
        if (list.empty() || list.back() != id) list.push_back(id);
        if (!e->chunked() && e->main == r.location && kept + r.payload.size() <= kScanKeepBytes) {
          kept += r.payload.size();
          scanned[id] = {r.location, r.payload};
        }
        return Status::Ok();
      },
      &scan_damage));
  for (const log::Damage& d : scan_damage) {
    Log(LogLevel::kError,
        shard.dir + ": reclamation scan of segment " + std::to_string(oldest) + ": " + d.detail);
  }
  // Reclaim when most of the segment is garbage, or when the spool uses more than twice
  // the space its live data needs.
  const bool mostly_garbage = referenced * 2 <= segment;
  const bool too_big = used > 2 * live_bytes + 3 * segment;
  if (!mostly_garbage && !too_big) {
    shard.kept_segment = oldest;
    shard.kept_at = std::chrono::steady_clock::now();
    return false;
  }

  for (std::vector<MessageId>* list : {&movers, &streamed}) {
    std::sort(list->begin(), list->end());
    list->erase(std::unique(list->begin(), list->end()), list->end());
  }
  for (size_t i = 0; i < movers.size(); i += kRelocateGroup) {
    const std::span<const MessageId> group(movers.data() + i,
                                           std::min(kRelocateGroup, movers.size() - i));
    SPOOL_ASSIGN_OR_RETURN(bool moved, RelocateGroup(shard, oldest, group, scanned));
    if (!moved) return false;
  }
  // Streamed messages are large and few: one at a time, chunk by chunk, each under its
  // own stripe lock only.
  for (const MessageId& id : streamed) {
    MutexLock stripe(&StripeOf(shard, id));
    IndexEntry entry;
    SPOOL_ASSIGN_OR_RETURN(CopyVerdict verdict, JudgeCopy(shard, id, oldest, &entry));
    if (verdict == CopyVerdict::kWait) return false;
    SPOOL_RETURN_IF_ERROR(IndexHealth(shard));
    if (verdict == CopyVerdict::kCopy && entry.chunked()) {
      SPOOL_RETURN_IF_ERROR(RelocateChunked(shard, entry));
    }
  }
  // A copy made while the index was failing is not in it: the segment must stay.
  SPOOL_RETURN_IF_ERROR(IndexHealth(shard));
  // The index must durably point at the new copies before the old ones can go: flush,
  // and check that the checkpoint has passed the segment.
  SPOOL_RETURN_IF_ERROR(shard.index->Flush());
  SPOOL_ASSIGN_OR_RETURN(log::Location checkpoint, shard.index->Checkpoint());
  if (checkpoint.segment <= oldest) return false;
  SPOOL_RETURN_IF_ERROR(shard.log->Recycle(oldest));
  Log(LogLevel::kDebug, shard.dir + ": recycled segment " + std::to_string(oldest) + " (" +
                            std::to_string(movers.size()) + " messages moved; checkpoint " +
                            std::to_string(checkpoint.segment) + ":" +
                            std::to_string(checkpoint.offset) + ")");
  reclaimed_.fetch_add(1);
  return true;
}

StatusOr<SpoolImpl::CopyVerdict> SpoolImpl::JudgeCopy(Shard& shard, const MessageId& id,
                                                      uint64_t oldest, IndexEntry* entry) {
  SPOOL_ASSIGN_OR_RETURN(std::optional<IndexEntry> e, shard.index->Get(id));
  if (!e) return CopyVerdict::kSkip;  // removed meanwhile
  // A removal in flight: its outcome decides whether the records are still needed.
  if (shard.Removing(id)) return CopyVerdict::kWait;
  // A quarantined message's records are damaged and never read again: they are not
  // copied (they could not be), and its envelope stays in the index for the operator.
  if (e->info.state == MessageState::kCorrupt) return CopyVerdict::kSkip;
  bool in_oldest = e->main.segment == oldest || e->state.segment == oldest;
  for (const log::Location& c : e->chunks) in_oldest |= c.segment == oldest;
  if (!in_oldest) return CopyVerdict::kSkip;
  *entry = std::move(*e);
  return CopyVerdict::kCopy;
}

StatusOr<bool> SpoolImpl::RelocateGroup(Shard& shard, uint64_t oldest,
                                        std::span<const MessageId> group,
                                        std::map<MessageId, ScannedRecord>& scanned) {
  // The stripe locks of the whole group are held until its copies are durable and
  // indexed, so that no state change or removal of these messages interleaves (the
  // protocol of every change: design.md). Only reclamation holds more than one stripe,
  // and it takes them in address order (they are the shard's own).
  std::vector<Mutex*> locks;
  for (const MessageId& id : group) locks.push_back(&StripeOf(shard, id));
  std::sort(locks.begin(), locks.end());
  locks.erase(std::unique(locks.begin(), locks.end()), locks.end());
  StripeLocks held(locks);

  // One append per message, in flight together (up to kRelocateBytesInFlight); each
  // callback runs after the durable hook has indexed its copy. The callbacks share the
  // group's state (and so keep its mutex alive until the last of them has let go of it).
  struct Copy {
    IndexOp op;
    std::string main_payload, state_payload;
    log::AppendRecord recs[2];
  };
  struct Group {
    std::vector<std::unique_ptr<Copy>> copies;
    Mutex mu;
    size_t pending ABSL_GUARDED_BY(mu) = 0;
    Status first_error ABSL_GUARDED_BY(mu);
    uint64_t moved ABSL_GUARDED_BY(mu) = 0;
  };
  auto g = std::make_shared<Group>();
  // Waits for every append issued so far; returns the first failure, if any.
  auto drain = [&]() -> Status {
    MutexLock l(&g->mu);
    auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(g->mu) { return g->pending == 0; };
    g->mu.Await(absl::Condition(&done));
    relocated_bytes_.fetch_add(std::exchange(g->moved, 0));
    return g->first_error;
  };
  // Ends the group: waits for what is in flight, then answers `result`, else the first
  // failed append, else whether the index took every copy.
  auto finish = [&](Status result) -> Status {
    Status appended = drain();
    if (!result.ok()) return result;
    if (!appended.ok()) return appended;
    return IndexHealth(shard);  // a copy made while the index fails is not in it
  };
  SPOOL_RETURN_IF_ERROR(IndexHealth(shard));
  uint64_t in_flight = 0;
  for (const MessageId& id : group) {
    IndexEntry entry;
    StatusOr<CopyVerdict> verdict = JudgeCopy(shard, id, oldest, &entry);
    if (!verdict.ok()) return finish(verdict.status());
    if (*verdict == CopyVerdict::kWait) {
      SPOOL_RETURN_IF_ERROR(finish(Status::Ok()));
      return false;
    }
    // Streamed messages are copied apart (ReclaimOldest).
    if (*verdict == CopyVerdict::kSkip || entry.chunked()) continue;
    auto copy = std::make_unique<Copy>();
    if (auto it = scanned.find(id); it != scanned.end() && it->second.location == entry.main) {
      copy->main_payload = std::move(it->second.payload);
    } else {
      StatusOr<std::string> payload = ReadRecordPayload(shard, id, entry.main);
      if (!payload.ok()) return finish(payload.status());
      copy->main_payload = std::move(payload).value();
    }
    copy->op.entry = entry;
    copy->op.old = entry;
    const size_t count = PrepareCopy(entry, log::RecordType::kMessage, copy->main_payload,
                                     &copy->state_payload, &copy->op, copy->recs);
    {
      MutexLock l(&g->mu);
      if (!g->first_error.ok()) break;  // no more copies after a failed one
      ++g->pending;
    }
    in_flight += copy->main_payload.size();
    const std::span<const log::AppendRecord> recs(copy->recs, count);
    g->copies.push_back(std::move(copy));
    shard.log->AppendAsync(recs, [g](const Status& s, std::span<const log::Location> locs) {
      MutexLock l(&g->mu);
      if (s.ok()) {
        for (const log::Location& loc : locs) g->moved += loc.size;
      } else if (g->first_error.ok()) {
        g->first_error = s;
      }
      --g->pending;
    });
    if (in_flight >= kRelocateBytesInFlight) {
      if (Status s = drain(); !s.ok()) return finish(s);
      in_flight = 0;
    }
  }
  SPOOL_RETURN_IF_ERROR(finish(Status::Ok()));
  return true;
}

// Copies a streamed message's chunks to the head of the log one by one, then its commit
// (and state) record. REQUIRES: the id's stripe lock is held, so that no update or
// removal of it interleaves.
Status SpoolImpl::RelocateChunked(Shard& shard, const IndexEntry& entry) {
  const MessageId id = entry.info.id;
  uint64_t moved = 0;
  std::vector<log::Location> chunks;
  for (const log::Location& c : entry.chunks) {
    SPOOL_ASSIGN_OR_RETURN(std::string piece, ReadRecordPayload(shard, id, c));
    log::AppendRecord rec;
    rec.type = log::RecordType::kBodyChunk;
    rec.flags = log::kFlagRelocated;
    rec.id = ToRecordId(id);
    rec.parts[0] = AsBytes(piece);
    rec.part_count = 1;
    std::vector<log::Location> loc;
    SPOOL_RETURN_IF_ERROR(shard.log->Append({&rec, 1}, &loc));
    chunks.push_back(loc[0]);
    moved += loc[0].size;
  }
  IndexOp op;
  op.entry = entry;
  op.old = entry;
  op.entry.chunks = chunks;
  const std::string commit = internal::EncodeCommit(entry.info, chunks);
  std::string state_payload;
  log::AppendRecord recs[2];
  const size_t n = PrepareCopy(entry, log::RecordType::kCommit, commit, &state_payload, &op, recs);
  std::vector<log::Location> locs;
  SPOOL_RETURN_IF_ERROR(shard.log->Append({recs, n}, &locs));
  for (const log::Location& l : locs) moved += l.size;
  relocated_bytes_.fetch_add(moved);
  return Status::Ok();
}

}  // namespace

StatusOr<std::unique_ptr<Spool>> Spool::Open(const Options& options) {
  return internal::OpenWithFileSystem(options, nullptr);
}

namespace internal {

StatusOr<std::unique_ptr<Spool>> OpenWithFileSystem(const Options& options, io::FileSystem* fs) {
  auto spool = std::make_unique<SpoolImpl>(options, fs);
  SPOOL_RETURN_IF_ERROR(spool->Init());
  return std::unique_ptr<Spool>(std::move(spool));
}

void CloseAsIfCrashed(std::unique_ptr<Spool> spool) {
  static_cast<SpoolImpl*>(spool.get())->SetCrashOnClose();
  spool.reset();
}

void FailIndexWritesForTest(Spool* spool, size_t shard, Status status) {
  static_cast<SpoolImpl*>(spool)->FailIndexWritesForTest(shard, std::move(status));
}

}  // namespace internal

Status RebuildIndex(const Options& options) {
  if (options.read_only) return InvalidArgumentError("rebuilding the index needs write access");
  auto fs = io::NewFileSystem(io::Backend::kAuto);
  SPOOL_RETURN_IF_ERROR(fs.status());
  // Take the locks first: nobody may be writing while the index is replaced.
  std::vector<std::unique_ptr<io::FileLock>> locks;
  for (const std::string& dir : options.dirs) {
    SPOOL_ASSIGN_OR_RETURN(bool is_spool, (*fs)->Exists(dir + "/" + kMarkerFile));
    if (!is_spool) return FailedPreconditionError(dir + " is not a spool");
    SPOOL_ASSIGN_OR_RETURN(
        auto lock, (*fs)->LockFile(dir + "/" + kLockFile,
                                   "pid " + std::to_string(getpid()) + " (rebuilding the index)"));
    locks.push_back(std::move(lock));
  }
  // Move each index aside (kept for the operator), then open: with no checkpoint the
  // whole log is replayed into a fresh index.
  const std::string suffix = ".old-" + std::to_string(NowMs());
  for (const std::string& dir : options.dirs) {
    const std::string index_dir = dir + "/" + kIndexDir;
    SPOOL_ASSIGN_OR_RETURN(bool exists, (*fs)->Exists(index_dir));
    if (exists) SPOOL_RETURN_IF_ERROR((*fs)->Rename(index_dir, index_dir + suffix));
    SPOOL_RETURN_IF_ERROR((*fs)->SyncDir(dir));
  }
  locks.clear();
  Options o = options;
  o.create_if_missing = false;
  SPOOL_ASSIGN_OR_RETURN(std::unique_ptr<Spool> spool, Spool::Open(o));
  spool.reset();
  Log(LogLevel::kInfo, "index rebuilt from the log; the previous index was kept as index" + suffix);
  return Status::Ok();
}

}  // namespace spool
