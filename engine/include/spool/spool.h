// spool: a crash-safe message spool for mail transfer agents.
//
// A Spool stores accepted messages durably before the MTA answers 250, and keeps their
// delivery state (per-recipient results, next attempt, attempts, hold) until the MTA
// removes them. See docs/integration.md for a walk-through.
//
// Durability (docs/durability.md, "The contract"): every call that reports success has
// made its change durable: its log record, and every record before it in its shard's
// log, is on stable storage. After a crash, reopening yields every acknowledged message
// byte for byte with its last acknowledged state; a removed message never comes back; a
// message whose enqueue did not succeed is absent or complete, never partial.
//
// Errors are Status values, never exceptions. Each call below lists the codes it returns;
// SmtpReplyFor(status) (spool/smtp_reply.h) is the reply the front-end gives
// (docs/errors.md). The disk's codes are kStorageFull (ENOSPC, EDQUOT, free space or
// inodes under the minimum), kPermission (EACCES, EPERM, EROFS) and kIoError (any other
// errno, a failed sync); a shard latched unhealthy after an I/O error or an index fault
// answers kUnavailable until a re-probe of its disk passes.
//
// Thread-safety: a Spool is thread-safe: any method may be called from any thread,
// concurrently, except the destructor (REQUIRES: no other call running or following).
//
// Callbacks of the asynchronous calls (EnqueueAsync, RemoveAsync) run exactly once, on
// one of these threads:
//   - the caller's own thread, before the call returns, when the call fails early (bad
//     input, no shard admits the message, no room in the commit queue, closing);
//   - one of the log's I/O worker threads of the message's shard, once its record is
//     durable and the index update for it has run, or once its write failed;
//   - the spool's worker thread, for work taken off the caller's thread (a body over the
//     inline limit, stored there in chunks; a removal that waits for its message's lock).
// Several callbacks may run at once, on different threads, even for one shard: whatever
// they touch needs its own synchronization. A callback must be quick, must not call the
// synchronous Spool methods (it may call the asynchronous ones), and must not take a lock
// that the caller holds while it makes the asynchronous call. Every callback of a call
// that returned has run by the time ~Spool returns.

#ifndef SPOOL_SPOOL_H_
#define SPOOL_SPOOL_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "spool/message_id.h"
#include "spool/status.h"

namespace spool {

struct Options {
  // The shards: one directory per disk, in any order (each directory knows its shard).
  // Created (with their parents) if missing when create_if_missing. REQUIRES: at least
  // one (else Open fails with kInvalidArgument).
  std::vector<std::string> dirs;
  bool create_if_missing = true;
  // Open without taking the lock and without writing anything: for inspection beside a
  // running writer, or on a full or read-only disk. The spool is seen as it was at Open.
  // Mutating calls fail with kFailedPrecondition, Admission with kUnavailable; no
  // background thread runs (no reclamation, scrubbing or re-probe).
  bool read_only = false;
  // Messages larger than this fail with kTooBig (SMTP 552). SMTP SIZE advertises it.
  uint64_t max_message_size = 64ull << 20;
  // Segment file size of a new spool (an existing spool keeps the size it was created
  // with, recorded in each shard's SPOOL file). REQUIRES: a multiple of 4096, at least
  // 1 MiB (else Open fails with kInvalidArgument). A record never spans segments: a body
  // over the inline limit is stored as chunks of stream_chunk_size bytes. The inline limit
  // is min(segment size / 8, 4 MiB) less 64 KiB for the envelope, the smallest over this
  // option and every shard (4 MiB - 64 KiB with 64 MiB segments; docs/durability.md,
  // "Write protocol").
  uint64_t segment_size = 64ull << 20;
  // Chunk size of streamed bodies; lowered to the inline limit if larger. REQUIRES: > 0.
  uint64_t stream_chunk_size = 1ull << 20;
  // BodyWriter::Append writes every piece it is given before it returns (as chunks of at
  // most stream_chunk_size bytes), instead of holding the body in memory up to the inline
  // limit and then whole chunks: a writer then holds no body bytes of its own, and a
  // front-end that streams DATA bounds its memory per connection by what it hands over.
  // The pieces' sizes become the chunks' (a streamed body is never stored inline unless
  // it is empty).
  bool stream_write_through = false;
  // "auto" (io_uring if the kernel allows, else posix, with a logged warning),
  // "io_uring" or "posix". Anything else: Open fails with kInvalidArgument.
  std::string io_backend = "auto";
  // O_DIRECT + O_DSYNC segment writes where the filesystem supports them (measured
  // faster on NVMe and virtio disks: docs/benchmarks.md); buffered + fdatasync otherwise
  // (tmpfs refuses O_DIRECT: logged at info level).
  bool direct_io = true;
  // A synchronous call (Enqueue, BodyWriter, state changes, Remove) and RemoveAsync wait
  // at most this long for room in the commit queue before failing with kOverload.
  int64_t max_commit_wait_ms = 5000;
  // The same for EnqueueAsync's caller (negative: max_commit_wait_ms). An event loop sets
  // 0: EnqueueAsync then never blocks, and answers kOverload (451 4.4.5) at once when
  // every commit buffer is taken.
  int64_t async_commit_wait_ms = -1;
  // Admission refuses (kStorageFull, 452) when a shard's filesystem has less free space
  // (plus the expected message size) or inodes than this. The re-probe of a latched shard
  // checks the free space too.
  uint64_t min_free_bytes = 128ull << 20;
  uint64_t min_free_inodes = 1000;
  // How often the index is flushed and its log checkpoint advanced. Shorter means less
  // log to replay at open; each flush is a few small sequential writes.
  int64_t checkpoint_interval_ms = 2000;
  // Background reclamation of segments whose messages are gone (docs/design.md,
  // "Reclamation").
  bool reclaim = true;
  // A shard whose disk failed (a latched log or index fault) is re-probed this often: a
  // write + sync of a probe file in its log and index directories and a free-space check.
  // When the probe passes, the shard clears its fault and accepts again by itself, without
  // a restart (docs/errors.md, "What happens at each fault").
  int64_t reprobe_interval_ms = 1000;
  // The scrubber re-reads sealed segments in turn and verifies every checksum, at most
  // this many bytes per second per shard (0: off). A damaged message is quarantined
  // (state kCorrupt) and logged with its id.
  uint64_t scrub_bytes_per_sec = 8ull << 20;
  // Text written into each shard's LOCK file, naming this process to a second opener
  // (whose Open fails with kFailedPrecondition quoting it). Empty: "pid <pid>".
  std::string lock_holder;
  // Serve the control channel (spool/control.h): a UNIX socket in shard 0's directory over
  // which the spool's owner holds, releases, requeues, deletes and lists messages while
  // this process has the spool open (spool-ctl uses it). Not on a read-only open. A socket
  // that cannot be set up is logged as a warning; the spool opens without it.
  bool control_socket = true;
};

// The largest Envelope::metadata, in bytes: Enqueue and SetMetadata refuse more
// (kInvalidArgument). It fits the room a message record keeps for its envelope beside an
// inline body (Options::segment_size).
inline constexpr size_t kMaxMetadataSize = 64 << 10;

struct Envelope {
  std::string sender;                   // reverse-path; empty for the null sender <>
  std::vector<std::string> recipients;  // forward-paths; at least one, none empty
  std::string queue = "default";        // scheduling queue; not empty, no NUL bytes
  // Opaque to spool (any bytes, at most kMaxMetadataSize), returned as stored or as last
  // replaced by SetMetadata.
  std::string metadata;
};

enum class MessageState : uint8_t {
  kQueued = 0,   // waiting for its next attempt (due when next_attempt_ms <= now)
  kHeld = 1,     // held by an operator: never due until released
  kCorrupt = 2,  // quarantined: stored bytes failed their checksum
};
// "queued", "held", "corrupt": stable names for logs and JSON.
std::string_view MessageStateName(MessageState state);

enum class RecipientStatus : uint8_t {
  kPending = 0,    // not yet delivered
  kDelivered = 1,  // accepted by the next hop
  kFailed = 2,     // permanently failed (bounced)
  kDeferred = 3,   // temporarily failed; will be retried
};
// "pending", "delivered", "failed", "deferred": stable names for logs and JSON.
std::string_view RecipientStatusName(RecipientStatus status);

struct MessageInfo {
  MessageId id;
  Envelope envelope;
  MessageState state = MessageState::kQueued;
  uint64_t size = 0;            // body bytes
  int64_t arrival_ms = 0;       // unix time of the enqueue, milliseconds
  int64_t next_attempt_ms = 0;  // unix time of the next delivery attempt, milliseconds
  uint32_t attempts = 0;        // delivery attempts recorded
  std::vector<RecipientStatus> recipient_status;  // one per envelope recipient
};

// A delivery attempt's outcome, recorded atomically by RecordAttempt.
struct AttemptResult {
  // (index into envelope.recipients, new status) pairs; others keep theirs.
  std::vector<std::pair<uint32_t, RecipientStatus>> recipients;
  // When to try again (unix ms); nullopt keeps the current value.
  std::optional<int64_t> next_attempt_ms;
  // Add one to the attempt count.
  bool count_attempt = true;
};

// kHealthy: every shard accepts mail. kDegraded: some shards refuse, the others accept.
// kRefusing: no shard accepts, or the spool is closing.
enum class HealthState { kHealthy, kDegraded, kRefusing };

struct ShardHealth {
  std::string dir;
  Status status;  // OK, or why the shard refuses (its latched fault, too little space)
};

struct Health {
  HealthState state = HealthState::kHealthy;
  Status status;  // why it refuses (kRefusing), else OK
  std::vector<ShardHealth> shards;
};

// Figures for operators and monitoring (spool/metrics.h formats them). The write-path
// counters count what this Spool object did since Open: zero on a read-only open.
struct Stats {
  uint64_t messages = 0;          // stored messages, all shards
  uint64_t body_bytes = 0;        // their body bytes
  int64_t oldest_arrival_ms = 0;  // unix ms of the oldest message's arrival; 0 if empty
  uint64_t segments_live = 0;     // segment files holding records
  uint64_t segments_free = 0;     // segment files ready for reuse
  uint64_t segment_bytes = 0;     // bytes of all segment files
  uint64_t live_bytes = 0;        // bytes of log records that live messages need
  uint64_t disk_free_bytes = 0;   // free bytes, summed over the shards' filesystems
  uint64_t enqueued = 0;          // messages stored since open
  uint64_t removed = 0;           // messages removed since open
  uint64_t batches = 0;           // commit groups written (one write + sync each)
  uint64_t log_bytes_written = 0;
  uint64_t reclaimed_segments = 0;
  uint64_t relocated_bytes = 0;  // live bytes copied forward by reclamation
  // Latency of a commit group's write + sync, microseconds; 0 before the first group.
  uint64_t sync_p50_us = 0, sync_p99_us = 0, sync_p999_us = 0;
  double mean_batch_records = 0;  // records per commit group
  double mean_batch_bytes = 0;    // bytes per commit group
  // Failure handling, since open.
  uint64_t faults = 0;          // shard faults latched (disk errors, full disk, index errors)
  uint64_t recoveries = 0;      // latched faults cleared by a passing re-probe
  uint64_t scrubbed_bytes = 0;  // bytes of whole sealed segments re-verified by the scrubber
  uint64_t corrupt_found = 0;   // damaged records found by reads and the scrubber
  uint64_t quarantined = 0;     // messages put in state kCorrupt
};

// Called with the id of the stored message, or why it was not stored.
using EnqueueCallback = std::function<void(const StatusOr<MessageId>& id)>;

class BodyWriter;

class Spool {
 public:
  // Opens the spool over options.dirs and stores it in the result; the caller owns it.
  // Takes each shard's lock (unless read_only), checks the format version, replays the
  // log after the index checkpoint (recovering from a crash: a torn tail is cut off,
  // damage is logged with its location) and starts the background threads (per shard:
  // index checkpoints, reclamation, scrubbing, re-probes; one worker thread; with
  // Options::control_socket, the control channel's server: spool/control.h).
  // Errors: kInvalidArgument (a bad option: see Options); kFailedPrecondition (a
  // directory that is not a spool and not empty, or missing when !create_if_missing or
  // read_only; a spool of a newer format version; a directory of another spool, or two
  // of one shard; a shard held by another process: the message names the holder);
  // kStorageFull, kPermission, kIoError (the file system, RocksDB); kCorruption (a record
  // whose checksums match but whose payload does not decode).
  static StatusOr<std::unique_ptr<Spool>> Open(const Options& options);

  // Stops the background threads, then finishes what was accepted: queued streamed
  // enqueues fail with kUnavailable, queued removals and every commit in flight complete,
  // and their callbacks run (on the spool's threads) before this returns. Then flushes
  // the index and releases the locks. REQUIRES: no other call on this Spool is running
  // or follows; every BodyWriter not yet committed or aborted is destroyed first.
  virtual ~Spool() = default;

  // Stores a message and returns its id once it is durable (docs/durability.md, contract
  // item 1). A body over the inline limit (Options::segment_size) is stored in chunks, as
  // through BeginMessage. Blocks for one group commit, plus at most max_commit_wait_ms
  // for room in the commit queue; on an idle shard the calling thread writes the batch
  // itself. Nothing of a message that failed is visible, now or after a crash.
  // Errors: kInvalidArgument (no recipients, an empty recipient, an empty queue or one
  // with a NUL byte, metadata over kMaxMetadataSize); kTooBig (over max_message_size);
  // kFailedPrecondition (read-only); kStorageFull, kPermission, kUnavailable (no shard admits it:
  // see Admission); kStorageFull, kPermission, kIoError (the write or its sync failed, also when
  // written again in a fresh segment); kOverload (no room in the commit queue in time);
  // kUnavailable (closing).
  virtual StatusOr<MessageId> Enqueue(const Envelope& envelope, std::string_view body) = 0;

  // The asynchronous Enqueue: `done` runs exactly once, with the id once the message is
  // durable or with the error (those of Enqueue). Does not wait for the disk; it may wait
  // for room in the commit queue, at most Options::async_commit_wait_ms (0: never, and the
  // answer is kOverload at once). The envelope and body may be released when it returns.
  // Thread of `done` (see the callback rules at the top): the caller's, before
  // EnqueueAsync returns, when it fails early (bad input, too big, read-only, no shard
  // admits it, no room in time, closing); a log I/O worker of the shard once the message
  // is durable or its write failed; the spool's worker thread for a body over the inline
  // limit, which is stored there.
  virtual void EnqueueAsync(const Envelope& envelope, std::string_view body,
                            EnqueueCallback done) = 0;

  // Starts a message whose body arrives in pieces (large messages, or a front-end that
  // streams DATA), on a shard chosen now by admission. Nothing is visible until
  // BodyWriter::Commit succeeds.
  // Errors: kInvalidArgument (the envelope, as Enqueue); kFailedPrecondition (read-only);
  // kStorageFull, kPermission, kUnavailable (no shard admits a message: see Admission).
  virtual StatusOr<std::unique_ptr<BodyWriter>> BeginMessage(const Envelope& envelope) = 0;

  // Envelope and state of message `id`, from the index (no log read). Works read-only.
  // Errors: kInvalidArgument (an invalid id); kNotFound (never stored, removed or being
  // removed, or a shard this spool does not have); the index's kStorageFull, kPermission,
  // kIoError (an index read failed, or the shard's index is failing and does not have the
  // message yet); kCorruption (its index entry does not decode).
  virtual StatusOr<MessageInfo> Get(const MessageId& id) = 0;

  // The body, verified against its checksums (docs/durability.md, contract item 3). Holds
  // the whole body in memory; ReadBodyStream does not. Works read-only.
  // Errors: those of Get; kCorruption with the id when the message is quarantined or a
  // record fails its checksum (the bytes are never returned; the damage is logged and
  // counted in Stats::corrupt_found, and the message is not quarantined by one read);
  // kStorageFull, kPermission, kIoError (the read failed).
  virtual StatusOr<std::string> ReadBody(const MessageId& id) = 0;
  // The body in pieces (the inline body, or each chunk), each verified before `sink`
  // sees it; `sink` runs on the calling thread and may stop the read by returning a
  // non-OK status, which ReadBodyStream returns. After a failure the pieces already
  // handed out were intact; the rest is missing. Errors: those of ReadBody.
  virtual Status ReadBodyStream(const MessageId& id,
                                const std::function<Status(std::string_view)>& sink) = 0;

  // Records a delivery attempt atomically: recipient results, next attempt time, attempt
  // count. Durable on return (contract item 1). The state changes of one message (this,
  // Hold, Release, Requeue, removal, reclamation's copy) hold the message's lock until
  // durable and indexed, so they apply in order; a change may wait about one group commit
  // for reclamation copying the message. Blocks for one group commit.
  // Errors: kInvalidArgument (an invalid id, a recipient index out of range);
  // kNotFound (as Get); kFailedPrecondition (read-only); the index fault of the shard
  // (kStorageFull, kPermission, kIoError: changes are refused until it has caught up);
  // the log's (kStorageFull, kPermission, kIoError, kOverload, kUnavailable).
  virtual Status RecordAttempt(const MessageId& id, const AttemptResult& result) = 0;
  // Hold: kHeld, never due until released. Release: kQueued, due now (its next attempt
  // moves to now if it was later). Durable on return, ordered as RecordAttempt.
  // Errors: those of RecordAttempt; kFailedPrecondition for a quarantined message.
  virtual Status Hold(const MessageId& id) = 0;
  virtual Status Release(const MessageId& id) = 0;
  // Makes a message kQueued and due now (releasing it if held). Errors: those of Hold.
  virtual Status Requeue(const MessageId& id) = 0;
  // Replaces the message's metadata (Envelope::metadata) with `metadata`, atomically: a
  // crash leaves the old or the new bytes, never a mix. Durable on return, ordered with
  // the message's other state changes as RecordAttempt; Get, ForEach and the C API return
  // the new bytes from then on. Allowed on a quarantined message (its metadata is not the
  // damaged part). Stored in the message's state record (docs/format.md, "Spool
  // records"), so every later state change of the message rewrites it: keep it small.
  // Blocks for one group commit.
  // Errors: kInvalidArgument (an invalid id, metadata over kMaxMetadataSize); kNotFound
  // (as Get); kFailedPrecondition (read-only); the index fault of the shard and the log's,
  // as RecordAttempt.
  virtual Status SetMetadata(const MessageId& id, std::string_view metadata) = 0;
  // The asynchronous form, for a caller that must not block: `done` (may be empty) runs
  // exactly once, with OK once the new metadata is durable, or with the error (those of
  // SetMetadata; the old metadata then stays). The update runs on the spool's worker
  // thread, in the order of the calls. `metadata` may be released when it returns.
  // Thread of `done` (see the callback rules at the top): the caller's, before the call
  // returns, when it fails early (bad id, too big, read-only, closing); else the spool's
  // worker thread.
  virtual void SetMetadataAsync(const MessageId& id, std::string_view metadata,
                                std::function<void(const Status&)> done) = 0;
  // Removes a message for good (delivered, bounced, or deleted by an operator); durable on
  // return: it never reappears after a crash (contract item 5). RemoveAsync plus a wait.
  // Errors: those of RemoveAsync; on failure the message stays, intact.
  virtual Status Remove(const MessageId& id) = 0;
  // The asynchronous form, for a delivery thread that need not wait: `done` (may be
  // empty) runs exactly once, with OK once the removal is durable, or with the error (the
  // message then stays, intact). From the call on, Get, ReadBody, state changes and
  // another removal answer kNotFound for the message; ScanDue and ForEach may still list
  // it until the removal is durable. Until `done` reports success, a crash may bring the
  // message back (a second delivery, never a loss). Never waits for the message's lock;
  // it may wait for room in the commit queue (at most max_commit_wait_ms).
  // Errors: kInvalidArgument (an invalid id); kNotFound (as Get, or already being
  // removed); kFailedPrecondition (read-only); the shard's index fault; the log's
  // (kStorageFull, kPermission, kIoError, kOverload, kUnavailable).
  // Thread of `done` (see the callback rules at the top): the caller's, before
  // RemoveAsync returns, when it fails early (bad id, not found, read-only, index fault,
  // the log refusing at once, closing); a log I/O worker of the shard once the removal is
  // durable or its write failed; the spool's worker thread when the message's lock was
  // busy (a state change or reclamation held it) and the removal waited there.
  virtual void RemoveAsync(const MessageId& id, std::function<void(const Status&)> done) = 0;

  // The kQueued messages of `queue` whose next attempt is at or before now_ms, earliest
  // first, at most `limit`. Held and quarantined messages are never due. Reads at most
  // `limit` schedule entries per shard (a read-only spool walks every index entry).
  // Errors: the index's (kStorageFull, kPermission, kIoError, kCorruption).
  virtual StatusOr<std::vector<MessageId>> ScanDue(std::string_view queue, int64_t now_ms,
                                                   size_t limit) = 0;

  // Calls `visit` on the calling thread for every message, shard after shard, in id
  // (arrival) order within a shard, each shard as it was when its walk began; `visit`
  // returns false to stop (still OK). For an MTA's start-up load and for operators'
  // listings. `visit` may call other Spool methods.
  // Errors: the index's (kStorageFull, kPermission, kIoError); kCorruption (an entry that
  // does not decode: the walk ends there).
  virtual Status ForEach(const std::function<bool(const MessageInfo&)>& visit) = 0;

  // Whether a message of about `expected_size` bytes (0: not known yet) could be accepted
  // now: OK, or the status whose reply the front-end gives. kTooBig (over
  // max_message_size); kUnavailable (read-only, closing); otherwise, when no shard admits
  // it, the first refusing shard's: kStorageFull (free space under min_free_bytes +
  // expected_size, inodes under min_free_inodes, or a latched full disk), kPermission (a
  // latched permission or read-only fault), kUnavailable (latched after an I/O error or an
  // index fault, until a re-probe passes). Advice only: an enqueue may still fail.
  // Cheap: no I/O but a statfs of a shard, reused for 100 ms while it has plenty of room.
  virtual Status Admission(uint64_t expected_size) = 0;
  // The health of each shard and of the spool (as Admission(0) per shard). A read-only
  // spool probes nothing and reports every shard healthy. Cost as Admission, per shard.
  virtual Health GetHealth() = 0;
  // Counts and figures (see Stats); best effort, never fails: what cannot be read is left
  // out. Cost per shard: a statfs, one index seek (the oldest message) and the
  // log's counters. The first call after Open waits for the one-time count of every
  // index entry (done in the background on a writable spool; by this call, walking the
  // whole index, on a read-only one).
  virtual Stats GetStats() = 0;

  // The options given to Open (a shard of an existing spool keeps its own segment size).
  virtual const Options& options() const = 0;
};

// A message being stored in pieces (Spool::BeginMessage). Thread-compatible: one thread
// at a time. Every call blocks its thread for the writes it makes.
// REQUIRES: a writer that is neither committed nor aborted is destroyed (or aborted)
// before its Spool; a finished one may outlive it.
class BodyWriter {
 public:
  virtual ~BodyWriter() = default;  // aborts if neither committed nor aborted
  // Adds the next piece of the body. Once the body is over the inline limit, every full
  // chunk (Options::stream_chunk_size) is written durably as it fills, after the shard's
  // admission is asked again: a disk that fills or fails meanwhile ends the message. With
  // Options::stream_write_through, every piece is written so before Append returns.
  // After a failure the message can only be aborted.
  // Errors: kTooBig (past max_message_size); kFailedPrecondition (already committed,
  // aborted or failed); the shard's admission (kStorageFull, kPermission, kUnavailable);
  // the log's (kStorageFull, kPermission, kIoError, kOverload, kUnavailable).
  virtual Status Append(std::string_view piece) = 0;
  // Makes the message durable and visible (contract item 1) and returns its id: a body
  // within the inline limit as one record, as Enqueue does; else the last chunk, then a
  // commit record listing the chunks. On failure nothing is visible (chunks written
  // become garbage for reclamation).
  // Errors: kFailedPrecondition (already committed, aborted or failed); the log's.
  virtual StatusOr<MessageId> Commit() = 0;
  // Discards the message: nothing becomes visible; chunks already written become garbage
  // for reclamation. No I/O.
  virtual void Abort() = 0;
};

// Rebuilds the index of every shard from its log alone (spool-fsck --rebuild-index):
// takes every shard's lock, moves each index aside as index.old-<unix ms> (kept for the
// operator), and replays the whole log into a fresh index. REQUIRES: options.dirs names
// every shard of the spool.
// Errors: kInvalidArgument (options.read_only); kFailedPrecondition (a directory that is
// not a spool, or a spool open elsewhere, in this process or another: the message names
// the holder); those of Spool::Open and of the file system.
Status RebuildIndex(const Options& options);

}  // namespace spool

#endif  // SPOOL_SPOOL_H_
