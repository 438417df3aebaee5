// spool: a crash-safe message spool for mail transfer agents.
//
// A Spool stores accepted messages durably before the MTA answers 250, and keeps their
// delivery state (per-recipient results, next attempt, attempts, hold) until the MTA
// removes them. See docs/integration.md for a walk-through and docs/durability.md for
// the contract.
//
// Durability (SPEC §2): every call that reports success has made its change durable
// (the log records are on stable storage). After a crash, reopening yields every
// acknowledged message byte for byte with its last acknowledged state; a removed message
// never comes back; a message whose enqueue did not succeed is absent or complete.
//
// Errors are Status values; SmtpReplyFor(status) (spool/smtp_reply.h) is the reply the
// front-end should give.
//
// Thread-safety: a Spool is thread-safe. Any method may be called from any thread.
// Completion callbacks run on the spool's internal threads, possibly several at once
// (they must be thread-safe), each after its record is durable and indexed: they must be
// quick and must not call synchronous Spool methods (they may call the asynchronous ones).

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
  // The shards: one directory per disk. Created (with their parents) if missing when
  // create_if_missing. REQUIRES: at least one.
  std::vector<std::string> dirs;
  bool create_if_missing = true;
  // Open without taking the lock and without writing anything: for inspection beside a
  // running writer, or on a full or read-only disk. Mutating calls fail with
  // kFailedPrecondition.
  bool read_only = false;
  // Messages larger than this fail with kTooBig (SMTP 552). SMTP SIZE advertises it.
  uint64_t max_message_size = 64ull << 20;
  // Segment file size of a new spool (an existing spool keeps the size it was created
  // with, recorded in each shard's SPOOL file). A record never spans segments; bodies
  // larger than a quarter of a segment (at most 4 MiB) are stored as chunks of
  // stream_chunk_size bytes.
  uint64_t segment_size = 64ull << 20;
  uint64_t stream_chunk_size = 1ull << 20;
  // "auto" (io_uring if the kernel allows, else posix), "io_uring" or "posix".
  std::string io_backend = "auto";
  // O_DIRECT + O_DSYNC segment writes where the filesystem supports them (measured
  // faster on NVMe and virtio disks: docs/benchmarks.md); buffered + fdatasync otherwise.
  bool direct_io = true;
  // A producer waits at most this long for room in the commit queue before kOverload.
  int64_t max_commit_wait_ms = 5000;
  // The same for EnqueueAsync's caller (negative: max_commit_wait_ms). An event loop sets
  // 0: EnqueueAsync then never blocks, and answers kOverload (451 4.4.5) at once when
  // every commit buffer is taken.
  int64_t async_commit_wait_ms = -1;
  // Admission refuses (kStorageFull, 452) when a shard's filesystem has less free space
  // or inodes than this.
  uint64_t min_free_bytes = 128ull << 20;
  uint64_t min_free_inodes = 1000;
  // How often the index is flushed and its log checkpoint advanced. Shorter means less
  // log to replay at open; each flush is a few small sequential writes.
  int64_t checkpoint_interval_ms = 2000;
  // Background reclamation of segments whose messages are gone.
  bool reclaim = true;
  // A shard whose disk failed (a latched log or index fault) is re-probed this often: a
  // write + sync of a probe file and a free-space check. When the probe passes, the shard
  // clears its fault and accepts again by itself (SPEC §3).
  int64_t reprobe_interval_ms = 1000;
  // The scrubber re-reads sealed segments in turn and verifies every checksum, at most
  // this many bytes per second per shard (0: off). A damaged message is quarantined
  // (state kCorrupt) and logged with its id.
  uint64_t scrub_bytes_per_sec = 8ull << 20;
  // Text written into each shard's lock file, naming this process to a second opener.
  // Empty: "pid <pid>".
  std::string lock_holder;
};

struct Envelope {
  std::string sender;                   // reverse-path; empty for the null sender <>
  std::vector<std::string> recipients;  // forward-paths; at least one, none empty
  std::string queue = "default";        // scheduling queue; no NUL bytes
  std::string metadata;                 // opaque to spool, returned as stored
};

enum class MessageState : uint8_t {
  kQueued = 0,   // waiting for its next attempt (due when next_attempt_ms <= now)
  kHeld = 1,     // held by an operator: never due until released
  kCorrupt = 2,  // quarantined: stored bytes failed their checksum
};
std::string_view MessageStateName(MessageState state);

enum class RecipientStatus : uint8_t {
  kPending = 0,    // not yet delivered
  kDelivered = 1,  // accepted by the next hop
  kFailed = 2,     // permanently failed (bounced)
  kDeferred = 3,   // temporarily failed; will be retried
};
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

enum class HealthState { kHealthy, kDegraded, kRefusing };

struct ShardHealth {
  std::string dir;
  Status status;  // OK, or the latched fault
};

struct Health {
  HealthState state = HealthState::kHealthy;
  Status status;  // why it refuses (kRefusing), else OK
  std::vector<ShardHealth> shards;
};

struct Stats {
  uint64_t messages = 0;
  uint64_t body_bytes = 0;
  int64_t oldest_arrival_ms = 0;  // 0 if empty
  uint64_t segments_live = 0;
  uint64_t segments_free = 0;
  uint64_t segment_bytes = 0;  // bytes of all segment files
  uint64_t live_bytes = 0;     // bytes of log records that live messages need
  uint64_t disk_free_bytes = 0;
  uint64_t enqueued = 0;  // since open
  uint64_t removed = 0;
  uint64_t batches = 0;
  uint64_t log_bytes_written = 0;
  uint64_t reclaimed_segments = 0;
  uint64_t relocated_bytes = 0;  // live bytes copied forward by reclamation
  uint64_t sync_p50_us = 0, sync_p99_us = 0, sync_p999_us = 0;
  double mean_batch_records = 0;
  double mean_batch_bytes = 0;
  // Failure handling, since open.
  uint64_t faults = 0;          // shard faults latched (disk errors, full disk, index errors)
  uint64_t recoveries = 0;      // latched faults cleared by a passing re-probe
  uint64_t scrubbed_bytes = 0;  // bytes of whole sealed segments re-verified by the scrubber
  uint64_t corrupt_found = 0;   // damaged records found by reads and the scrubber
  uint64_t quarantined = 0;     // messages put in state kCorrupt
};

using EnqueueCallback = std::function<void(const StatusOr<MessageId>& id)>;

class BodyWriter;

class Spool {
 public:
  // Opens the spool over options.dirs: takes each shard's lock (a second writer gets
  // kFailedPrecondition naming the holder), checks the format version, replays the log
  // after the index checkpoint, and starts the background threads.
  static StatusOr<std::unique_ptr<Spool>> Open(const Options& options);

  // Finishes the commits in flight, flushes the index, releases the locks.
  virtual ~Spool() = default;

  // Stores a message and returns its id once it is durable.
  // Errors: kInvalidArgument (no recipients, an empty recipient, a NUL in the queue),
  // kTooBig, kStorageFull/kPermission/kIoError (the disk), kOverload, kUnavailable.
  virtual StatusOr<MessageId> Enqueue(const Envelope& envelope, std::string_view body) = 0;

  // The asynchronous form: `done` runs once the message is durable (or failed), on a
  // spool thread. The envelope and body may be released when EnqueueAsync returns.
  virtual void EnqueueAsync(const Envelope& envelope, std::string_view body,
                            EnqueueCallback done) = 0;

  // Starts a message whose body arrives in pieces (large messages, or a front-end that
  // streams DATA). Nothing is visible until BodyWriter::Commit succeeds.
  virtual StatusOr<std::unique_ptr<BodyWriter>> BeginMessage(const Envelope& envelope) = 0;

  // Envelope and state. kNotFound for an unknown or removed id.
  virtual StatusOr<MessageInfo> Get(const MessageId& id) = 0;

  // The body, verified against its checksum. kCorruption (with the id) if it does not
  // match: corrupted bytes are never returned.
  virtual StatusOr<std::string> ReadBody(const MessageId& id) = 0;
  // The body in pieces, each verified before it is handed out; `sink` may stop the read
  // by returning a non-OK status, which ReadBodyStream returns.
  virtual Status ReadBodyStream(const MessageId& id,
                                const std::function<Status(std::string_view)>& sink) = 0;

  // Records a delivery attempt: recipient results, next attempt time, attempt count.
  virtual Status RecordAttempt(const MessageId& id, const AttemptResult& result) = 0;
  // Hold: never due until released. Release: back to kQueued, due now.
  virtual Status Hold(const MessageId& id) = 0;
  virtual Status Release(const MessageId& id) = 0;
  // Makes a message due now (releasing it if held).
  virtual Status Requeue(const MessageId& id) = 0;
  // Removes a message for good (delivered, bounced, or deleted by an operator).
  virtual Status Remove(const MessageId& id) = 0;
  // The asynchronous form, for a delivery thread that need not wait: `done` (may be
  // empty) runs on a spool thread once the removal is durable, or failed (the message is
  // then still there, intact). From the call on, the message is gone for Get, ReadBody,
  // state changes and scans. Until `done` runs, a crash may bring the message back (a
  // second delivery, never a loss). Never waits for the message's lock: when a state
  // change or reclamation holds it, the removal waits on a spool thread instead.
  virtual void RemoveAsync(const MessageId& id, std::function<void(const Status&)> done) = 0;

  // The queued messages of `queue` whose next attempt is at or before now_ms, earliest
  // first, at most `limit`.
  virtual StatusOr<std::vector<MessageId>> ScanDue(std::string_view queue, int64_t now_ms,
                                                   size_t limit) = 0;

  // Every message, in id order per shard; `visit` returns false to stop. For an MTA's
  // start-up load and for operators' listings.
  virtual Status ForEach(const std::function<bool(const MessageInfo&)>& visit) = 0;

  // Whether a message of about `expected_size` bytes could be accepted now: OK, or the
  // status whose reply the front-end should give (452 full, 451 faults, 421 closed).
  virtual Status Admission(uint64_t expected_size) = 0;
  virtual Health GetHealth() = 0;
  virtual Stats GetStats() = 0;

  virtual const Options& options() const = 0;
};

// A message being stored in pieces. Thread-compatible: one thread at a time.
// REQUIRES: a writer that is neither committed nor aborted is destroyed (or aborted)
// before its Spool.
class BodyWriter {
 public:
  virtual ~BodyWriter() = default;  // aborts if neither committed nor aborted
  // Adds the next piece of the body. Fails with kTooBig past max_message_size.
  virtual Status Append(std::string_view piece) = 0;
  // Makes the message durable and visible; returns its id.
  virtual StatusOr<MessageId> Commit() = 0;
  // Discards the message. Pieces already written become garbage for reclamation.
  virtual void Abort() = 0;
};

// Rebuilds the index of every shard from its log alone (spool-fsck --rebuild-index).
// The old index directories are kept as index.old-<time>. Takes the shards' locks: fails
// with kFailedPrecondition while another process has the spool open.
Status RebuildIndex(const Options& options);

}  // namespace spool

#endif  // SPOOL_SPOOL_H_
