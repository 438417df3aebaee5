#include "spool/metrics.h"

#include <array>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <map>
#include <utility>

namespace spool {
namespace {

// Every MessageState, in the order the formatters list them.
constexpr std::array<MessageState, 3> kStates = {MessageState::kQueued, MessageState::kHeld,
                                                 MessageState::kCorrupt};

// The sync-latency quantiles that Stats carries, as Prometheus labels.
constexpr std::string_view kQuantile50 = "0.5";
constexpr std::string_view kQuantile99 = "0.99";
constexpr std::string_view kQuantile999 = "0.999";

constexpr double kMicrosPerSecond = 1e6;
constexpr double kMillisPerSecond = 1e3;

// The UTF-8 encoding of U+FFFD, which stands for each byte that is not valid UTF-8.
constexpr std::string_view kReplacement = "\xEF\xBF\xBD";

// The length of the valid UTF-8 sequence that starts at s[i], or 0 if there is none
// (a stray continuation byte, an overlong form, a surrogate, past U+10FFFF, cut short).
size_t Utf8SequenceLength(std::string_view s, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = byte(i);
  if (c < 0x80) return 1;
  size_t n;
  uint32_t cp;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
    cp = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    cp = c & 0x0F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (byte(i + k) & 0x3F);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
      (cp >= 0xD800 && cp <= 0xDFFF)) {
    return 0;
  }
  return n;
}

std::string FormatDouble(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  if (ec != std::errc()) return "NaN";  // cannot happen with 64 bytes
  return std::string(buf, end);
}

std::string_view HealthStateName(HealthState state) {
  switch (state) {
    case HealthState::kHealthy:
      return "healthy";
    case HealthState::kDegraded:
      return "degraded";
    case HealthState::kRefusing:
      return "refusing";
  }
  return "unknown";
}

double OldestAgeSeconds(const Metrics& m) {
  if (m.stats.oldest_arrival_ms == 0 || m.now_ms <= m.stats.oldest_arrival_ms) return 0;
  return static_cast<double>(m.now_ms - m.stats.oldest_arrival_ms) / kMillisPerSecond;
}

// ---- Prometheus ------------------------------------------------------------------------

// A label value: valid UTF-8 with \, " and newline escaped (exposition format 0.0.4).
std::string PromLabelValue(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (size_t i = 0; i < v.size();) {
    const size_t n = Utf8SequenceLength(v, i);
    if (n == 0) {
      out += kReplacement;
      ++i;
      continue;
    }
    if (n == 1) {
      switch (v[i]) {
        case '\\':
          out += "\\\\";
          break;
        case '"':
          out += "\\\"";
          break;
        case '\n':
          out += "\\n";
          break;
        default:
          out += v[i];
      }
    } else {
      out.append(v.substr(i, n));
    }
    i += n;
  }
  return out;
}

using Labels = std::vector<std::pair<std::string_view, std::string>>;

class PromWriter {
 public:
  // Starts a metric family. `help` must not hold a backslash or a newline.
  void Family(std::string_view name, std::string_view type, std::string_view help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += help;
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }
  void Sample(std::string_view name, const Labels& labels, std::string_view value) {
    out_ += name;
    if (!labels.empty()) {
      out_ += '{';
      for (size_t i = 0; i < labels.size(); ++i) {
        if (i > 0) out_ += ',';
        out_ += labels[i].first;
        out_ += "=\"";
        out_ += PromLabelValue(labels[i].second);
        out_ += '"';
      }
      out_ += '}';
    }
    out_ += ' ';
    out_ += value;
    out_ += '\n';
  }
  void Sample(std::string_view name, const Labels& labels, uint64_t value) {
    Sample(name, labels, std::to_string(value));
  }
  void Sample(std::string_view name, const Labels& labels, double value) {
    Sample(name, labels, FormatDouble(value));
  }
  // A family with one unlabelled sample.
  void Single(std::string_view name, std::string_view type, std::string_view help, uint64_t value) {
    Family(name, type, help);
    Sample(name, {}, value);
  }
  void Single(std::string_view name, std::string_view type, std::string_view help, double value) {
    Family(name, type, help);
    Sample(name, {}, value);
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

// ---- JSON ------------------------------------------------------------------------------

// Builds one JSON value; keeps track of the commas.
class JsonWriter {
 public:
  JsonWriter& BeginObject() {
    Value();
    out_ += '{';
    first_.push_back(true);
    return *this;
  }
  JsonWriter& EndObject() {
    out_ += '}';
    first_.pop_back();
    return *this;
  }
  JsonWriter& BeginArray() {
    Value();
    out_ += '[';
    first_.push_back(true);
    return *this;
  }
  JsonWriter& EndArray() {
    out_ += ']';
    first_.pop_back();
    return *this;
  }
  JsonWriter& Key(std::string_view key) {
    Value();
    out_ += JsonQuote(key);
    out_ += ':';
    after_key_ = true;
    return *this;
  }
  JsonWriter& String(std::string_view v) {
    Value();
    out_ += JsonQuote(v);
    return *this;
  }
  JsonWriter& Int(int64_t v) {
    Value();
    out_ += std::to_string(v);
    return *this;
  }
  JsonWriter& Uint(uint64_t v) {
    Value();
    out_ += std::to_string(v);
    return *this;
  }
  JsonWriter& Double(double v) {
    Value();
    out_ += std::isfinite(v) ? FormatDouble(v) : "null";
    return *this;
  }
  JsonWriter& Bool(bool v) {
    Value();
    out_ += v ? "true" : "false";
    return *this;
  }
  JsonWriter& Null() {
    Value();
    out_ += "null";
    return *this;
  }
  std::string Take() { return std::move(out_); }

 private:
  // Emits the comma before a value or key, unless it follows a key or opens a container.
  void Value() {
    if (after_key_) {
      after_key_ = false;
      return;
    }
    if (first_.empty()) return;
    if (!first_.back()) out_ += ',';
    first_.back() = false;
  }

  std::string out_;
  std::vector<bool> first_;
  bool after_key_ = false;
};

}  // namespace

std::string JsonQuote(std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size() + 2);
  out += '"';
  for (size_t i = 0; i < text.size();) {
    const size_t n = Utf8SequenceLength(text, i);
    if (n == 0) {
      out += kReplacement;
      ++i;
      continue;
    }
    if (n > 1) {
      out.append(text.substr(i, n));
      i += n;
      continue;
    }
    const unsigned char c = static_cast<unsigned char>(text[i++]);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        // Other control characters, and DEL, which a terminal would act on.
        if (c < 0x20 || c == 0x7F) {
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 0xF];
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
  return out;
}

std::string FormatIsoTime(int64_t unix_ms) {
  // Floor division, so that times before 1970 come out right too.
  int64_t secs = unix_ms / 1000;
  int64_t ms = unix_ms % 1000;
  if (ms < 0) {
    ms += 1000;
    --secs;
  }
  const std::time_t t = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}

std::string MessageInfoJson(const MessageInfo& info) {
  JsonWriter j;
  j.BeginObject();
  j.Key("id").String(info.id.ToString());
  j.Key("queue").String(info.envelope.queue);
  j.Key("sender").String(info.envelope.sender);
  j.Key("recipients").BeginArray();
  for (const std::string& r : info.envelope.recipients) j.String(r);
  j.EndArray();
  j.Key("recipient_status").BeginArray();
  for (RecipientStatus s : info.recipient_status) j.String(RecipientStatusName(s));
  j.EndArray();
  j.Key("size").Uint(info.size);
  j.Key("arrival").String(FormatIsoTime(info.arrival_ms));
  j.Key("arrival_ms").Int(info.arrival_ms);
  j.Key("next_attempt").String(FormatIsoTime(info.next_attempt_ms));
  j.Key("next_attempt_ms").Int(info.next_attempt_ms);
  j.Key("attempts").Uint(info.attempts);
  j.Key("state").String(MessageStateName(info.state));
  j.Key("metadata").String(info.envelope.metadata);
  j.EndObject();
  return j.Take();
}

StatusOr<Metrics> CollectMetrics(Spool& spool, const MetricsOptions& options) {
  Metrics m;
  m.writer = !spool.options().read_only;
  m.stats = spool.GetStats();
  if (m.writer) m.health = spool.GetHealth();
  if (options.per_queue) {
    std::map<std::string, std::array<QueueStateCount, kStates.size()>> by_queue;
    SPOOL_RETURN_IF_ERROR(spool.ForEach([&](const MessageInfo& info) {
      auto [it, added] = by_queue.try_emplace(info.envelope.queue);
      if (added) {
        for (size_t i = 0; i < kStates.size(); ++i) {
          it->second[i].queue = info.envelope.queue;
          it->second[i].state = kStates[i];
        }
      }
      for (QueueStateCount& c : it->second) {
        if (c.state != info.state) continue;
        ++c.messages;
        c.bytes += info.size;
      }
      return true;
    }));
    m.per_queue = true;
    for (auto& [queue, counts] : by_queue) {
      for (QueueStateCount& c : counts) m.queues.push_back(std::move(c));
    }
  }
  // Read the clock last: the oldest message's age must not come out negative.
  m.now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::system_clock::now().time_since_epoch())
                 .count();
  return m;
}

std::string FormatPrometheus(const Metrics& m) {
  const Stats& s = m.stats;
  PromWriter p;
  if (m.per_queue) {
    p.Family("spool_messages", "gauge", "Messages in the spool, by queue and state.");
    for (const QueueStateCount& c : m.queues) {
      p.Sample("spool_messages",
               {{"queue", c.queue}, {"state", std::string(MessageStateName(c.state))}}, c.messages);
    }
    p.Family("spool_message_bytes", "gauge", "Body bytes of the messages, by queue and state.");
    for (const QueueStateCount& c : m.queues) {
      p.Sample("spool_message_bytes",
               {{"queue", c.queue}, {"state", std::string(MessageStateName(c.state))}}, c.bytes);
    }
  }
  p.Single("spool_stored_messages", "gauge", "Messages in the spool.", s.messages);
  p.Single("spool_stored_body_bytes", "gauge", "Body bytes of the messages in the spool.",
           s.body_bytes);
  p.Single("spool_oldest_message_age_seconds", "gauge",
           "Age of the oldest message in the spool; 0 when it is empty.", OldestAgeSeconds(m));
  p.Family("spool_segments", "gauge", "Segment files, by state (live: holding records).");
  p.Sample("spool_segments", {{"state", "live"}}, s.segments_live);
  p.Sample("spool_segments", {{"state", "free"}}, s.segments_free);
  p.Single("spool_segment_bytes", "gauge", "Bytes of all segment files.", s.segment_bytes);
  p.Single("spool_live_bytes", "gauge", "Bytes of log records that live messages need.",
           s.live_bytes);
  p.Single("spool_disk_free_bytes", "gauge",
           "Free bytes on the filesystems of the spool directories.", s.disk_free_bytes);
  if (!m.writer) return p.Take();

  p.Single("spool_enqueued_total", "counter", "Messages enqueued since the spool was opened.",
           s.enqueued);
  p.Single("spool_removed_total", "counter", "Messages removed since the spool was opened.",
           s.removed);
  p.Single("spool_batches_total", "counter",
           "Commit batches written (one write and sync each) since the spool was opened.",
           s.batches);
  p.Single("spool_log_written_bytes_total", "counter",
           "Bytes written to the log since the spool was opened.", s.log_bytes_written);
  p.Single("spool_reclaimed_segments_total", "counter",
           "Segments reclaimed since the spool was opened.", s.reclaimed_segments);
  p.Single("spool_relocated_bytes_total", "counter",
           "Live bytes copied forward by reclamation since the spool was opened.",
           s.relocated_bytes);
  p.Single("spool_faults_total", "counter",
           "Shard faults latched (disk errors, full disk, index errors) since open.", s.faults);
  p.Single("spool_fault_recoveries_total", "counter",
           "Latched shard faults cleared by a passing re-probe since open.", s.recoveries);
  p.Single("spool_scrubbed_bytes_total", "counter",
           "Bytes of sealed segments re-verified by the scrubber since open.", s.scrubbed_bytes);
  p.Single("spool_corrupt_records_total", "counter",
           "Damaged records found by reads and the scrubber since open.", s.corrupt_found);
  p.Single("spool_quarantined_total", "counter", "Messages quarantined (state corrupt) since open.",
           s.quarantined);
  // The library keeps percentiles, not buckets: a summary without _sum and _count.
  p.Family("spool_fsync_latency_seconds", "summary",
           "Latency of the durable write and sync of a commit batch.");
  const auto quantile = [&](uint64_t us) {
    return s.batches == 0 ? std::nan("") : static_cast<double>(us) / kMicrosPerSecond;
  };
  p.Sample("spool_fsync_latency_seconds", {{"quantile", std::string(kQuantile50)}},
           quantile(s.sync_p50_us));
  p.Sample("spool_fsync_latency_seconds", {{"quantile", std::string(kQuantile99)}},
           quantile(s.sync_p99_us));
  p.Sample("spool_fsync_latency_seconds", {{"quantile", std::string(kQuantile999)}},
           quantile(s.sync_p999_us));
  p.Single("spool_batch_records_mean", "gauge", "Mean records per commit batch since open.",
           s.mean_batch_records);
  p.Single("spool_batch_bytes_mean", "gauge", "Mean bytes per commit batch since open.",
           s.mean_batch_bytes);
  p.Family("spool_health_state", "gauge",
           "1 for the spool's health state (healthy, degraded: some shards refuse, refusing).");
  for (HealthState st : {HealthState::kHealthy, HealthState::kDegraded, HealthState::kRefusing}) {
    p.Sample("spool_health_state", {{"state", std::string(HealthStateName(st))}},
             uint64_t{m.health.state == st ? 1u : 0u});
  }
  p.Family("spool_shard_healthy", "gauge",
           "1 if the shard (spool directory) accepts mail, 0 if it has a latched fault.");
  for (const ShardHealth& sh : m.health.shards) {
    p.Sample("spool_shard_healthy", {{"dir", sh.dir}}, uint64_t{sh.status.ok() ? 1u : 0u});
  }
  return p.Take();
}

std::string FormatStatsJson(const Metrics& m) {
  const Stats& s = m.stats;
  JsonWriter j;
  j.BeginObject();
  j.Key("time").String(FormatIsoTime(m.now_ms));
  j.Key("time_ms").Int(m.now_ms);
  j.Key("read_only").Bool(!m.writer);
  j.Key("messages").Uint(s.messages);
  j.Key("body_bytes").Uint(s.body_bytes);
  if (s.oldest_arrival_ms != 0) {
    j.Key("oldest_arrival").String(FormatIsoTime(s.oldest_arrival_ms));
    j.Key("oldest_arrival_ms").Int(s.oldest_arrival_ms);
  } else {
    j.Key("oldest_arrival").Null();
    j.Key("oldest_arrival_ms").Null();
  }
  j.Key("oldest_message_age_seconds").Double(OldestAgeSeconds(m));
  j.Key("segments_live").Uint(s.segments_live);
  j.Key("segments_free").Uint(s.segments_free);
  j.Key("segment_bytes").Uint(s.segment_bytes);
  j.Key("live_bytes").Uint(s.live_bytes);
  j.Key("disk_free_bytes").Uint(s.disk_free_bytes);
  if (m.per_queue) {
    j.Key("queues").BeginArray();
    for (const QueueStateCount& c : m.queues) {
      j.BeginObject();
      j.Key("queue").String(c.queue);
      j.Key("state").String(MessageStateName(c.state));
      j.Key("messages").Uint(c.messages);
      j.Key("bytes").Uint(c.bytes);
      j.EndObject();
    }
    j.EndArray();
  }
  if (m.writer) {
    j.Key("enqueued").Uint(s.enqueued);
    j.Key("removed").Uint(s.removed);
    j.Key("batches").Uint(s.batches);
    j.Key("log_bytes_written").Uint(s.log_bytes_written);
    j.Key("reclaimed_segments").Uint(s.reclaimed_segments);
    j.Key("relocated_bytes").Uint(s.relocated_bytes);
    j.Key("sync_p50_us").Uint(s.sync_p50_us);
    j.Key("sync_p99_us").Uint(s.sync_p99_us);
    j.Key("sync_p999_us").Uint(s.sync_p999_us);
    j.Key("mean_batch_records").Double(s.mean_batch_records);
    j.Key("mean_batch_bytes").Double(s.mean_batch_bytes);
    j.Key("faults").Uint(s.faults);
    j.Key("recoveries").Uint(s.recoveries);
    j.Key("scrubbed_bytes").Uint(s.scrubbed_bytes);
    j.Key("corrupt_found").Uint(s.corrupt_found);
    j.Key("quarantined").Uint(s.quarantined);
    j.Key("health").BeginObject();
    j.Key("state").String(HealthStateName(m.health.state));
    j.Key("status").String(m.health.status.ToString());
    j.Key("shards").BeginArray();
    for (const ShardHealth& sh : m.health.shards) {
      j.BeginObject();
      j.Key("dir").String(sh.dir);
      j.Key("healthy").Bool(sh.status.ok());
      j.Key("status").String(sh.status.ToString());
      j.EndObject();
    }
    j.EndArray();
    j.EndObject();
  }
  j.EndObject();
  return j.Take();
}

StatusOr<std::string> FormatPrometheus(Spool& spool, const MetricsOptions& options) {
  SPOOL_ASSIGN_OR_RETURN(Metrics m, CollectMetrics(spool, options));
  return FormatPrometheus(m);
}

StatusOr<std::string> FormatStatsJson(Spool& spool, const MetricsOptions& options) {
  SPOOL_ASSIGN_OR_RETURN(Metrics m, CollectMetrics(spool, options));
  return FormatStatsJson(m);
}

}  // namespace spool
