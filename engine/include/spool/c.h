/* The C API of spool, for mail transfer agents written in C.
 *
 * A thin layer over the C++ API of spool/spool.h, with the same durability contract: every
 * call that reports success has made its change durable (docs/durability.md, "The
 * contract"). See docs/integration.md for a walk-through and a complete example.
 *
 * Conventions.
 * - Every int function with a spool_reply_t* err returns 0 on success and -1 on failure.
 *   On failure, if `err` is not NULL, *err holds the SMTP reply the front-end gives
 *   (docs/errors.md, "The reply table": 452 4.3.1 for a full disk, 451 4.3.5 for a
 *   permission or read-only fault, 451 4.3.0 for an I/O error, corruption or an unknown
 *   id, 451 4.4.5 for overload, 421 4.3.2 when the spool is not serving, 552 5.3.4 for a
 *   message over the size limit, 501 5.5.4 for bad arguments). On success *err is
 *   {0, "", ""}. Functions returning a pointer return NULL on failure, with *err filled.
 *   `err` may always be NULL. spool_last_error_code() tells the failures apart further.
 * - The contract of each call (what it does, when it blocks) is that of the C++ call it
 *   names or mirrors in spool/spool.h.
 * - Reply texts never contain paths or errno names. The operator's explanation of the last
 *   failure ("storage_full: write /spool/0/seg-000003: No space left on device (ENOSPC)")
 *   is spool_last_error_detail(), per thread, for the MTA's log.
 * - Bad arguments (a NULL pointer where an object is required, a malformed id, no
 *   recipients, an output buffer too small for an id) fail with -1 and a 501 5.5.4 reply;
 *   they never crash and never store anything.
 * - No C++ exception crosses into C: an allocation failure inside a call is a -1 with
 *   451 4.3.0 (SPOOL_CODE_INTERNAL).
 * - Strings are NUL-terminated UTF-8 or any bytes but NUL. Memory the library hands out is
 *   freed with the function named at the call (spool_free unless stated otherwise).
 *
 * Threading model.
 * - A spool_t is thread-safe: every function taking a spool_t* may be called from any
 *   thread, concurrently, except spool_close, which must not race with any other call on
 *   the same spool_t (and nothing may use it afterwards).
 * - Callbacks of spool_enqueue_async never run on spool threads: a completion is queued and
 *   the file descriptor of spool_completion_fd becomes readable; the application calls
 *   spool_run_completions, which runs the ready callbacks on the calling thread. An event
 *   loop (poll, epoll, libevent, libuv) watches the fd for reading and calls
 *   spool_run_completions when it fires; callbacks may then call any function of this
 *   header on the same spool_t except spool_close.
 * - A spool_writer_t (a streamed body) is used by one thread at a time.
 * - spool_options_t is not thread-safe; it is only read during spool_open_with_options.
 * - The log callback (spool_set_log_callback) runs on whichever thread logs: a spool
 *   thread, or the caller's own inside a spool_* call; one call at a time.
 */

#ifndef SPOOL_C_H_
#define SPOOL_C_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Open, enqueue, read, remove: the core calls ------------------------------------------- */

typedef struct spool_t spool_t;
typedef struct {
  int code;          /* SMTP reply code (452, 451, 421, 552, 501), 0 on success */
  char enhanced[16]; /* RFC 3463 enhanced status code ("4.3.1"), "" on success */
  char text[256];    /* human text ("Insufficient system storage"), "" on success */
} spool_reply_t;

/* Characters of a message id's canonical text form ([0-9A-Za-z]), and the size of a buffer
 * that holds one with its terminating NUL. */
#define SPOOL_ID_LEN 22
#define SPOOL_ID_SIZE (SPOOL_ID_LEN + 1)

/* Opens (creating if missing) the spool over `dirs`, comma-separated shard directories,
 * with default options (Spool::Open). Returns NULL on failure: 421 4.3.2 for a directory
 * that is not a spool, written by a newer format version, or held by another process (the
 * holder is named in spool_last_error_detail()); 501 for an empty or malformed `dirs`;
 * 452, 451 4.3.5 or 451 4.3.0 when the file system fails. Close with spool_close.
 * Thread-safe (opening different spools concurrently). */
spool_t* spool_open(const char* dirs, spool_reply_t* err);

/* Aborts writers not yet committed (their later spool_append/spool_commit fail with 421,
 * spool_abort only frees them), waits for the asynchronous enqueues in flight, runs every
 * callback not yet run on the calling thread (once each, with the real outcome), flushes
 * the index, releases the locks and frees `s`. NULL is ignored.
 * REQUIRES: no other call on `s` or on one of its writers is running; afterwards only
 * spool_append, spool_commit and spool_abort of its writers may follow. */
void spool_close(spool_t* s);

/* Stores a message (queue "default", no metadata) and writes its id, NUL-terminated, to
 * id_out once every byte is on stable storage: the MTA may answer 250 after 0.
 * `sender` is the reverse-path, "" for the null sender <>; it must not be NULL.
 * `body` may be NULL only when body_len is 0.
 * REQUIRES: id_out_len >= SPOOL_ID_SIZE (else 501, nothing stored).
 * Thread-safe. Blocks for one group commit (a write and a sync). */
int spool_enqueue(spool_t* s, const char* sender, const char* const* recipients,
                  size_t n_recipients, const void* body, size_t body_len, char* id_out,
                  size_t id_out_len, spool_reply_t* err);

/* The body of message `id`, verified against its checksum, in a buffer from malloc
 * (free it with spool_free; one NUL byte follows the body, not counted in *len_out).
 * A corrupt message fails (451 4.3.0) and returns no bytes; an unknown id fails with
 * 451 4.3.0 and spool_last_error_code() == SPOOL_CODE_NOT_FOUND. Thread-safe. */
int spool_read_body(spool_t* s, const char* id, void** body_out, size_t* len_out,
                    spool_reply_t* err);

/* Removes message `id` for good (delivered, bounced or deleted); durable on return: it
 * never comes back after a crash (Spool::Remove). An unknown or already removed id fails
 * with 451 4.3.0 and SPOOL_CODE_NOT_FOUND. Thread-safe; blocks for one group commit. */
int spool_remove(spool_t* s, const char* id, spool_reply_t* err);

/* Frees memory handed out by this library (bodies, texts). NULL is ignored. */
void spool_free(void* p);

/* ---- Errors -------------------------------------------------------------------------------- */

/* The kind of the last failure, as spool::Code (spool/status.h). */
enum {
  SPOOL_CODE_OK = 0,
  SPOOL_CODE_INVALID_ARGUMENT = 1,
  SPOOL_CODE_NOT_FOUND = 2,
  SPOOL_CODE_TOO_BIG = 3,
  SPOOL_CODE_STORAGE_FULL = 4,
  SPOOL_CODE_PERMISSION = 5,
  SPOOL_CODE_IO_ERROR = 6,
  SPOOL_CODE_CORRUPTION = 7,
  SPOOL_CODE_OVERLOAD = 8,
  SPOOL_CODE_UNAVAILABLE = 9,
  SPOOL_CODE_FAILED_PRECONDITION = 10,
  SPOOL_CODE_INTERNAL = 11
};

/* The code and the operator-facing text ("not_found: message 008Dwey... not found") of the
 * last call on the calling thread that could fail: SPOOL_CODE_OK and "" if it succeeded.
 * The text may name paths and errno values: log it, never send it to an SMTP client.
 * Valid until the next call of this library on the same thread. Thread-safe (per thread). */
int spool_last_error_code(void);
const char* spool_last_error_detail(void);

/* ---- Options ------------------------------------------------------------------------------- */

/* Options of spool_open_with_options; defaults as in spool::Options (spool/spool.h).
 * Not thread-safe. Setters ignore a NULL options object. */
typedef struct spool_options_t spool_options_t;

spool_options_t* spool_options_create(void); /* never NULL (aborts if out of memory) */
void spool_options_destroy(spool_options_t* o);
/* Create the directories when missing (default 1). */
void spool_options_set_create_if_missing(spool_options_t* o, int on);
/* Open without the lock and without writing, beside a running writer (default 0). */
void spool_options_set_read_only(spool_options_t* o, int on);
/* Bodies over this fail with 552 5.3.4 (default 64 MiB); advertise it with SMTP SIZE. */
void spool_options_set_max_message_size(spool_options_t* o, uint64_t bytes);
/* Segment file size of a new spool (default 64 MiB). */
void spool_options_set_segment_size(spool_options_t* o, uint64_t bytes);
/* Chunk size of large bodies (default 1 MiB). */
void spool_options_set_stream_chunk_size(spool_options_t* o, uint64_t bytes);
/* "auto" (default), "io_uring" or "posix"; checked by spool_open_with_options. */
void spool_options_set_io_backend(spool_options_t* o, const char* backend);
/* O_DIRECT + O_DSYNC segment writes where supported (default 1). */
void spool_options_set_direct_io(spool_options_t* o, int on);
/* Longest wait for room in the commit queue before 451 4.4.5 (default 5000). */
void spool_options_set_max_commit_wait_ms(spool_options_t* o, int64_t ms);
/* The same for spool_enqueue_async (default -1: as max_commit_wait_ms). An event loop
 * sets 0: spool_enqueue_async then never waits, and the callback gets 451 4.4.5 when
 * every commit buffer is taken. */
void spool_options_set_async_commit_wait_ms(spool_options_t* o, int64_t ms);
/* Admission refuses with 452 4.3.1 under this much free space or inodes
 * (defaults 128 MiB and 1000). */
void spool_options_set_min_free_bytes(spool_options_t* o, uint64_t bytes);
void spool_options_set_min_free_inodes(spool_options_t* o, uint64_t inodes);
/* Index checkpoint interval (default 2000). */
void spool_options_set_checkpoint_interval_ms(spool_options_t* o, int64_t ms);
/* Background reclamation of segments (default 1). */
void spool_options_set_reclaim(spool_options_t* o, int on);
/* How often a shard latched by a disk fault re-probes its disk to recover by itself
 * (default 1000). */
void spool_options_set_reprobe_interval_ms(spool_options_t* o, int64_t ms);
/* Rate of the background scrubber that re-verifies cold segments, per shard; 0 turns it
 * off (default 8 MiB/s). */
void spool_options_set_scrub_bytes_per_sec(spool_options_t* o, uint64_t bytes);
/* Names this process to a second opener (default "pid <pid>"); NULL restores it. */
void spool_options_set_lock_holder(spool_options_t* o, const char* holder);

/* spool_open with options; `o` may be NULL (defaults) and may be destroyed afterwards. */
spool_t* spool_open_with_options(const char* dirs, const spool_options_t* o, spool_reply_t* err);

/* The spool's max_message_size, for the SMTP SIZE extension; 0 if s is NULL. Thread-safe. */
uint64_t spool_max_message_size(const spool_t* s);

/* ---- Enqueue with a full envelope ---------------------------------------------------------- */

typedef struct {
  const char* sender;            /* reverse-path, "" for <>; not NULL */
  const char* const* recipients; /* forward-paths, none NULL or empty */
  size_t n_recipients;           /* at least 1 */
  const char* queue;             /* scheduling queue; NULL for "default" */
  const void* metadata;          /* opaque bytes kept with the message; may be NULL */
  size_t metadata_len;           /* 0 when metadata is NULL */
} spool_envelope_t;

/* As spool_enqueue, with a queue and metadata. Thread-safe; blocks for one group commit. */
int spool_enqueue_envelope(spool_t* s, const spool_envelope_t* envelope, const void* body,
                           size_t body_len, char* id_out, size_t id_out_len, spool_reply_t* err);

/* ---- Asynchronous enqueue for event loops -------------------------------------------------- */

/* Outcome of an asynchronous enqueue: rc 0 and the id (NUL-terminated) once the message is
 * durable, or rc -1, id NULL and the reply to give. `id` and `reply` are valid only during
 * the call. Runs on the thread that calls spool_run_completions (or spool_close). */
typedef void (*spool_enqueue_cb)(void* arg, int rc, const char* id, const spool_reply_t* reply);

/* Starts storing a message (Spool::EnqueueAsync) and returns at once; the envelope and body
 * may be released when it returns. Returns 0 when the callback will run exactly once (with
 * the outcome, failures such as 452 and a malformed envelope's 501 included), from
 * spool_run_completions or at the latest from spool_close. Returns -1 without ever calling
 * `cb` only when the call itself is malformed (s, envelope or cb NULL, or body NULL with
 * body_len > 0) or memory runs out. Thread-safe; does not wait for the disk (it may wait
 * for room in the commit queue, up to async_commit_wait_ms, under overload). */
int spool_enqueue_async(spool_t* s, const spool_envelope_t* envelope, const void* body,
                        size_t body_len, spool_enqueue_cb cb, void* arg, spool_reply_t* err);

/* A file descriptor (an eventfd) that is readable while completions wait to be run, for
 * poll/epoll/select. Owned by the spool: do not read, write or close it. The same fd for
 * the life of `s`; -1 if s is NULL. Thread-safe. */
int spool_completion_fd(const spool_t* s);

/* Runs, on the calling thread, the callbacks of the asynchronous enqueues completed so far
 * (in completion order) and makes the completion fd unreadable until the next one. Returns
 * how many ran (0 if s is NULL). Never blocks. Thread-safe: concurrent callers each run a
 * disjoint share; each callback runs exactly once. */
size_t spool_run_completions(spool_t* s);

/* ---- Streamed bodies ----------------------------------------------------------------------- */

/* A message whose body arrives in pieces (DATA streamed from the client, large messages).
 * Nothing is visible until spool_commit succeeds. Used by one thread at a time. */
typedef struct spool_writer_t spool_writer_t;

/* Starts a message (Spool::BeginMessage). NULL on failure (bad envelope 501, the spool
 * refusing: 452/451/421). End it with spool_commit or spool_abort (both free it).
 * Thread-safe. */
spool_writer_t* spool_begin(spool_t* s, const spool_envelope_t* envelope, spool_reply_t* err);
/* Adds the next piece (BodyWriter::Append: full chunks are written durably as they fill,
 * blocking for their writes). Past max_message_size: 552 5.3.4; the disk filling or
 * failing meanwhile: its reply. After a failure the message cannot be committed; call
 * spool_abort. */
int spool_append(spool_writer_t* w, const void* data, size_t len, spool_reply_t* err);
/* Makes the message durable and visible and writes its id to id_out (REQUIRES:
 * id_out_len >= SPOOL_ID_SIZE, else 501 and the message is discarded). Frees `w`,
 * whether it succeeds or not. Blocks for the writes and one sync. */
int spool_commit(spool_writer_t* w, char* id_out, size_t id_out_len, spool_reply_t* err);
/* Discards the message and frees `w`. NULL is ignored. */
void spool_abort(spool_writer_t* w);

/* ---- Envelope and state -------------------------------------------------------------------- */

enum { SPOOL_STATE_QUEUED = 0, SPOOL_STATE_HELD = 1, SPOOL_STATE_CORRUPT = 2 };
enum {
  SPOOL_RCPT_PENDING = 0,   /* not yet delivered */
  SPOOL_RCPT_DELIVERED = 1, /* accepted by the next hop */
  SPOOL_RCPT_FAILED = 2,    /* permanently failed (bounced) */
  SPOOL_RCPT_DEFERRED = 3   /* temporarily failed; will be retried */
};

typedef struct {
  char id[SPOOL_ID_SIZE];
  const char* sender;            /* "" for the null sender */
  const char* const* recipients; /* n_recipients strings */
  const int* recipient_status;   /* n_recipients SPOOL_RCPT_* values */
  size_t n_recipients;
  const char* queue;
  const void* metadata; /* metadata_len bytes, followed by a NUL */
  size_t metadata_len;
  int state;               /* SPOOL_STATE_* */
  uint64_t size;           /* body bytes */
  int64_t arrival_ms;      /* unix time of the enqueue, milliseconds */
  int64_t next_attempt_ms; /* unix time of the next delivery attempt, milliseconds */
  uint32_t attempts;       /* delivery attempts recorded */
} spool_message_info_t;

/* Envelope and state of message `id`: *info_out is one allocation, freed with
 * spool_message_info_free (or spool_free). Thread-safe. */
int spool_get(spool_t* s, const char* id, spool_message_info_t** info_out, spool_reply_t* err);
void spool_message_info_free(spool_message_info_t* info);

/* The body in pieces, each verified before `sink` sees it: for bodies too large to hold in
 * memory. `sink` returns 0 to go on, anything else to stop early (still a success).
 * A corrupt piece fails the call; pieces already handed out were intact. Thread-safe. */
typedef int (*spool_body_sink)(void* arg, const void* data, size_t len);
int spool_read_body_stream(spool_t* s, const char* id, spool_body_sink sink, void* arg,
                           spool_reply_t* err);

/* ---- State updates ------------------------------------------------------------------------- */

typedef struct {
  uint32_t index; /* into the envelope's recipients */
  int status;     /* SPOOL_RCPT_* */
} spool_rcpt_result_t;

/* Pass as next_attempt_ms to keep the current next-attempt time (any negative value). */
#define SPOOL_NEXT_ATTEMPT_KEEP (-1)

/* Records a delivery attempt atomically: the recipients' new statuses (n_results may be 0,
 * results then may be NULL), the next attempt time (unix ms, or SPOOL_NEXT_ATTEMPT_KEEP),
 * and one more attempt if count_attempt is non-zero. Durable on return. A recipient index
 * out of range or a status that is not a SPOOL_RCPT_ value: 501. Thread-safe; blocks for
 * one group commit. */
int spool_record_attempt(spool_t* s, const char* id, const spool_rcpt_result_t* results,
                         size_t n_results, int64_t next_attempt_ms, int count_attempt,
                         spool_reply_t* err);
/* Hold: never due until released. Release: queued and due now. Requeue: due now (released
 * if held). A corrupt message cannot be held, released or requeued (421 with
 * SPOOL_CODE_FAILED_PRECONDITION). Durable on return. Thread-safe; blocks for one group
 * commit. */
int spool_hold(spool_t* s, const char* id, spool_reply_t* err);
int spool_release(spool_t* s, const char* id, spool_reply_t* err);
int spool_requeue(spool_t* s, const char* id, spool_reply_t* err);

/* The largest metadata (spool_envelope_t::metadata, spool_set_metadata) in bytes:
 * spool::kMaxMetadataSize. */
#define SPOOL_MAX_METADATA_SIZE 65536

/* Replaces the metadata of message `id` with the metadata_len bytes at `metadata` (NULL
 * only when metadata_len is 0), atomically (Spool::SetMetadata): a crash leaves the old or
 * the new bytes. Over SPOOL_MAX_METADATA_SIZE, or NULL with a length: 501. Allowed on a
 * corrupt message. Durable on return. Thread-safe; blocks for one group commit. */
int spool_set_metadata(spool_t* s, const char* id, const void* metadata, size_t metadata_len,
                       spool_reply_t* err);

/* ---- Scans --------------------------------------------------------------------------------- */

/* A message id as a value, for arrays. */
typedef struct {
  char text[SPOOL_ID_SIZE];
} spool_id_t;

/* The current unix time in milliseconds (the clock of next_attempt_ms). */
int64_t spool_now_ms(void);

/* The queued messages of `queue` (NULL: "default") whose next attempt is at or before
 * now_ms, earliest first: at most `capacity` ids into `ids`, their number into *n_out
 * (capacity 0: nothing is read, *n_out is 0). Thread-safe. */
int spool_scan_due(spool_t* s, const char* queue, int64_t now_ms, spool_id_t* ids, size_t capacity,
                   size_t* n_out, spool_reply_t* err);

/* Calls `visit` on the calling thread for every message (the MTA's start-up load), in id
 * order per shard; `info` is valid only during the call. `visit` returns 0 to go on,
 * anything else to stop (still a success). `visit` must not call spool_close.
 * Thread-safe. */
typedef int (*spool_visit_cb)(void* arg, const spool_message_info_t* info);
int spool_foreach(spool_t* s, spool_visit_cb visit, void* arg, spool_reply_t* err);

/* ---- Admission, health, statistics --------------------------------------------------------- */

/* Whether a message of about expected_size bytes could be accepted now (expected_size 0
 * when unknown: at connect and MAIL without SIZE). 0 to accept; -1 with the reply to give
 * (452 full, 451 faults, 421 not serving, 552 too big). Cheap; call it at connect, MAIL
 * and DATA. Thread-safe. */
int spool_admission(spool_t* s, uint64_t expected_size, spool_reply_t* err);

enum { SPOOL_HEALTHY = 0, SPOOL_DEGRADED = 1, SPOOL_REFUSING = 2 };

typedef struct {
  int state;            /* SPOOL_HEALTHY, SPOOL_DEGRADED (some shards out), SPOOL_REFUSING */
  spool_reply_t reply;  /* why it refuses (SPOOL_REFUSING), else code 0 */
  size_t shards;        /* shards of the spool */
  size_t shards_failed; /* shards refusing; their causes are in the log */
} spool_health_t;

/* The spool's health (Spool::GetHealth). Cheap. Thread-safe. */
int spool_get_health(spool_t* s, spool_health_t* out, spool_reply_t* err);

/* As spool::Stats (spool/spool.h). */
typedef struct {
  uint64_t messages;
  uint64_t body_bytes;
  int64_t oldest_arrival_ms; /* 0 if empty */
  uint64_t segments_live;
  uint64_t segments_free;
  uint64_t segment_bytes; /* bytes of all segment files */
  uint64_t live_bytes;    /* bytes of log records that live messages need */
  uint64_t disk_free_bytes;
  uint64_t enqueued; /* since open */
  uint64_t removed;  /* since open */
  uint64_t batches;
  uint64_t log_bytes_written;
  uint64_t reclaimed_segments;
  uint64_t relocated_bytes;
  uint64_t sync_p50_us, sync_p99_us, sync_p999_us;
  double mean_batch_records;
  double mean_batch_bytes;
  /* Failure handling, since open. */
  uint64_t faults;         /* shard faults latched (disk errors, full disk, index errors) */
  uint64_t recoveries;     /* latched faults cleared by a passing re-probe */
  uint64_t scrubbed_bytes; /* bytes re-verified by the scrubber */
  uint64_t corrupt_found;  /* damaged records found by reads and the scrubber */
  uint64_t quarantined;    /* messages put in state SPOOL_STATE_CORRUPT */
} spool_stats_t;

/* The spool's statistics (Spool::GetStats: a statfs and an index seek per shard; the
 * first call after opening waits for the count of every message). Thread-safe. */
int spool_get_stats(spool_t* s, spool_stats_t* out, spool_reply_t* err);

/* Statistics and health as text, for the MTA's own metrics endpoint (spool/metrics.h):
 * SPOOL_METRICS_PROMETHEUS (text exposition format) or SPOOL_METRICS_JSON (one line).
 * *text_out is NUL-terminated, freed with spool_free. Visits every message (per-queue
 * counts): for a scrape, not for every SMTP command. Thread-safe. */
enum { SPOOL_METRICS_PROMETHEUS = 0, SPOOL_METRICS_JSON = 1 };
int spool_metrics(spool_t* s, int format, char** text_out, spool_reply_t* err);

/* ---- Log ----------------------------------------------------------------------------------- */

enum { SPOOL_LOG_DEBUG = 0, SPOOL_LOG_INFO = 1, SPOOL_LOG_WARNING = 2, SPOOL_LOG_ERROR = 3 };

/* Routes the engine's operator log (faults, fallbacks, recoveries) to `fn`, process-wide;
 * NULL restores the default (stderr, SPOOL_LOG_LEVEL). `fn` receives every level and
 * runs on whichever thread logs (a spool thread, or the caller's own inside a spool_*
 * call), one call at a time; it must not call this library (spool/logging.h). `message`
 * is valid during the call. Once this returns, the previous `fn` is no longer called.
 * Thread-safe. */
typedef void (*spool_log_cb)(void* arg, int level, const char* message);
void spool_set_log_callback(spool_log_cb fn, void* arg);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* SPOOL_C_H_ */
