// spool-ctl's text for people: the list table, a message, statistics, durations.

#include <chrono>
#include <cstdio>
#include <string>

#include "control/json.h"
#include "tools/ctl/internal.h"

namespace spool::ctl {
namespace {

constexpr int64_t kMsPerSecond = 1000;
constexpr int64_t kMsPerMinute = 60 * kMsPerSecond;
constexpr int64_t kMsPerHour = 60 * kMsPerMinute;
constexpr int64_t kMsPerDay = 24 * kMsPerHour;

// Column widths of `list`'s table. Longer values overflow their column.
constexpr int kQueueWidth = 10;
constexpr int kStateWidth = 7;
constexpr int kSizeWidth = 10;
constexpr int kAttemptsWidth = 5;
constexpr int kTimeWidth = 19;  // "2026-11-28 01:02:03"

using cli::Printable;

std::string PadRight(std::string s, size_t width) {
  if (s.size() < width) s.append(width - s.size(), ' ');
  return s;
}

std::string PadLeft(std::string s, size_t width) {
  if (s.size() < width) s.insert(0, width - s.size(), ' ');
  return s;
}

std::string SenderText(const std::string& sender) {
  return sender.empty() ? "<>" : Printable(sender);
}

// "2026-11-28 01:02:03": an ISO time without the milliseconds, for tables.
std::string ShortTime(int64_t unix_ms) {
  std::string t = FormatIsoTime(unix_ms);
  t.resize(kTimeWidth);
  t[10] = ' ';
  return t;
}

}  // namespace

void PrintError(std::string_view message) { cli::PrintError(kTool, message); }

void Out(std::string_view text) { std::fwrite(text.data(), 1, text.size(), stdout); }

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string FormatDuration(int64_t ms) {
  struct Unit {
    int64_t ms;
    char name;
  };
  static constexpr Unit kUnits[] = {
      {kMsPerDay, 'd'}, {kMsPerHour, 'h'}, {kMsPerMinute, 'm'}, {kMsPerSecond, 's'}};
  if (ms < kMsPerSecond) return "0s";
  std::string out;
  int shown = 0;
  for (const Unit& u : kUnits) {
    if (shown == 2) break;
    const int64_t n = ms / u.ms;
    if (n == 0 && shown == 0) continue;
    if (n > 0) out += std::to_string(n) + u.name;
    ms -= n * u.ms;
    ++shown;
  }
  return out;
}

std::string ListHeader() {
  return PadRight("ID", MessageId::kTextLength) + "  " + PadRight("QUEUE", kQueueWidth) + "  " +
         PadRight("STATE", kStateWidth) + "  " + PadLeft("SIZE", kSizeWidth) + "  " +
         PadRight("ARRIVAL (UTC)", kTimeWidth) + "  " + PadLeft("TRIES", kAttemptsWidth) +
         "  SENDER -> RECIPIENTS\n";
}

std::string ListLine(const MessageInfo& m) {
  std::string rcpts;
  for (size_t i = 0; i < m.envelope.recipients.size(); ++i) {
    if (i > 0) rcpts += ", ";
    rcpts += Printable(m.envelope.recipients[i]);
  }
  return PadRight(m.id.ToString(), MessageId::kTextLength) + "  " +
         PadRight(Printable(m.envelope.queue), kQueueWidth) + "  " +
         PadRight(std::string(MessageStateName(m.state)), kStateWidth) + "  " +
         PadLeft(std::to_string(m.size), kSizeWidth) + "  " + ShortTime(m.arrival_ms) + "  " +
         PadLeft(std::to_string(m.attempts), kAttemptsWidth) + "  " +
         SenderText(m.envelope.sender) + " -> " + rcpts + "\n";
}

std::string ShowText(const MessageInfo& m, int64_t now_ms) {
  std::string out;
  const auto field = [&](std::string_view name, const std::string& value) {
    out += PadRight(std::string(name) + ":", 15) + value + "\n";
  };
  field("id", m.id.ToString());
  field("queue", Printable(m.envelope.queue));
  field("state", std::string(MessageStateName(m.state)));
  field("size", std::to_string(m.size) + " bytes");
  field("arrival",
        FormatIsoTime(m.arrival_ms) + " (" + FormatDuration(now_ms - m.arrival_ms) + " ago)");
  std::string next = FormatIsoTime(m.next_attempt_ms);
  if (m.state == MessageState::kHeld) {
    next += " (held)";
  } else if (m.state == MessageState::kCorrupt) {
    next += " (quarantined)";
  } else if (m.next_attempt_ms <= now_ms) {
    next += " (due)";
  } else {
    next += " (in " + FormatDuration(m.next_attempt_ms - now_ms) + ")";
  }
  field("next attempt", next);
  field("attempts", std::to_string(m.attempts));
  field("sender", SenderText(m.envelope.sender));
  field("metadata",
        std::to_string(m.envelope.metadata.size()) + " bytes" +
            (m.envelope.metadata.empty() ? std::string()
                                         : ": \"" + Printable(m.envelope.metadata) + "\""));
  field("recipients", std::to_string(m.envelope.recipients.size()));
  for (size_t i = 0; i < m.envelope.recipients.size(); ++i) {
    const RecipientStatus st =
        i < m.recipient_status.size() ? m.recipient_status[i] : RecipientStatus::kPending;
    out += "  " + PadRight(std::string(RecipientStatusName(st)), 10) + " " +
           Printable(m.envelope.recipients[i]) + "\n";
  }
  return out;
}

std::string StatsText(const Metrics& m) {
  const Stats& s = m.stats;
  std::string out;
  const auto field = [&](std::string_view name, const std::string& value) {
    out += PadRight(std::string(name) + ":", 12) + value + "\n";
  };
  field("messages",
        std::to_string(s.messages) + " (" + std::to_string(s.body_bytes) + " body bytes)");
  if (s.oldest_arrival_ms != 0) {
    field("oldest", FormatIsoTime(s.oldest_arrival_ms) + " (" +
                        FormatDuration(m.now_ms - s.oldest_arrival_ms) + " ago)");
  } else {
    field("oldest", "-");
  }
  field("segments", std::to_string(s.segments_live) + " live, " + std::to_string(s.segments_free) +
                        " free, " + std::to_string(s.segment_bytes) + " bytes");
  field("live bytes", std::to_string(s.live_bytes));
  field("disk free", std::to_string(s.disk_free_bytes) + " bytes");
  if (!m.queues.empty()) {
    out += "\n" + PadRight("QUEUE", 20) + PadLeft("QUEUED", 10) + PadLeft("HELD", 10) +
           PadLeft("CORRUPT", 10) + PadLeft("BYTES", 14) + "\n";
    // m.queues holds every state of a queue, consecutively.
    for (size_t i = 0; i < m.queues.size();) {
      const std::string& queue = m.queues[i].queue;
      uint64_t counts[3] = {0, 0, 0};
      uint64_t bytes = 0;
      for (; i < m.queues.size() && m.queues[i].queue == queue; ++i) {
        const auto st = static_cast<size_t>(m.queues[i].state);
        if (st < 3) counts[st] += m.queues[i].messages;
        bytes += m.queues[i].bytes;
      }
      out += PadRight(Printable(queue), 20) + PadLeft(std::to_string(counts[0]), 10) +
             PadLeft(std::to_string(counts[1]), 10) + PadLeft(std::to_string(counts[2]), 10) +
             PadLeft(std::to_string(bytes), 14) + "\n";
    }
  }
  return out;
}

StatusOr<Metrics> MetricsFromJson(std::string_view json) {
  SPOOL_ASSIGN_OR_RETURN(control::JsonValue v, control::ParseJson(json));
  if (v.type != control::JsonValue::Type::kObject) {
    return InvalidArgumentError("stats: not a JSON object");
  }
  const auto number = [](const control::JsonValue& o, std::string_view name) -> uint64_t {
    const control::JsonValue* f = o.Find(name);
    return f != nullptr ? f->Uint().value_or(0) : 0;
  };
  Metrics m;
  m.now_ms = static_cast<int64_t>(number(v, "time_ms"));
  m.stats.messages = number(v, "messages");
  m.stats.body_bytes = number(v, "body_bytes");
  m.stats.oldest_arrival_ms = static_cast<int64_t>(number(v, "oldest_arrival_ms"));
  m.stats.segments_live = number(v, "segments_live");
  m.stats.segments_free = number(v, "segments_free");
  m.stats.segment_bytes = number(v, "segment_bytes");
  m.stats.live_bytes = number(v, "live_bytes");
  m.stats.disk_free_bytes = number(v, "disk_free_bytes");
  if (const control::JsonValue* queues = v.Find("queues"); queues != nullptr) {
    m.per_queue = true;
    for (const control::JsonValue& q : queues->items) {
      QueueStateCount c;
      if (const control::JsonValue* name = q.Find("queue")) c.queue = name->str;
      if (const control::JsonValue* state = q.Find("state")) {
        c.state = ParseMessageState(state->str).value_or(MessageState::kQueued);
      }
      c.messages = number(q, "messages");
      c.bytes = number(q, "bytes");
      m.queues.push_back(std::move(c));
    }
  }
  return m;
}

}  // namespace spool::ctl
