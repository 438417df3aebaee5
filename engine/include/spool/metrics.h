// A spool's figures for operators and monitoring: statistics and health in the Prometheus
// text exposition format (version 0.0.4) and as JSON, and a message's envelope and state
// as JSON.
//
// An MTA that links spool serves FormatPrometheus() from its own metrics endpoint; that is
// the only place the write-path figures (enqueued, removed, batches, sync latency) and
// health mean something, because they describe the process that has the spool open for
// writing. `spool-ctl stats` prints the same text from a read-only open: the contents of
// the spool (messages per queue and state, bytes, oldest message, segments, free space).
//
// JSON output is one line, valid UTF-8: strings are escaped per RFC 8259, and bytes that
// are not valid UTF-8 (a sender or queue may hold any byte but NUL) become U+FFFD, as in
// Go's encoding/json. Prometheus label values are escaped the same way (\\, \", \n).
//
// Thread-safety: pure functions over values, except CollectMetrics (and the formatters
// taking a Spool&), which call the thread-safe Spool methods GetStats, GetHealth and
// ForEach on the calling thread and may be called from any thread.

#ifndef SPOOL_METRICS_H_
#define SPOOL_METRICS_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "spool/spool.h"
#include "spool/status.h"

namespace spool {

// The messages and body bytes of one queue in one state.
struct QueueStateCount {
  std::string queue;
  MessageState state = MessageState::kQueued;
  uint64_t messages = 0;
  uint64_t bytes = 0;
};

// A snapshot of what the formatters print. Plain data: a test or an MTA may fill it
// itself.
struct Metrics {
  int64_t now_ms = 0;  // unix ms at collection; ages are relative to it
  Stats stats;
  // True when the spool is open for writing. A read-only open writes nothing and probes
  // nothing, so its counters, sync latencies, batch sizes and health say nothing about the
  // spool: the formatters leave them out.
  bool writer = true;
  Health health;
  // Whether `queues` was collected (MetricsOptions::per_queue).
  bool per_queue = false;
  // Every state of every queue that holds a message (zeros included, so that a series
  // does not vanish when its last message goes), ordered by queue, then state.
  std::vector<QueueStateCount> queues;
};

struct MetricsOptions {
  // Count messages and bytes per queue and state. This visits every message (Spool::
  // ForEach): fine for an operator tool and for a scrape a minute of a spool of a few
  // million messages. Off: totals only, from GetStats (a statfs and an index seek per
  // shard, whatever the number of messages; see Spool::GetStats).
  bool per_queue = true;
};

// Collects stats, health (for a writer) and, with options.per_queue, the per-queue counts
// of `spool`. Errors: those of Spool::ForEach (an unreadable index), with per_queue only.
StatusOr<Metrics> CollectMetrics(Spool& spool, const MetricsOptions& options = {});

// Prometheus text exposition format, every family with # HELP and # TYPE:
//   spool_messages{queue,state}, spool_message_bytes{queue,state}   (gauges; per_queue)
//   spool_stored_messages, spool_stored_body_bytes, spool_oldest_message_age_seconds,
//   spool_segments{state="live|free"}, spool_segment_bytes, spool_live_bytes,
//   spool_disk_free_bytes                                           (gauges)
// and for a writer only:
//   spool_enqueued_total, spool_removed_total, spool_batches_total,
//   spool_log_written_bytes_total, spool_reclaimed_segments_total,
//   spool_relocated_bytes_total                                     (counters, since open)
//   spool_fsync_latency_seconds{quantile="0.5|0.99|0.999"}          (summary; NaN before
//                                                                    the first batch)
//   spool_batch_records_mean, spool_batch_bytes_mean,
//   spool_health_state{state="healthy|degraded|refusing"}, spool_shard_healthy{dir}
// Ends with a newline.
std::string FormatPrometheus(const Metrics& metrics);

// The same figures as one JSON object on one line (no trailing newline): "time",
// "time_ms", "read_only", "messages", "body_bytes", "oldest_arrival"/"oldest_arrival_ms"
// (null when empty), "oldest_message_age_seconds", "segments_live", "segments_free",
// "segment_bytes", "live_bytes", "disk_free_bytes", "queues" ([{"queue", "state",
// "messages", "bytes"}], with per_queue) and for a writer "enqueued", "removed",
// "batches", "log_bytes_written", "reclaimed_segments", "relocated_bytes",
// "sync_p50_us", "sync_p99_us", "sync_p999_us", "mean_batch_records", "mean_batch_bytes"
// and "health" ({"state", "status", "shards": [{"dir", "healthy", "status"}]}).
std::string FormatStatsJson(const Metrics& metrics);

// CollectMetrics followed by the formatter.
StatusOr<std::string> FormatPrometheus(Spool& spool, const MetricsOptions& options = {});
StatusOr<std::string> FormatStatsJson(Spool& spool, const MetricsOptions& options = {});

// A message as one JSON object on one line (no trailing newline): "id", "queue",
// "sender" ("" for the null sender), "recipients" (array), "recipient_status" (array,
// one of pending|delivered|failed|deferred per recipient), "size" (body bytes),
// "arrival" and "next_attempt" (ISO-8601 UTC) with "arrival_ms" and "next_attempt_ms"
// (unix ms), "attempts", "state" (queued|held|corrupt) and "metadata" (a string).
std::string MessageInfoJson(const MessageInfo& info);

// `text` as a JSON string literal, quotes included (see the escaping rules above).
std::string JsonQuote(std::string_view text);

// Unix milliseconds as ISO-8601 UTC with milliseconds: "2026-11-28T01:02:03.456Z".
std::string FormatIsoTime(int64_t unix_ms);

}  // namespace spool

#endif  // SPOOL_METRICS_H_
