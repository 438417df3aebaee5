// RunControlRequest (spool/control.h): one request of the control channel against a Spool,
// through its public API. The protocol is docs/operations.md, "The control channel".

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "control/json.h"
#include "spool/control.h"
#include "spool/metrics.h"
#include "spool/spool.h"

namespace spool {
namespace {

using control::JsonValue;

// Removals of one group in flight at once: enough to fill group commits, few enough that
// the MTA's own enqueues still find room in the commit queue.
constexpr size_t kRemoveWindow = 64;
// Threads that apply the synchronous state changes (hold, release, requeue) of a group:
// each change waits for its group commit, so several share each commit.
constexpr size_t kStateChangeThreads = 8;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string Quote(std::string_view s) { return JsonQuote(s); }

std::string ErrorResult(const Status& s) {
  return R"({"type":"result","ok":false,"code":)" + Quote(CodeName(s.code())) + R"(,"message":)" +
         Quote(s.message()) + "}";
}

StatusOr<MessageFilter> ParseFilter(const JsonValue& v) {
  if (v.type != JsonValue::Type::kObject) return InvalidArgumentError("filter is not an object");
  MessageFilter f;
  for (const auto& [name, value] : v.members) {
    if (name == "older_than_ms") {
      std::optional<int64_t> ms = value.Int();
      if (!ms || *ms < 0) return InvalidArgumentError("filter.older_than_ms: not a duration");
      f.older_than_ms = *ms;
      continue;
    }
    if (value.type != JsonValue::Type::kString) {
      return InvalidArgumentError("filter." + name + ": not a string");
    }
    if (name == "queue") {
      f.queue = value.str;
    } else if (name == "state") {
      f.state = ParseMessageState(value.str);
      if (!f.state) {
        return InvalidArgumentError("filter.state: unknown state '" + value.str +
                                    "' (queued, held, corrupt)");
      }
    } else if (name == "sender") {
      f.sender = value.str;
    } else if (name == "recipient") {
      f.recipient = value.str;
    } else {
      return InvalidArgumentError("filter: unknown condition '" + name + "'");
    }
  }
  return f;
}

// One request's state: its spool, its output and whether the peer still listens.
class Request {
 public:
  Request(Spool& spool, const std::function<bool(std::string_view)>& emit)
      : spool_(spool), emit_(emit) {}

  void Run(std::string_view text) {
    StatusOr<JsonValue> parsed = control::ParseJson(text);
    if (!parsed.ok()) return Finish(ErrorResult(parsed.status()));
    const JsonValue& req = *parsed;
    const JsonValue* op = req.Find("op");
    if (op == nullptr || op->type != JsonValue::Type::kString) {
      return Finish(ErrorResult(InvalidArgumentError("a request needs \"op\"")));
    }
    op_ = op->str;
    if (op_ == "hold" || op_ == "release" || op_ == "requeue" || op_ == "delete") return Bulk(req);
    if (op_ == "list") return List(req);
    if (op_ == "show") return Show(req);
    if (op_ == "stats") return Stats(req);
    Finish(ErrorResult(InvalidArgumentError(
        "unknown op '" + op_ + "' (hold, release, requeue, delete, list, show, stats)")));
  }

 private:
  bool Emit(const std::string& line) {
    if (!alive_) return false;
    alive_ = emit_(line);
    return alive_;
  }
  void Finish(const std::string& line) { Emit(line); }

  // The ids a bulk request names, or the messages its filter matches now.
  Status Targets(const JsonValue& req, std::vector<MessageId>* ids, size_t* bad_ids) {
    const JsonValue* list = req.Find("ids");
    const JsonValue* filter = req.Find("filter");
    if ((list == nullptr) == (filter == nullptr)) {
      return InvalidArgumentError("a " + op_ + " request needs either \"ids\" or \"filter\"");
    }
    if (list != nullptr) {
      if (list->type != JsonValue::Type::kArray) return InvalidArgumentError("ids: not an array");
      for (const JsonValue& v : list->items) {
        StatusOr<MessageId> id = v.type == JsonValue::Type::kString
                                     ? MessageId::Parse(v.str)
                                     : InvalidArgumentError("an id is not a string");
        if (!id.ok()) {
          ++*bad_ids;
          Emit(R"({"type":"error","id":)" + Quote(v.str) + R"(,"code":"invalid_argument",)" +
               R"("message":)" + Quote(id.status().message()) + "}");
          continue;
        }
        ids->push_back(*id);
      }
      return Status::Ok();
    }
    SPOOL_ASSIGN_OR_RETURN(MessageFilter f, ParseFilter(*filter));
    const int64_t now = NowMs();
    SPOOL_RETURN_IF_ERROR(spool_.ForEach([&](const MessageInfo& m) {
      if (f.Matches(m, now)) ids->push_back(m.id);
      return true;
    }));
    if (ids->empty()) return NotFoundError("no message matches the filter " + f.ToJson());
    return Status::Ok();
  }

  void ReportFailure(const MessageId& id, const Status& s) {
    Emit(R"({"type":"error","id":")" + id.ToString() + R"(","code":)" + Quote(CodeName(s.code())) +
         R"(,"message":)" + Quote(s.message()) + "}");
  }

  // Applies the request's change to `group`; the failures in *failures, as (position in
  // the group, status).
  void ApplyGroup(std::span<const MessageId> group,
                  std::vector<std::pair<size_t, Status>>* failures) {
    std::mutex mu;
    if (op_ == "delete") {
      // The asynchronous removal, a window at a time: this thread never waits for a group
      // commit per message, and never floods the commit queue.
      std::condition_variable cv;
      size_t in_flight = 0;
      for (size_t i = 0; i < group.size(); ++i) {
        {
          std::unique_lock l(mu);
          cv.wait(l, [&] { return in_flight < kRemoveWindow; });
          ++in_flight;
        }
        spool_.RemoveAsync(group[i], [&, i](const Status& s) {
          std::lock_guard l(mu);
          if (!s.ok()) failures->emplace_back(i, s);
          --in_flight;
          cv.notify_all();
        });
      }
      std::unique_lock l(mu);
      cv.wait(l, [&] { return in_flight == 0; });
      return;
    }
    Status (Spool::*change)(const MessageId&) = op_ == "hold"      ? &Spool::Hold
                                                : op_ == "release" ? &Spool::Release
                                                                   : &Spool::Requeue;
    std::atomic<size_t> next{0};
    const auto work = [&] {
      for (size_t i; (i = next.fetch_add(1)) < group.size();) {
        Status s = (spool_.*change)(group[i]);
        if (!s.ok()) {
          std::lock_guard l(mu);
          failures->emplace_back(i, std::move(s));
        }
      }
    };
    std::vector<std::thread> threads;
    const size_t n = std::min(kStateChangeThreads, group.size());
    for (size_t t = 1; t < n; ++t) threads.emplace_back(work);
    work();
    for (std::thread& t : threads) t.join();
  }

  void Bulk(const JsonValue& req) {
    const JsonValue* dry = req.Find("dry_run");
    const bool dry_run = dry != nullptr && dry->type == JsonValue::Type::kBool && dry->boolean;
    std::vector<MessageId> ids;
    size_t failed = 0;
    if (Status s = Targets(req, &ids, &failed); !s.ok()) return Finish(ErrorResult(s));
    const size_t total = ids.size() + failed;
    if (dry_run) {
      // Counts what the request would change now: the ids that name a message.
      size_t matched = 0;
      for (const MessageId& id : ids) {
        StatusOr<MessageInfo> m = spool_.Get(id);
        if (m.ok()) {
          ++matched;
        } else {
          ReportFailure(id, m.status());
          ++failed;
        }
      }
      return Finish(R"({"type":"result","ok":true,"op":)" + Quote(op_) +
                    R"(,"dry_run":true,"matched":)" + std::to_string(matched) + R"(,"failed":)" +
                    std::to_string(failed) + R"(,"total":)" + std::to_string(total) + "}");
    }
    size_t done = 0;
    for (size_t start = 0; start < ids.size(); start += kControlGroupSize) {
      const size_t n = std::min(kControlGroupSize, ids.size() - start);
      std::vector<std::pair<size_t, Status>> failures;
      ApplyGroup(std::span(ids).subspan(start, n), &failures);
      std::sort(failures.begin(), failures.end(),
                [](const auto& a, const auto& b) { return a.first < b.first; });
      for (const auto& [i, s] : failures) ReportFailure(ids[start + i], s);
      failed += failures.size();
      done += n - failures.size();
      // Everything counted in `done` is durable: each change returned (or called back)
      // only once its record was.
      if (!Emit(R"({"type":"progress","op":)" + Quote(op_) + R"(,"done":)" + std::to_string(done) +
                R"(,"failed":)" + std::to_string(failed) + R"(,"total":)" + std::to_string(total) +
                "}")) {
        return;  // the peer is gone: stop after the group that was under way
      }
    }
    Finish(R"({"type":"result","ok":true,"op":)" + Quote(op_) + R"(,"dry_run":false,"done":)" +
           std::to_string(done) + R"(,"failed":)" + std::to_string(failed) + R"(,"total":)" +
           std::to_string(total) + "}");
  }

  void List(const JsonValue& req) {
    MessageFilter f;
    if (const JsonValue* filter = req.Find("filter"); filter != nullptr) {
      StatusOr<MessageFilter> parsed = ParseFilter(*filter);
      if (!parsed.ok()) return Finish(ErrorResult(parsed.status()));
      f = *parsed;
    }
    const int64_t now = NowMs();
    uint64_t matched = 0;
    Status s = spool_.ForEach([&](const MessageInfo& m) {
      if (!f.Matches(m, now)) return true;
      ++matched;
      return Emit(R"({"type":"message","message":)" + MessageInfoJson(m) + "}");
    });
    if (!s.ok()) return Finish(ErrorResult(s));
    Finish(R"({"type":"result","ok":true,"op":"list","matched":)" + std::to_string(matched) + "}");
  }

  void Show(const JsonValue& req) {
    const JsonValue* text = req.Find("id");
    if (text == nullptr || text->type != JsonValue::Type::kString) {
      return Finish(ErrorResult(InvalidArgumentError("a show request needs \"id\"")));
    }
    StatusOr<MessageId> id = MessageId::Parse(text->str);
    if (!id.ok()) return Finish(ErrorResult(id.status()));
    StatusOr<MessageInfo> m = spool_.Get(*id);
    if (!m.ok()) return Finish(ErrorResult(m.status()));
    Finish(R"({"type":"result","ok":true,"op":"show","message":)" + MessageInfoJson(*m) + "}");
  }

  void Stats(const JsonValue& req) {
    const JsonValue* format = req.Find("format");
    const std::string name = format != nullptr ? format->str : "json";
    if (name != "json" && name != "prometheus") {
      return Finish(ErrorResult(
          InvalidArgumentError("stats: unknown format '" + name + "' (json, prometheus)")));
    }
    StatusOr<Metrics> m = CollectMetrics(spool_);
    if (!m.ok()) return Finish(ErrorResult(m.status()));
    if (name == "json") {
      return Finish(R"({"type":"result","ok":true,"op":"stats","stats":)" + FormatStatsJson(*m) +
                    "}");
    }
    Finish(R"({"type":"result","ok":true,"op":"stats","prometheus":)" +
           Quote(FormatPrometheus(*m)) + "}");
  }

  Spool& spool_;
  const std::function<bool(std::string_view)>& emit_;
  bool alive_ = true;
  std::string op_;
};

}  // namespace

void RunControlRequest(Spool& spool, std::string_view request,
                       const std::function<bool(std::string_view line)>& emit) {
  Request(spool, emit).Run(request);
}

StatusOr<MessageInfo> ParseMessageInfoJson(std::string_view json) {
  SPOOL_ASSIGN_OR_RETURN(JsonValue v, control::ParseJson(json));
  const auto bad = [](std::string_view what) {
    return InvalidArgumentError("not a message object: " + std::string(what));
  };
  const auto str = [&](std::string_view name) -> const std::string* {
    const JsonValue* f = v.Find(name);
    return f != nullptr && f->type == JsonValue::Type::kString ? &f->str : nullptr;
  };
  MessageInfo m;
  const std::string* id = str("id");
  if (id == nullptr) return bad("no id");
  SPOOL_ASSIGN_OR_RETURN(m.id, MessageId::Parse(*id));
  if (const std::string* s = str("queue")) m.envelope.queue = *s;
  if (const std::string* s = str("sender")) m.envelope.sender = *s;
  if (const std::string* s = str("metadata")) m.envelope.metadata = *s;
  if (const JsonValue* r = v.Find("recipients"); r != nullptr) {
    for (const JsonValue& item : r->items) m.envelope.recipients.push_back(item.str);
  }
  if (const JsonValue* r = v.Find("recipient_status"); r != nullptr) {
    for (const JsonValue& item : r->items) {
      RecipientStatus st = RecipientStatus::kPending;
      for (RecipientStatus c : {RecipientStatus::kPending, RecipientStatus::kDelivered,
                                RecipientStatus::kFailed, RecipientStatus::kDeferred}) {
        if (RecipientStatusName(c) == item.str) st = c;
      }
      m.recipient_status.push_back(st);
    }
  }
  const std::string* state = str("state");
  std::optional<MessageState> st = state ? ParseMessageState(*state) : std::nullopt;
  if (!st) return bad("no state");
  m.state = *st;
  const auto number = [&](std::string_view name) -> int64_t {
    const JsonValue* f = v.Find(name);
    return f != nullptr ? f->Int().value_or(0) : 0;
  };
  m.size = static_cast<uint64_t>(number("size"));
  m.arrival_ms = number("arrival_ms");
  m.next_attempt_ms = number("next_attempt_ms");
  m.attempts = static_cast<uint32_t>(number("attempts"));
  return m;
}

}  // namespace spool
