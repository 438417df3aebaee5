// The C API (spool/c.h) for a queue manager: envelope and state, state updates, scans,
// admission, health, statistics and metrics.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "capi/c_api_internal.h"
#include "spool/c.h"
#include "spool/message_id.h"
#include "spool/metrics.h"
#include "spool/spool.h"
#include "spool/status.h"

using spool::MessageId;
using spool::Status;
using spool::StatusOr;
using spool::capi::Fail;
using spool::capi::FillReply;
using spool::capi::Guard;
using spool::capi::IdCall;
using spool::capi::Invalid;
using spool::capi::Pack;
using spool::capi::PackedSize;
using spool::capi::ParseId;
using spool::capi::SpoolOf;
using spool::capi::Succeed;
using spool::capi::WriteId;

extern "C" {

// ---- Envelope and state ------------------------------------------------------------------

int spool_get(spool_t* s, const char* id, spool_message_info_t** info_out, spool_reply_t* err) {
  static const char kFn[] = "spool_get";
  return Guard(err, [&]() -> int {
    StatusOr<spool::Spool*> sp = SpoolOf(kFn, s);
    if (!sp.ok()) return Fail(sp.status(), err);
    if (info_out == nullptr) return Fail(Invalid(kFn, "info_out is NULL"), err);
    *info_out = nullptr;
    StatusOr<MessageId> parsed = ParseId(kFn, id);
    if (!parsed.ok()) return Fail(parsed.status(), err);
    StatusOr<spool::MessageInfo> info = (*sp)->Get(*parsed);
    if (!info.ok()) return Fail(info.status(), err);
    void* memory = std::malloc(PackedSize(*info));
    if (memory == nullptr) return Fail(spool::InternalError("out of memory"), err);
    Pack(*info, memory);
    *info_out = static_cast<spool_message_info_t*>(memory);
    return Succeed(err);
  });
}

void spool_message_info_free(spool_message_info_t* info) { std::free(info); }

// ---- State updates -----------------------------------------------------------------------

int spool_record_attempt(spool_t* s, const char* id, const spool_rcpt_result_t* results,
                         size_t n_results, int64_t next_attempt_ms, int count_attempt,
                         spool_reply_t* err) {
  static const char kFn[] = "spool_record_attempt";
  return Guard(err, [&]() -> int {
    StatusOr<spool::Spool*> sp = SpoolOf(kFn, s);
    if (!sp.ok()) return Fail(sp.status(), err);
    StatusOr<MessageId> parsed = ParseId(kFn, id);
    if (!parsed.ok()) return Fail(parsed.status(), err);
    if (results == nullptr && n_results != 0) {
      return Fail(Invalid(kFn, "results is NULL but n_results is not 0"), err);
    }
    spool::AttemptResult result;
    for (size_t i = 0; i < n_results; ++i) {
      const int status = results[i].status;
      if (status < SPOOL_RCPT_PENDING || status > SPOOL_RCPT_DEFERRED) {
        return Fail(Invalid(kFn, ("results[" + std::to_string(i) + "].status " +
                                  std::to_string(status) + " is not a SPOOL_RCPT_ value")
                                     .c_str()),
                    err);
      }
      result.recipients.emplace_back(results[i].index, static_cast<spool::RecipientStatus>(status));
    }
    if (next_attempt_ms >= 0) result.next_attempt_ms = next_attempt_ms;
    result.count_attempt = count_attempt != 0;
    if (Status st = (*sp)->RecordAttempt(*parsed, result); !st.ok()) return Fail(st, err);
    return Succeed(err);
  });
}

int spool_hold(spool_t* s, const char* id, spool_reply_t* err) {
  return IdCall("spool_hold", s, id, err,
                [](spool::Spool& sp, const MessageId& m) { return sp.Hold(m); });
}

int spool_release(spool_t* s, const char* id, spool_reply_t* err) {
  return IdCall("spool_release", s, id, err,
                [](spool::Spool& sp, const MessageId& m) { return sp.Release(m); });
}

int spool_requeue(spool_t* s, const char* id, spool_reply_t* err) {
  return IdCall("spool_requeue", s, id, err,
                [](spool::Spool& sp, const MessageId& m) { return sp.Requeue(m); });
}

// ---- Scans -------------------------------------------------------------------------------

int64_t spool_now_ms(void) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int spool_scan_due(spool_t* s, const char* queue, int64_t now_ms, spool_id_t* ids, size_t capacity,
                   size_t* n_out, spool_reply_t* err) {
  static const char kFn[] = "spool_scan_due";
  return Guard(err, [&]() -> int {
    StatusOr<spool::Spool*> sp = SpoolOf(kFn, s);
    if (!sp.ok()) return Fail(sp.status(), err);
    if (n_out == nullptr) return Fail(Invalid(kFn, "n_out is NULL"), err);
    *n_out = 0;
    if (ids == nullptr && capacity != 0) return Fail(Invalid(kFn, "ids is NULL"), err);
    if (capacity == 0) return Succeed(err);
    StatusOr<std::vector<MessageId>> due =
        (*sp)->ScanDue(queue != nullptr ? queue : "default", now_ms, capacity);
    if (!due.ok()) return Fail(due.status(), err);
    const size_t n = std::min(capacity, due->size());
    for (size_t i = 0; i < n; ++i) WriteId((*due)[i], ids[i].text);
    *n_out = n;
    return Succeed(err);
  });
}

int spool_foreach(spool_t* s, spool_visit_cb visit, void* arg, spool_reply_t* err) {
  static const char kFn[] = "spool_foreach";
  return Guard(err, [&]() -> int {
    StatusOr<spool::Spool*> sp = SpoolOf(kFn, s);
    if (!sp.ok()) return Fail(sp.status(), err);
    if (visit == nullptr) return Fail(Invalid(kFn, "the visitor is NULL"), err);
    std::vector<std::max_align_t> buffer;
    Status st = (*sp)->ForEach([&](const spool::MessageInfo& info) {
      const size_t size = PackedSize(info);
      buffer.resize((size + sizeof(std::max_align_t) - 1) / sizeof(std::max_align_t));
      Pack(info, buffer.data());
      return visit(arg, reinterpret_cast<const spool_message_info_t*>(buffer.data())) == 0;
    });
    if (!st.ok()) return Fail(st, err);
    return Succeed(err);
  });
}

// ---- Admission, health, statistics -------------------------------------------------------

int spool_admission(spool_t* s, uint64_t expected_size, spool_reply_t* err) {
  static const char kFn[] = "spool_admission";
  return Guard(err, [&]() -> int {
    StatusOr<spool::Spool*> sp = SpoolOf(kFn, s);
    if (!sp.ok()) return Fail(sp.status(), err);
    if (Status st = (*sp)->Admission(expected_size); !st.ok()) return Fail(st, err);
    return Succeed(err);
  });
}

int spool_get_health(spool_t* s, spool_health_t* out, spool_reply_t* err) {
  static const char kFn[] = "spool_get_health";
  return Guard(err, [&]() -> int {
    StatusOr<spool::Spool*> sp = SpoolOf(kFn, s);
    if (!sp.ok()) return Fail(sp.status(), err);
    if (out == nullptr) return Fail(Invalid(kFn, "out is NULL"), err);
    const spool::Health h = (*sp)->GetHealth();
    *out = spool_health_t{};
    switch (h.state) {
      case spool::HealthState::kHealthy:
        out->state = SPOOL_HEALTHY;
        break;
      case spool::HealthState::kDegraded:
        out->state = SPOOL_DEGRADED;
        break;
      case spool::HealthState::kRefusing:
        out->state = SPOOL_REFUSING;
        break;
    }
    FillReply(h.status, &out->reply);
    out->shards = h.shards.size();
    for (const spool::ShardHealth& shard : h.shards) {
      if (!shard.status.ok()) ++out->shards_failed;
    }
    return Succeed(err);
  });
}

int spool_get_stats(spool_t* s, spool_stats_t* out, spool_reply_t* err) {
  static const char kFn[] = "spool_get_stats";
  return Guard(err, [&]() -> int {
    StatusOr<spool::Spool*> sp = SpoolOf(kFn, s);
    if (!sp.ok()) return Fail(sp.status(), err);
    if (out == nullptr) return Fail(Invalid(kFn, "out is NULL"), err);
    const spool::Stats st = (*sp)->GetStats();
    *out = spool_stats_t{};
    out->messages = st.messages;
    out->body_bytes = st.body_bytes;
    out->oldest_arrival_ms = st.oldest_arrival_ms;
    out->segments_live = st.segments_live;
    out->segments_free = st.segments_free;
    out->segment_bytes = st.segment_bytes;
    out->live_bytes = st.live_bytes;
    out->disk_free_bytes = st.disk_free_bytes;
    out->enqueued = st.enqueued;
    out->removed = st.removed;
    out->batches = st.batches;
    out->log_bytes_written = st.log_bytes_written;
    out->reclaimed_segments = st.reclaimed_segments;
    out->relocated_bytes = st.relocated_bytes;
    out->sync_p50_us = st.sync_p50_us;
    out->sync_p99_us = st.sync_p99_us;
    out->sync_p999_us = st.sync_p999_us;
    out->mean_batch_records = st.mean_batch_records;
    out->mean_batch_bytes = st.mean_batch_bytes;
    out->faults = st.faults;
    out->recoveries = st.recoveries;
    out->scrubbed_bytes = st.scrubbed_bytes;
    out->corrupt_found = st.corrupt_found;
    out->quarantined = st.quarantined;
    return Succeed(err);
  });
}

int spool_metrics(spool_t* s, int format, char** text_out, spool_reply_t* err) {
  static const char kFn[] = "spool_metrics";
  return Guard(err, [&]() -> int {
    StatusOr<spool::Spool*> sp = SpoolOf(kFn, s);
    if (!sp.ok()) return Fail(sp.status(), err);
    if (text_out == nullptr) return Fail(Invalid(kFn, "text_out is NULL"), err);
    *text_out = nullptr;
    StatusOr<std::string> text = Invalid(kFn, "format is not SPOOL_METRICS_PROMETHEUS or _JSON");
    if (format == SPOOL_METRICS_PROMETHEUS) text = spool::FormatPrometheus(**sp);
    if (format == SPOOL_METRICS_JSON) text = spool::FormatStatsJson(**sp);
    if (!text.ok()) return Fail(text.status(), err);
    char* out = static_cast<char*>(std::malloc(text->size() + 1));
    if (out == nullptr) return Fail(spool::InternalError("out of memory"), err);
    std::memcpy(out, text->c_str(), text->size() + 1);
    *text_out = out;
    return Succeed(err);
  });
}

}  // extern "C"
