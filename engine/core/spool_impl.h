// The implementation of Spool (spool/spool.h): shards of (segment log, RocksDB index),
// ids, state changes, reads, replay at open and reclamation. Private to engine/core/;
// the design is in docs/design.md.
//
// One class over several files, each named for the path it serves:
//   spool_open.cc        open and recovery: the marker, a shard's open, replay, close
//   spool_write.cc       the write path: enqueue, streamed bodies, the durable hook
//   spool_read.cc        lookups, bodies, the due scan
//   spool_state.cc       state changes and removals
//   spool_health.cc      admission, health, statistics, fault recovery, the scrubber and
//                        the maintenance loop
//   spool_reclaim.cc     reclamation of old segments
//   spool_test_hooks.cc  core/internal.h's hooks for tests
//
// Thread-safety: SpoolImpl is thread-safe, as Spool promises. A Shard is shared by the
// spool's threads: each field says what guards it, or which thread alone uses it.
// BodyWriterImpl is thread-compatible, as BodyWriter promises.

#ifndef SPOOL_CORE_SPOOL_IMPL_H_
#define SPOOL_CORE_SPOOL_IMPL_H_

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "index/codec.h"
#include "index/index.h"
#include "io/file_system.h"
#include "log/log.h"
#include "spool/spool.h"
#include "util/mutex.h"

namespace spool::internal {

// Per-message lock stripes of a shard (Shard::stripes).
inline constexpr size_t kLockStripes = 256;
// The index is flushed early when this many records were indexed since the last flush:
// an open after a crash replays at most about this many.
inline constexpr uint64_t kFlushRecords = 20000;
// A segment the reclaimer decided to keep is scanned again after this long at the
// earliest (each scan reads it whole and looks up every record in the index).
inline constexpr std::chrono::seconds kRescanInterval{2};
// How long a statfs of a shard with plenty of room is reused by admission.
inline constexpr int64_t kSpaceCacheUs = 100000;
// Replay (at open, and the index catch-up after an index fault) writes the index in
// batches of this many operations.
inline constexpr int kReplayBatchOps = 1024;

inline int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

inline uint64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

inline log::RecordId ToRecordId(const MessageId& id) { return {id.time(), id.tag()}; }

// The answer for a message whose removal is under way or done.
inline Status RemovedError(const MessageId& id) {
  return NotFoundError("no message " + id.ToString() + " (removed)");
}

inline std::span<const std::byte> AsBytes(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

// OK, or kInvalidArgument for metadata over kMaxMetadataSize (Enqueue, SetMetadata).
Status ValidateMetadata(std::string_view metadata);

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

// One directory of the spool: its log, its index, and the state that the spool's paths
// keep about it.
struct Shard {
  // ---- Identity and files: set by the open, constant after it ------------------------------
  uint32_t number = 0;
  std::string dir;
  uint64_t segment_size = 0;  // the shard's own, from its marker
  std::unique_ptr<io::FileLock> lock;
  std::unique_ptr<log::Log> log;
  std::unique_ptr<index::Index> index;

  // ---- Per-message locks -------------------------------------------------------------------
  // SpoolImpl::StripeOf: a change of a message holds its stripe until the change is
  // durable and indexed.
  std::array<Mutex, kLockStripes> stripes;

  // ---- Write path: the durable hook --------------------------------------------------------
  // Held by the durable hook while it indexes a batch, and by the index catch-up after an
  // index fault, so that the two never interleave.
  Mutex hook_mu;
  // The end of the last record the durable hook has seen.
  log::Location hooked_end ABSL_GUARDED_BY(hook_mu);

  // ---- Index health, and streamed messages in progress -------------------------------------
  Mutex mu;
  // A failed index write: the shard refuses new mail and stops writing the index (so its
  // checkpoint stays before every record it missed) until a re-probe passes and the index
  // has caught up with the log.
  Status index_fault ABSL_GUARDED_BY(mu);
  std::atomic<bool> index_faulted{false};  // index_fault is set (read without mu)
  // Segments holding chunks of streamed messages not yet committed: the index does not
  // know them yet, so reclamation must leave these segments alone.
  std::multiset<uint64_t> pinned ABSL_GUARDED_BY(mu);

  // ---- Index checkpoints -------------------------------------------------------------------
  std::atomic<bool> dirty{false};  // index written since the last flush
  // Records indexed since the last flush: a flush is due early past kFlushRecords, to
  // bound the log that an open after a crash replays.
  std::atomic<uint64_t> unflushed_records{0};

  // ---- Counters (Stats) --------------------------------------------------------------------
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

  // ---- Reclamation state: the shard's maintenance thread only ------------------------------
  // The last segment the reclaimer scanned and left alone, and when: it is not scanned
  // again for kRescanInterval (a scan reads the segment and looks up every record).
  uint64_t kept_segment = 0;
  std::chrono::steady_clock::time_point kept_at;

  // ---- Fault handling and the scrubber: the shard's maintenance thread only ----------------
  // The fault seen in the last round (each fault is logged once), when it began, the next
  // re-probe and its last result.
  Status seen_fault;
  std::chrono::steady_clock::time_point fault_since, next_probe;
  Status last_probe;
  // The scrubber: the next sealed segment to verify and when.
  uint64_t scrub_next = 0;
  std::chrono::steady_clock::time_point scrub_at;

  // ---- Admission: the space cache ----------------------------------------------------------
  // The last statfs of the shard's filesystem and when (SpoolImpl::ShardSpace).
  Mutex space_mu;
  io::SpaceInfo space ABSL_GUARDED_BY(space_mu);
  int64_t space_at_us ABSL_GUARDED_BY(space_mu) = -1;

  // ---- Removals in flight ------------------------------------------------------------------
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
};

class SpoolImpl;

// Something started beside a spool that calls it (the control channel's server): the
// spool owns it and destroys it first when it closes, before anything else of the close.
class Attachment {
 public:
  virtual ~Attachment() = default;
};

// A streamed message (Spool::BeginMessage): its body goes to the log in chunks as it
// arrives, the commit record makes it a message. Defined in spool_write.cc.
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
  // Hands `attachment` to the spool, which destroys it first when it closes. REQUIRES:
  // called once, right after Init, before the spool is shared.
  void Attach(std::unique_ptr<Attachment> attachment) { attachment_ = std::move(attachment); }
  // The directory of the lowest-numbered shard (shard 0 of a whole spool).
  const std::string& FirstShardDir() const { return by_number_.begin()->second->dir; }
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
  Status SetMetadata(const MessageId& id, std::string_view metadata) override;
  void SetMetadataAsync(const MessageId& id, std::string_view metadata,
                        std::function<void(const Status&)> done) override;
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
  // ---- Open and recovery (spool_open.cc) ---------------------------------------------------
  Status OpenShard(const std::string& dir, uint32_t ordinal, uint64_t* spool_id);
  // Reads the shard's SPOOL marker, or writes it for a new shard. *segment_size comes in
  // as the option and goes out as the shard's own.
  Status ReadOrCreateMarker(const std::string& dir, uint32_t ordinal, uint64_t* spool_id,
                            uint32_t* shard_number, uint64_t* segment_size);
  Status Replay(Shard& shard, const log::Record& record, index::Index::Batch* batch,
                std::map<std::string, std::optional<IndexEntry>>* pending);

  // ---- The write path (spool_write.cc) -----------------------------------------------------
  void OnDurable(Shard& shard, std::span<const log::CommittedRecord> records);
  MessageInfo NewMessage(const Envelope& envelope, uint64_t size, uint32_t shard);
  Status WritableCheck() const;
  void BigEnqueueLoop();

  // ---- Lookups (spool_read.cc) -------------------------------------------------------------
  StatusOr<Shard*> ShardOf(const MessageId& id);
  StatusOr<IndexEntry> Lookup(Shard& shard, const MessageId& id);
  StatusOr<std::string> ReadRecordPayload(Shard& shard, const MessageId& id,
                                          const log::Location& loc);

  // ---- State changes and removals (spool_state.cc) -----------------------------------------
  // Appends a state record for `id` after `change` edits the info (under the id's lock).
  Status ChangeState(const MessageId& id, const std::function<Status(MessageInfo* info)>& change);
  // The removing set (Shard::removing): hides a message whose removal is under way.
  // MarkRemoving is false if its removal is under way already.
  bool MarkRemoving(Shard& shard, const MessageId& id);
  void UnmarkRemoving(Shard& shard, const MessageId& id);
  // Appends the removal of `old` (marked removing) and answers `done` once it is durable
  // and indexed, or failed. REQUIRES: the id's stripe lock is held.
  void AppendRemoval(Shard& shard, IndexEntry old, std::function<void(const Status&)> done);
  // The lock that orders the changes of message `id` of `shard`. Each shard has its own
  // stripes, so that a shard stuck on its disk holds up no other shard's changes.
  static Mutex& StripeOf(Shard& shard, const MessageId& id) {
    return shard.stripes[(id.time() ^ (id.tag() * 0x9E3779B97F4A7C15ull)) % kLockStripes];
  }

  // ---- Admission, health, statistics, fault recovery (spool_health.cc) ---------------------
  Status ShardAdmission(Shard& shard, uint64_t expected_size);
  // The shard's free space: statfs at most every kSpaceCacheUs while there is plenty, at
  // every call near the minimum.
  StatusOr<io::SpaceInfo> ShardSpace(Shard& shard, uint64_t expected_size);
  StatusOr<Shard*> PickShard(uint64_t expected_size);
  // A latched fault of the shard (log, index, RocksDB background error), or OK.
  Status LatchedFault(Shard& shard);
  // The same as the status to answer with (an I/O error latched: kUnavailable).
  Status ShardFault(Shard& shard);
  // Refuses changes to a shard whose index missed records: they would be based on stale
  // entries.
  Status IndexHealth(Shard& shard);
  void CountEntries(Shard& shard);
  void CountEntriesOnce(Shard& shard);
  void MaintenanceLoop(Shard* shard);
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

  // ---- Reclamation (spool_reclaim.cc) ------------------------------------------------------
  // Reclaims the oldest sealed segment if the policy says so; true if it did.
  StatusOr<bool> ReclaimOldest(Shard& shard);
  // What reclamation does with message `id` while copying segment `oldest` forward:
  // kCopy (its entry in *entry), kSkip (removed, quarantined, or nothing of it in the
  // segment), kWait (its removal is in flight). REQUIRES: the id's stripe lock is held.
  enum class CopyVerdict { kCopy, kSkip, kWait };
  StatusOr<CopyVerdict> JudgeCopy(Shard& shard, const MessageId& id, uint64_t oldest,
                                  IndexEntry* entry);
  // Copies forward the records in segment `oldest` of the messages in `group`, all at
  // once (one group commit rather than one per message; streamed ones are left to the
  // caller). False if a removal of one of them is in flight (reclamation must wait for
  // its outcome).
  StatusOr<bool> RelocateGroup(Shard& shard, uint64_t oldest, std::span<const MessageId> group,
                               std::map<MessageId, ScannedRecord>& scanned);
  Status RelocateChunked(Shard& shard, const IndexEntry& entry);

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
  // RemoveAsync of a message whose stripe is busy, SetMetadataAsync. One worker thread
  // (BigEnqueueLoop) runs it in order, and drains it at close.
  std::deque<std::function<void()>> big_queue_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_;
  // What Attach gave (the control channel's server): destroyed first by the destructor.
  std::unique_ptr<Attachment> attachment_;
  bool crash_on_close_ = false;
};

}  // namespace spool::internal

#endif  // SPOOL_CORE_SPOOL_IMPL_H_
