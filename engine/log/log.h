// The segment log of one shard: durable group commit of many producers' records into
// pre-formatted segment files, checksum-verified reads, and recovery at open.
//
// Data flow. A producer calls AppendAsync: under the shard mutex it reserves room in the
// open batch buffer, then (outside the lock) encodes its records there, payload hash
// included, in parallel with other producers. The log's I/O workers (max_inflight of
// them, no other thread on the data path) each take the oldest batch as soon as a write
// slot is free (no added delay when idle), place it at the end of the active segment,
// stamp epoch and batch number into the headers, pad it to a block boundary and write it
// (O_DIRECT|O_DSYNC, or one write linked to an fdatasync). While batches are in flight
// the next one fills. The worker whose write completes the oldest batch acknowledges it
// (and any later ones already written), runs the durable hook (the index update) in log
// order, and then, while another worker may already acknowledge the next batches, runs
// the producers' callbacks: no thread hand-off between a write's completion and its
// callbacks, and waking producers is spread over the workers. A synchronous caller on an
// idle log (AppendLeading) does a worker's part itself: no hand-off at all.
//
// Failure rule (docs/durability.md: rule 4 of the contract, and "Failure" in the write
// protocol). A failed write or sync never acknowledges its batch. The segment is sealed
// at its last good end and never written again; the batch is placed in a fresh segment
// and written once more from memory. If that fails too, every waiter gets the error and
// the log latches: later appends fail with it until ClearFault().
//
// Recovery. Open reads every segment header, then scans the segments in order and hands
// every intact record to a visitor. Damage at the end of the newest segment after its
// last complete batch is a torn tail (an unacknowledged write cut short by a crash): the
// log ends there. Damage that a later batch follows is corruption: reported with its
// location, never guessed around. The log then starts a fresh segment whose header
// records where the previous one validly ended, so nothing is ever appended after a tail
// of unknown state.
//
// Thread-safety: thread-safe. AppendAsync, Append, Read and the accessors may be called
// from any thread. Callbacks run on the log's I/O workers, possibly several at once (of
// different batches), each after the durable hook has seen its records; they must not
// block and must not call Append (they may call AppendAsync).

#ifndef SPOOL_LOG_LOG_H_
#define SPOOL_LOG_LOG_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "io/file_system.h"
#include "log/format.h"
#include "log/record.h"
#include "spool/status.h"
#include "util/histogram.h"
#include "util/mutex.h"

namespace spool::log {

// Where a record lives: its segment's sequence number (its epoch), offset and footprint.
struct Location {
  uint64_t segment = 0;
  uint64_t offset = 0;
  uint32_t size = 0;
  friend bool operator==(const Location&, const Location&) = default;
};

struct LogOptions {
  // Every segment file has this size. REQUIRES: a multiple of kBlockSize, >= 2 blocks
  // more than batch_capacity.
  uint64_t segment_size = 64ull << 20;
  // The largest commit group in bytes; also bounds one Append's records.
  size_t batch_capacity = 8u << 20;
  // Batch buffers: one being written, one being completed, one filling, the rest absorb
  // bursts.
  int batch_buffers = 12;
  // Free segments kept zero-filled ahead of need by the background thread.
  int ready_segments = 2;
  // How long a producer waits for room in a batch buffer before failing with kOverload.
  int64_t max_wait_ms = 5000;
  // Batches written concurrently. Each is acknowledged only after it and every batch
  // before it completed, so acknowledged data is always a prefix of the log.
  int max_inflight = 4;
  // O_DIRECT | O_DSYNC segment writes, split into pieces of direct_io_piece bytes that
  // the device serves in parallel; otherwise buffered writes + fdatasync.
  bool direct_io = false;
  size_t direct_io_piece = 512u << 10;
  // Open without writing anything: no appends, no pre-formatting, no tail rewrite.
  bool read_only = false;
  // Recovery hands the visitor only records at or after this position (the index
  // checkpoint); segments wholly before it are not scanned at all.
  Location replay_from;
  // Written into segment headers and checked at open.
  uint64_t spool_id = 0;
  uint32_t shard = 0;
};

// One record to append. The payload is the concatenation of `parts` (up to 4), so that
// envelope and body need not be copied together first.
struct AppendRecord {
  RecordType type = RecordType::kMessage;
  RecordId id;
  std::span<const std::byte> parts[4];
  int part_count = 0;
  // Handed back in CommittedRecord to the durable hook; not interpreted by the log.
  void* context = nullptr;
  // Header flags to set (kFlagRelocated); the log adds kFlagBatchEnd itself.
  uint8_t flags = 0;

  uint64_t payload_size() const;
};

// A record made durable, as the durable hook sees it.
struct CommittedRecord {
  RecordType type;
  RecordId id;
  Location location;
  void* context;  // AppendRecord::context
};

// Called with the status and, on success, the location of each appended record in order.
using AppendCallback = std::function<void(const Status& status, std::span<const Location>)>;

// A record handed out by Read or by recovery.
struct Record {
  RecordType type = RecordType::kMessage;
  RecordId id;
  uint64_t batch_seq = 0;
  uint8_t flags = 0;  // kFlag* of the header
  Location location;
  std::string payload;
};

// Something wrong found by recovery or a scan.
struct Damage {
  std::string kind;      // "checksum", "torn_tail", "segment_header", "truncated", ...
  uint64_t segment = 0;  // seq, 0 if unknown
  std::string path;
  uint64_t offset = 0;
  RecordId id;  // zero if unknown
  std::string detail;
};

// What recovery found.
struct RecoveryReport {
  uint64_t segments = 0;       // segments holding data
  uint64_t free_segments = 0;  // pre-formatted or recycled, unused
  uint64_t records = 0;        // intact records handed to the visitor
  uint64_t bytes = 0;          // bytes scanned
  uint64_t torn_tail_bytes = 0;
  // Intact records found after a torn region at the tail (batches that completed while an
  // earlier one was torn): rewritten into a fresh segment at open, never dropped.
  uint64_t tail_records_rewritten = 0;
  std::vector<Damage> damage;  // corruption: records lost or unreadable
};

// Called for each intact record during recovery, in log order (segment, then offset).
// Returning a non-OK status stops the open with that status.
using RecoveryVisitor = std::function<Status(const Record& record)>;

struct LogStats {
  uint64_t appends = 0;  // AppendAsync calls acknowledged
  uint64_t records = 0;  // records made durable
  uint64_t batches = 0;  // commit groups written (each one write + one sync)
  uint64_t bytes = 0;    // bytes written, padding included
  uint64_t payload_bytes = 0;
  uint64_t failed_batches = 0;
  uint64_t rewritten_batches = 0;  // batches placed again after a failed write or sync
  uint64_t segments_live = 0;
  uint64_t segments_free = 0;
  uint64_t segment_size = 0;
  Histogram sync_us;      // latency of each write + sync
  Histogram batch_bytes;  // size of each commit group
  Histogram batch_records;
};

class Log {
 public:
  // Opens (creating if empty) the log in `dir`, which must exist, and replays it into
  // `visitor` (may be empty). On success *log is ready for appends.
  // REQUIRES: fs outlives the log.
  static StatusOr<std::unique_ptr<Log>> Open(io::FileSystem* fs, const std::string& dir,
                                             const LogOptions& options,
                                             const RecoveryVisitor& visitor,
                                             RecoveryReport* report);

  // Waits for the in-flight batches, then stops the threads. Pending appends that were
  // not yet written fail with kUnavailable.
  ~Log();
  Log(const Log&) = delete;
  Log& operator=(const Log&) = delete;

  // Appends `records` as a unit (same batch, contiguous, same segment) and calls `done`
  // once they are durable or failed. The payload memory may be released when
  // AppendAsync returns. Fails (through `done`, possibly before returning) with
  // kInvalidArgument if the records exceed the batch capacity, kOverload if no room
  // appears within `max_wait_ms` (negative: LogOptions::max_wait_ms; 0: never waits), or
  // the latched status.
  void AppendAsync(std::span<const AppendRecord> records, AppendCallback done,
                   int64_t max_wait_ms = -1);

  // AppendAsync for a caller that is about to wait for `done` anyway (a synchronous
  // enqueue): if the log is idle (no batch in flight or queued), the calling thread writes
  // the batch holding its records itself, runs the durable hook and its own `done`, and
  // returns after that; the callbacks of other records in that batch run on an I/O
  // worker. This saves the two thread hand-offs (wake a worker, wake the caller) of a
  // lone producer. Under load it is AppendAsync.
  // REQUIRES: the caller holds no lock that the durable hook takes.
  void AppendLeading(std::span<const AppendRecord> records, AppendCallback done,
                     int64_t max_wait_ms = -1);

  // The synchronous form. *locations (may be null) receives one entry per record.
  Status Append(std::span<const AppendRecord> records, std::vector<Location>* locations);

  // Reads the record at `location`, verifying header, epoch and payload checksums and,
  // when expected_id is given, the id.
  StatusOr<Record> Read(const Location& location, const RecordId* expected_id = nullptr);

  // Called on an I/O worker with each durable batch, one batch at a time in log order,
  // before the callbacks of that batch's producers. REQUIRES: set before the first append.
  void SetDurableHook(std::function<void(std::span<const CommittedRecord>)> hook);

  // Frees segment `seq` for reuse. REQUIRES: nothing in it is live any more (the caller
  // copied live records forward and made their new locations durable), and it is not the
  // active segment. The header is zeroed and synced before the segment can be reused.
  Status Recycle(uint64_t seq);

  // Reads the records of sealed segment `seq` in order, verifying each, for reclamation
  // and scrubbing. Damage is reported in *damage (may be null) and skipped.
  Status ScanSealed(uint64_t seq, const RecoveryVisitor& visitor, std::vector<Damage>* damage);
  // Reads the records in [from, to) in log order, verifying each: the sealed segments and
  // the active one up to `to`. For catching the index up with the log after an index
  // fault. REQUIRES: `to` is durable (a position the durable hook has passed) and no
  // segment in the range is recycled meanwhile. Damage is reported in *damage and skipped.
  Status ScanRange(const Location& from, const Location& to, const RecoveryVisitor& visitor,
                   std::vector<Damage>* damage);

  // Sequence numbers of the segments that hold data, oldest first, and the active one.
  std::vector<uint64_t> LiveSegments() const;
  uint64_t ActiveSegment() const;

  // OK, or the latched fault.
  Status health() const;
  // Clears a latched fault after the cause is gone (the caller re-probed the disk).
  // Appends go to a fresh segment.
  void ClearFault();

  LogStats Stats() const;
  const std::string& dir() const { return dir_; }
  const LogOptions& options() const { return options_; }

 private:
  // Defined in log/log_impl.h.
  struct Segment;
  struct Batch;
  struct Waiter;
  struct ScanBuffers;

  // ---- Open and recovery (log_recovery.cc) -----------------------------------------------

  Log(io::FileSystem* fs, std::string dir, const LogOptions& options);
  // Reads every segment header and scans the segments in order (from
  // LogOptions::replay_from), handing intact records to `visitor` and the intact records
  // found past a torn tail to *survivors; sets the segments' ends and the next segment and
  // batch numbers.
  Status Recover(const RecoveryVisitor& visitor, RecoveryReport* report,
                 std::vector<Record>* survivors);
  // Scans `seg` up to `limit`, handing its intact records at or after `from` to `visitor`.
  // With `exact`, everything before `limit` is known durable, so any damage is
  // corruption; without it the torn-tail rule applies and the intact records past a tear
  // go to *survivors. Damage goes to report->damage; *end receives where valid data ends,
  // *last_batch the newest batch seen.
  Status ScanSegment(Segment& seg, uint64_t limit, bool exact, const Location& from,
                     const RecoveryVisitor& visitor, RecoveryReport* report, uint64_t* end,
                     uint64_t* last_batch, std::vector<Record>* survivors);
  // Appends `survivors` anew and hands each, at its new location, to `visitor`.
  Status RewriteTail(std::vector<Record>& survivors, const RecoveryVisitor& visitor);

  // ---- Segment files (log_segments.cc) ---------------------------------------------------

  // Creates the zero-filled segment file of `slot` (a temporary file, synced and renamed)
  // and adds it to segments_.
  StatusOr<Segment*> NewSegmentFile(uint32_t slot);
  // Opens seg.direct when LogOptions::direct_io.
  Status OpenDirect(Segment& seg);
  // The preallocator thread: keeps LogOptions::ready_segments free segments ahead of need.
  void PreallocatorLoop();
  // Waits for a free segment and takes it. Fails with the preallocator's error, or when
  // the log is closing.
  StatusOr<Segment*> TakeFreeSegment() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes and syncs `seg`'s header as the next segment (stating the previous one's valid
  // end) and makes it the active one; mu_ is released during the write.
  Status ActivateSegment(Segment* seg) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Makes sure the active segment has `need` bytes of room, sealing it and activating a
  // fresh one if not.
  Status EnsureActiveSegment(uint64_t need) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // ---- Group commit (log_write.cc) -------------------------------------------------------

  // The I/O workers (max_inflight of them) do all the work after a producer's encoding:
  // each places the next batch and writes it, or acknowledges the finished batches at
  // the head of the log and runs their hook and callbacks. No hand-off between threads
  // on the way from a batch's write to its callbacks.
  void IoWorkerLoop();
  void AppendImpl(std::span<const AppendRecord> records, AppendCallback done, int64_t max_wait_ms,
                  bool lead);
  // The oldest batch not yet placed, or null.
  Batch* next_batch() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Takes `b` (the next batch) out of the queue, places it and writes it; mu_ is released
  // during the write.
  void PlaceAndWrite(Batch* b) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Acknowledges the completed batches at the head of inflight_ (rewriting after a failed
  // write) and runs their hook and callbacks, outside mu_. With a leader_batch (a leading
  // appender's), only that waiter's callback runs here and the rest go to handoff_.
  void CompleteInOrder(Batch* leader_batch = nullptr, size_t leader_waiter = 0)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Places `batch` at the end of the active segment (activating one if needed) and
  // stamps its headers. REQUIRES: no batch in flight if the active segment is full.
  Status PlaceBatch(Batch& batch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes a placed batch durably (O_DSYNC pieces, or a write and an fdatasync) and
  // records the latency in its io_us.
  Status WritePlaced(Batch& batch);
  // Appends the batches it answered (rewritten or failed) to *done, in order.
  void RewriteAfterFailure(std::vector<Batch*>* done) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The durable hook of a batch written successfully; the producers' callbacks not yet
  // answered; one producer's callback (marks it answered).
  void RunHook(Batch& batch);
  void RunCallbacks(Batch& batch);
  void Answer(Batch& batch, Waiter& waiter);

  // ---- Reads (log_read.cc) ---------------------------------------------------------------

  // Reads segment bytes, through O_DIRECT (aligned bounce buffer) when the segment is
  // written that way.
  Status ReadSegment(Segment& seg, uint64_t offset, std::span<std::byte> out, size_t* got);

  io::FileSystem* const fs_;
  const std::string dir_;
  const LogOptions options_;

  mutable Mutex mu_;
  std::vector<std::unique_ptr<Segment>> segments_ ABSL_GUARDED_BY(mu_);  // every file, by slot
  std::deque<Segment*> free_ ABSL_GUARDED_BY(mu_);                       // ready for activation
  Segment* active_ ABSL_GUARDED_BY(mu_) = nullptr;                       // appends go here
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t next_batch_seq_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t acked_batch_seq_ ABSL_GUARDED_BY(mu_) = 0;  // newest acknowledged batch
  uint64_t last_seq_ ABSL_GUARDED_BY(mu_) = 0;         // most recent activated seq
  uint64_t last_end_ ABSL_GUARDED_BY(mu_) = 0;         // valid end of last_seq_
  uint32_t next_slot_ ABSL_GUARDED_BY(mu_) = 0;
  Status prealloc_error_ ABSL_GUARDED_BY(mu_);
  int preallocating_ ABSL_GUARDED_BY(mu_) = 0;

  std::vector<std::unique_ptr<Batch>> batches_;       // owned buffers
  std::vector<Batch*> idle_ ABSL_GUARDED_BY(mu_);     // free buffers
  Batch* open_ ABSL_GUARDED_BY(mu_) = nullptr;        // accepting reservations
  std::deque<Batch*> sealed_ ABSL_GUARDED_BY(mu_);    // waiting for the writer, oldest first
  std::deque<Batch*> inflight_ ABSL_GUARDED_BY(mu_);  // placed, being written, in log order
  bool placing_ ABSL_GUARDED_BY(mu_) = false;         // a worker is placing a batch
  bool completing_ ABSL_GUARDED_BY(mu_) = false;      // a worker is acknowledging batches
  bool rewriting_ ABSL_GUARDED_BY(mu_) = false;       // after a failed write: nothing placed
  bool leader_ ABSL_GUARDED_BY(mu_) = false;  // a leading appender will place the next batch
  // Acknowledged batches whose remaining callbacks a worker runs (left by a leader).
  std::deque<Batch*> handoff_ ABSL_GUARDED_BY(mu_);

  Status fault_ ABSL_GUARDED_BY(mu_);  // latched
  // Whether fault_ is set: health() answers without mu_ when it is not (the common case,
  // asked at every admission while producers contend for mu_).
  std::atomic<bool> faulted_{false};
  bool closing_ ABSL_GUARDED_BY(mu_) = false;

  std::function<void(std::span<const CommittedRecord>)> durable_hook_;
  LogStats stats_ ABSL_GUARDED_BY(mu_);

  std::vector<std::thread> io_workers_;
  std::thread preallocator_;
  // The scan window's buffers, reused from segment to segment while Recover runs (memory
  // touched for the first time is slow to read on some virtual machines); freed when it
  // ends. Used by the thread that runs Open only.
  std::unique_ptr<ScanBuffers> recovery_buffers_;
};

// "seg-00000012"
std::string SegmentFileName(uint32_t slot);
// True and the slot if `name` is a segment file name.
bool ParseSegmentFileName(std::string_view name, uint32_t* slot);

}  // namespace spool::log

#endif  // SPOOL_LOG_LOG_H_
