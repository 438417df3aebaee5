// spool-ctl's commands: their options and help, and what each runs once the spool is
// reached (tools/ctl/internal.h).

#include <unistd.h>

#include <algorithm>
#include <iostream>
#include <string>
#include <vector>

#include "control/json.h"
#include "io/file_system.h"
#include "tools/ctl/ctl.h"
#include "tools/ctl/internal.h"

namespace spool::ctl {
namespace {

using cli::Printable;
using control::JsonValue;

// The error of one operation on one message: "hold ID: no message ID".
void PrintOpError(const Context& ctx, std::string_view id, std::string_view message) {
  PrintError(ctx.command + " " + Printable(id) + ": " + std::string(message));
}

// Parses `text` as an id, or reports why not (an operation failure, exit 1).
std::optional<MessageId> ParseIdOrReport(const Context& ctx, std::string_view text) {
  StatusOr<MessageId> id = MessageId::Parse(text);
  if (!id.ok()) {
    PrintError(ctx.command + ": " + Printable(id.status().message()));
    return std::nullopt;
  }
  return *id;
}

// The member `name` of a response line, as a string ("" if absent).
std::string Member(const JsonValue& v, std::string_view name) {
  const JsonValue* f = v.Find(name);
  return f == nullptr ? "" : f->str;
}
uint64_t Count(const JsonValue& v, std::string_view name) {
  const JsonValue* f = v.Find(name);
  return f == nullptr ? 0 : f->Uint().value_or(0);
}

// A response line, parsed; an unparsable one is reported and null.
std::optional<JsonValue> ParseLine(const Context& ctx, std::string_view line) {
  StatusOr<JsonValue> v = control::ParseJson(line);
  if (!v.ok() || v->type != JsonValue::Type::kObject) {
    PrintError(ctx.command +
               ": unexpected answer from the spool: " + Printable(line.substr(0, 200)));
    return std::nullopt;
  }
  return std::move(v).value();
}

// The filter options of list and the bulk commands, into *f. Returns false with a usage
// error in *error.
bool ParseFilterArgs(const Args& a, MessageFilter* f, std::string* error) {
  f->queue = a.Value("--queue");
  if (auto s = a.Value("--state")) {
    f->state = ParseMessageState(*s);
    if (!f->state) {
      *error = "unknown state '" + Printable(*s) + "' (queued, held, corrupt)";
      return false;
    }
  }
  if (auto d = a.Value("--older-than")) {
    int64_t ms = 0;
    if (!ParseDuration(*d, &ms)) {
      *error = "bad duration '" + Printable(*d) + "' (like 90s, 30m, 2h, 3d, 1h30m)";
      return false;
    }
    f->older_than_ms = ms;
  }
  f->sender = a.Value("--sender");
  f->recipient = a.Value("--recipient");
  return true;
}

const std::vector<OptionSpec> kFilterOptions = {{"--queue", true},
                                                {"--state", true},
                                                {"--older-than", true},
                                                {"--sender", true},
                                                {"--recipient", true}};

constexpr char kFilterHelp[] =
    R"(  --queue Q              messages of queue Q
  --state STATE          queued, held or corrupt (quarantined by spool-fsck --repair)
  --older-than DURATION  arrived at least DURATION ago: 90s, 30m, 2h, 3d, 1w, 1h30m
  --sender SUBSTR        sender contains SUBSTR (ASCII case-insensitive); '<>' is the
                         null sender (bounces)
  --recipient SUBSTR     some recipient contains SUBSTR (ASCII case-insensitive)
)";

// ---- list ------------------------------------------------------------------------------

Runner PlanList(const Args& a, std::string* error) {
  if (!a.positional.empty()) {
    *error = "unexpected argument '" + Printable(a.positional[0]) + "'";
    return nullptr;
  }
  MessageFilter f;
  if (!ParseFilterArgs(a, &f, error)) return nullptr;
  const bool json = a.Has("--json");
  const bool ids = a.Has("--ids");
  if (json && ids) {
    *error = "--json and --ids exclude each other";
    return nullptr;
  }
  return [f, json, ids](Context& ctx) {
    if (!json && !ids) Out(ListHeader());
    const auto print = [&](const MessageInfo& m, std::string_view raw_json) {
      if (json) {
        Out(std::string(raw_json) + "\n");
      } else if (ids) {
        Out(m.id.ToString() + "\n");
      } else {
        Out(ListLine(m));
      }
    };
    if (Spool* spool = ctx.target->spool(); spool != nullptr) {
      Status s = spool->ForEach([&](const MessageInfo& m) {
        if (f.Matches(m, ctx.now_ms)) print(m, json ? MessageInfoJson(m) : "");
        return true;
      });
      if (!s.ok()) {
        PrintError("list: " + s.ToString());
        return kExitFailed;
      }
      return kExitOk;
    }
    int code = kExitOk;
    StatusOr<std::string> result =
        ctx.target->Call(R"({"op":"list","filter":)" + f.ToJson() + "}", [&](std::string_view l) {
          std::optional<JsonValue> v = ParseLine(ctx, l);
          const JsonValue* message = v ? v->Find("message") : nullptr;
          StatusOr<MessageInfo> m = message != nullptr
                                        ? ParseMessageInfoJson(message->raw)
                                        : InvalidArgumentError("no message in the line");
          if (!m.ok()) {
            code = kExitFailed;
            return;
          }
          print(*m, message->raw);
        });
    if (!result.ok()) {
      PrintError("list: " + std::string(result.status().message()));
      return kExitFailed;
    }
    std::optional<JsonValue> v = ParseLine(ctx, *result);
    if (!v) return kExitFailed;
    if (const JsonValue* ok = v->Find("ok"); ok == nullptr || !ok->boolean) {
      PrintError("list: " + Member(*v, "message"));
      return kExitFailed;
    }
    return code;
  };
}

// ---- show, cat, export -----------------------------------------------------------------

// Checks that a command got exactly one positional argument, a message id.
bool OneId(const Args& a, std::string* error) {
  if (a.positional.size() == 1) return true;
  *error = a.positional.empty() ? "a message id is needed" : "one message id only";
  return false;
}

Runner PlanShow(const Args& a, std::string* error) {
  if (!OneId(a, error)) return nullptr;
  const std::string text = a.positional[0];
  const bool json = a.Has("--json");
  return [text, json](Context& ctx) {
    std::optional<MessageId> id = ParseIdOrReport(ctx, text);
    if (!id) return kExitFailed;
    if (Spool* spool = ctx.target->spool(); spool != nullptr) {
      StatusOr<MessageInfo> m = spool->Get(*id);
      if (!m.ok()) {
        PrintOpError(ctx, text, m.status().message());
        return kExitFailed;
      }
      Out(json ? MessageInfoJson(*m) + "\n" : ShowText(*m, ctx.now_ms));
      return kExitOk;
    }
    StatusOr<std::string> result =
        ctx.target->Call(R"({"op":"show","id":")" + id->ToString() + "\"}", nullptr);
    if (!result.ok()) {
      PrintOpError(ctx, text, result.status().message());
      return kExitFailed;
    }
    std::optional<JsonValue> v = ParseLine(ctx, *result);
    if (!v) return kExitFailed;
    const JsonValue* message = v->Find("message");
    StatusOr<MessageInfo> m = message != nullptr ? ParseMessageInfoJson(message->raw)
                                                 : InvalidArgumentError(Member(*v, "message"));
    if (!m.ok()) {
      PrintOpError(ctx, text, m.status().message());
      return kExitFailed;
    }
    Out(json ? std::string(message->raw) + "\n" : ShowText(*m, ctx.now_ms));
    return kExitOk;
  };
}

Runner PlanCat(const Args& a, std::string* error) {
  if (!OneId(a, error)) return nullptr;
  const std::string text = a.positional[0];
  return [text](Context& ctx) {
    std::optional<MessageId> id = ParseIdOrReport(ctx, text);
    if (!id) return kExitFailed;
    // The whole body, verified, before the first byte goes out: a body that turns out
    // corrupt half-way must not leave half a message on stdout.
    StatusOr<std::string> body = ctx.target->spool()->ReadBody(*id);
    if (!body.ok()) {
      PrintOpError(ctx, text, body.status().message());
      return kExitFailed;
    }
    Out(*body);
    return kExitOk;
  };
}

// The ids of `args`, reading those of a "-" from stdin (one per line; blank lines and
// '#' comments skipped), in order.
std::vector<std::string> IdTexts(const std::vector<std::string>& args) {
  std::vector<std::string> out;
  for (const std::string& arg : args) {
    if (arg != "-") {
      out.push_back(arg);
      continue;
    }
    std::string line;
    while (std::getline(std::cin, line)) {
      const size_t b = line.find_first_not_of(" \t\r");
      if (b == std::string::npos || line[b] == '#') continue;
      const size_t e = line.find_last_not_of(" \t\r");
      out.push_back(line.substr(b, e - b + 1));
    }
  }
  return out;
}

// Checks the arguments of a command that takes many ids ("-" for stdin).
bool ManyIds(const Args& a, std::string* error) {
  if (a.positional.empty()) {
    *error = "no message ids (give ids, or '-' to read them from stdin)";
    return false;
  }
  if (std::count(a.positional.begin(), a.positional.end(), "-") > 1) {
    *error = "'-' (stdin) given twice";
    return false;
  }
  return true;
}

// Reports the summary of a command over many ids; the exit code.
int Summary(const Context& ctx, uint64_t failed, uint64_t total) {
  if (failed == 0) return kExitOk;
  PrintError(ctx.command + ": " + std::to_string(failed) + " of " + std::to_string(total) +
             " failed");
  return kExitFailed;
}

// Writes the body of `id`, verified, to dir/ID: first to a hidden temporary file that is
// then renamed, so that dir/ID only ever holds a whole verified body. With `sync` the file
// and the rename are durable before it returns.
Status ExportOne(io::FileSystem& fs, Spool& spool, const std::string& dir, const MessageId& id,
                 bool sync) {
  SPOOL_ASSIGN_OR_RETURN(std::string body, spool.ReadBody(id));
  const std::string name = id.ToString();
  const std::string tmp = dir + "/." + name + ".tmp";  // never a message id: no clash
  fs.Unlink(tmp).IgnoreError();  // the leftover of an interrupted export, usually nothing
  Status s = [&]() -> Status {
    SPOOL_ASSIGN_OR_RETURN(std::unique_ptr<io::File> f,
                           fs.Open(tmp, io::OpenOptions{.create = true, .exclusive = true}));
    const io::WriteOp op{0, body.data(), body.size()};
    const size_t ops = body.empty() ? 0 : 1;
    return fs.WriteBatch(*f, {&op, ops}, sync ? io::Sync::kData : io::Sync::kNone);
  }();
  if (s.ok()) s = fs.Rename(tmp, dir + "/" + name);
  if (!s.ok()) {
    fs.Unlink(tmp).IgnoreError();  // the failure reported is the first one
    return s;
  }
  return sync ? fs.SyncDir(dir) : Status::Ok();
}

Runner PlanExport(const Args& a, std::string* error) {
  const std::string dir = a.Value("--dir").value_or("");
  if (dir.empty()) {
    *error = "--dir OUT is needed (the directory for the files)";
    return nullptr;
  }
  if (!ManyIds(a, error)) return nullptr;
  const bool sync = a.Has("--sync");
  return [args = a.positional, dir, sync](Context& ctx) {
    // Plain pwrite and rename: no ring to set up for a tool's few files.
    StatusOr<std::unique_ptr<io::FileSystem>> fs = io::NewFileSystem(io::Backend::kPosix);
    Status s = fs.status();
    if (s.ok()) s = (*fs)->CreateDir(dir);
    if (!s.ok()) {
      PrintError(ctx.command + ": " + Printable(s.message()));
      return kExitFailed;
    }
    uint64_t failed = 0;
    const std::vector<std::string> texts = IdTexts(args);
    for (const std::string& text : texts) {
      std::optional<MessageId> id = ParseIdOrReport(ctx, text);
      if (!id) {
        ++failed;
        continue;
      }
      s = ExportOne(**fs, *ctx.target->spool(), dir, *id, sync);
      if (!s.ok()) {
        PrintOpError(ctx, text, s.message());
        ++failed;
      }
    }
    return Summary(ctx, failed, texts.size());
  };
}

// ---- hold, release, requeue, delete ----------------------------------------------------

Runner PlanBulk(const Args& a, std::string* error) {
  MessageFilter f;
  if (!ParseFilterArgs(a, &f, error)) return nullptr;
  const bool all = a.Has("--all");
  const bool by_filter = all || !f.empty();
  if (by_filter && !a.positional.empty()) {
    *error = "give message ids or a filter (" + std::string(all ? "--all" : "--queue ...") +
             "), not both";
    return nullptr;
  }
  if (all && !f.empty()) {
    *error = "--all and a filter exclude each other";
    return nullptr;
  }
  if (!by_filter && !ManyIds(a, error)) {
    *error =
        "no message ids (give ids, '-' to read them from stdin, or a filter: --queue, "
        "--state, --older-than, --sender, --recipient; --all for every message)";
    return nullptr;
  }
  const bool dry_run = a.Has("--dry-run");
  return [args = a.positional, f, by_filter, dry_run](Context& ctx) {
    uint64_t bad = 0;
    std::string request =
        R"({"op":")" + ctx.command + R"(","dry_run":)" + (dry_run ? "true" : "false");
    if (by_filter) {
      request += R"(,"filter":)" + f.ToJson() + "}";
    } else {
      std::string ids;
      for (const std::string& text : IdTexts(args)) {
        std::optional<MessageId> id = ParseIdOrReport(ctx, text);
        if (!id) {
          ++bad;
          continue;
        }
        ids += (ids.empty() ? "\"" : ",\"") + id->ToString() + "\"";
      }
      if (ids.empty()) return Summary(ctx, bad, bad);
      request += R"(,"ids":[)" + ids + "]}";
    }
    const bool tty = ::isatty(STDERR_FILENO) != 0;
    bool drawn = false;
    uint64_t done = 0;
    const auto clear_bar = [&] {
      if (drawn) std::fputs("\r\033[K", stderr);
      drawn = false;
    };
    StatusOr<std::string> result = ctx.target->Call(request, [&](std::string_view l) {
      std::optional<JsonValue> v = ParseLine(ctx, l);
      if (!v) return;
      const std::string type = Member(*v, "type");
      if (type == "error") {
        clear_bar();
        PrintOpError(ctx, Member(*v, "id"), Member(*v, "message"));
      } else if (type == "progress") {
        done = Count(*v, "done");
        const uint64_t finished = done + Count(*v, "failed");
        const uint64_t total = Count(*v, "total");
        if (tty && finished < total) {
          cli::DrawProgress(
              kTool, finished, total,
              std::to_string(finished) + "/" + std::to_string(total) + " " + ctx.command);
          drawn = true;
        }
      }
    });
    clear_bar();
    if (!result.ok()) {
      PrintError(ctx.command + ": " + std::string(result.status().message()) + "; " +
                 std::to_string(done) + " done and durable before that");
      return kExitFailed;
    }
    std::optional<JsonValue> v = ParseLine(ctx, *result);
    if (!v) return kExitFailed;
    if (const JsonValue* ok = v->Find("ok"); ok == nullptr || !ok->boolean) {
      PrintError(ctx.command + ": " + Member(*v, "message"));
      return kExitFailed;
    }
    const uint64_t failed = bad + Count(*v, "failed");
    const uint64_t total = bad + Count(*v, "total");
    if (dry_run) {
      Out(ctx.command + ": " + std::to_string(Count(*v, "matched")) +
          " messages would change (dry run: nothing changed)\n");
    }
    return Summary(ctx, failed, total);
  };
}

// ---- stats -----------------------------------------------------------------------------

Runner PlanStats(const Args& a, std::string* error) {
  if (!a.positional.empty()) {
    *error = "unexpected argument '" + Printable(a.positional[0]) + "'";
    return nullptr;
  }
  const bool json = a.Has("--json");
  const bool prometheus = a.Has("--prometheus");
  if (json && prometheus) {
    *error = "--json and --prometheus exclude each other";
    return nullptr;
  }
  return [json, prometheus](Context& ctx) {
    if (Spool* spool = ctx.target->spool(); spool != nullptr) {
      StatusOr<Metrics> m = CollectMetrics(*spool);
      if (!m.ok()) {
        PrintError("stats: " + m.status().ToString());
        return kExitFailed;
      }
      Out(json ? FormatStatsJson(*m) + "\n" : prometheus ? FormatPrometheus(*m) : StatsText(*m));
      return kExitOk;
    }
    StatusOr<std::string> result = ctx.target->Call(
        std::string(R"({"op":"stats","format":")") + (prometheus ? "prometheus" : "json") + "\"}",
        nullptr);
    if (!result.ok()) {
      PrintError("stats: " + std::string(result.status().message()));
      return kExitFailed;
    }
    std::optional<JsonValue> v = ParseLine(ctx, *result);
    if (!v) return kExitFailed;
    if (prometheus) {
      Out(Member(*v, "prometheus"));
      return Member(*v, "prometheus").empty() ? kExitFailed : kExitOk;
    }
    const JsonValue* stats = v->Find("stats");
    StatusOr<Metrics> m = stats != nullptr ? MetricsFromJson(stats->raw)
                                           : InvalidArgumentError(Member(*v, "message"));
    if (!m.ok()) {
      PrintError("stats: " + std::string(m.status().message()));
      return kExitFailed;
    }
    Out(json ? std::string(stats->raw) + "\n" : StatsText(*m));
    return kExitOk;
  };
}

std::vector<OptionSpec> With(std::vector<OptionSpec> options, std::vector<OptionSpec> more) {
  options.insert(options.end(), more.begin(), more.end());
  return options;
}

std::string BulkHelp(std::string_view what) {
  return std::string(what) +
         R"(
Give message ids (or '-' to read them from stdin), or a filter (every condition given
must hold), or --all. Beside a running MTA this goes through the spool's control socket;
otherwise spool-ctl opens the spool itself. Changes are made and reported in groups of
1000, each durable before it is counted; on a terminal a progress bar shows how far.

)" + kFilterHelp +
         R"(  --all                  every message
  --dry-run              count what would change, change nothing
)";
}

}  // namespace

const std::vector<Command>& Commands() {
  static const std::vector<OptionSpec> kBulkOptions =
      With(kFilterOptions, {{"--all", false}, {"--dry-run", false}});
  static const std::string kListHelp =
      "Lists the messages that match every filter given, in id (arrival) order per shard.\n"
      "Beside a running MTA it lists through the spool's control socket: what the MTA\n"
      "holds now.\n\n" +
      std::string(kFilterHelp) +
      R"(  --json                 one JSON object per line: id, queue, sender, recipients,
                         recipient_status, size, arrival, arrival_ms, next_attempt,
                         next_attempt_ms, attempts, state, metadata
  --ids                  ids only, one per line (for 'spool-ctl hold -' and the like)
)";
  static const std::string kHoldHelp = BulkHelp("Holds messages: they are not due until released.");
  static const std::string kReleaseHelp =
      BulkHelp("Releases held messages: queued again, due now.");
  static const std::string kRequeueHelp =
      BulkHelp("Makes messages due now, releasing held ones (after an outage of the next hop).");
  static const std::string kDeleteHelp = BulkHelp("Removes messages for good, without a bounce.");
  static const auto* commands = new std::vector<Command>{
      {"list", false, true,
       "list [--queue Q] [--state queued|held|corrupt] [--older-than DURATION]\n"
       "     [--sender SUBSTR] [--recipient SUBSTR] [--json | --ids]",
       kListHelp, With(kFilterOptions, {{"--json", false}, {"--ids", false}}), PlanList},
      {"show",
       false,
       true,
       "show ID [--json]",
       R"(Shows a message's envelope, state, attempts and per-recipient status.

  --json  one JSON object, the fields of 'list --json'
)",
       {{"--json", false}},
       PlanShow},
      {"cat",
       false,
       false,
       "cat ID",
       R"(Writes the message's body to stdout byte for byte, after verifying its checksums.
A missing or corrupt message writes nothing to stdout, the reason to stderr, and exits 1.
)",
       {},
       PlanCat},
      {"export",
       false,
       false,
       "export --dir OUT [--sync] ID... (or - for ids on stdin)",
       R"(Writes each message's body, byte for byte and after verifying its checksums, to the
file OUT/ID. OUT is created if missing (not its parents); an existing OUT/ID is replaced.
A file appears only once its whole body is written: a missing or corrupt message leaves
no file and gets its line on stderr, the others are still exported, and the exit code is
then 1. Nothing is written to stdout. The files get mode 0640 (less the umask).

  --dir OUT  the directory for the files
  --sync     make each file and its name durable (fdatasync, directory fsync) before
             going on, for copies that must survive a power loss
)",
       {{"--dir", true}, {"--sync", false}},
       PlanExport},
      {"hold", true, false, "hold ID... | - | FILTER... | --all  [--dry-run]", kHoldHelp,
       kBulkOptions, PlanBulk},
      {"release", true, false, "release ID... | - | FILTER... | --all  [--dry-run]", kReleaseHelp,
       kBulkOptions, PlanBulk},
      {"requeue", true, false, "requeue ID... | - | FILTER... | --all  [--dry-run]", kRequeueHelp,
       kBulkOptions, PlanBulk},
      {"delete", true, false, "delete ID... | - | FILTER... | --all  [--dry-run]", kDeleteHelp,
       kBulkOptions, PlanBulk},
      {"stats",
       false,
       true,
       "stats [--json | --prometheus]",
       R"(Counts messages and body bytes per queue and state, the oldest message, segments
and free disk space. Beside a running MTA it asks the MTA through the spool's control
socket; --json and --prometheus then also carry the write path's counters and health.

  --json        one JSON object (see docs/operations.md)
  --prometheus  Prometheus text exposition format, e.g. for node_exporter's textfile
                collector
)",
       {{"--json", false}, {"--prometheus", false}},
       PlanStats},
  };
  return *commands;
}

}  // namespace spool::ctl
