#include "tools/ctl/ctl.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "io/file_system.h"
#include "spool/logging.h"
#include "spool/message_id.h"
#include "spool/metrics.h"
#include "spool/spool.h"
#include "spool/status.h"
#include "tools/common/cli.h"
#include "tools/common/flags.h"

namespace spool::ctl {
namespace {

constexpr std::string_view kTool = "spool-ctl";

constexpr int64_t kMsPerSecond = 1000;
constexpr int64_t kMsPerMinute = 60 * kMsPerSecond;
constexpr int64_t kMsPerHour = 60 * kMsPerMinute;
constexpr int64_t kMsPerDay = 24 * kMsPerHour;
constexpr int64_t kMsPerWeek = 7 * kMsPerDay;

// Column widths of `list`'s table. Longer values overflow their column.
constexpr int kQueueWidth = 10;
constexpr int kStateWidth = 7;
constexpr int kSizeWidth = 10;
constexpr int kAttemptsWidth = 5;

constexpr char kToolHelp[] =
    R"(Usage: spool-ctl --spool DIR[,DIR...] [--read-only] COMMAND [ARGS]

Inspect and operate the queue of a spool.

Commands:
  list      list messages (--queue, --state, --older-than, --sender, --recipient, --json)
  show      a message's envelope, state and per-recipient status
  cat       a message's body on stdout, byte for byte
  export    many messages' bodies, each verified, into files named by id (--dir OUT)
  hold      hold messages: not delivered until released
  release   release held messages: due now
  requeue   make messages due now (held ones are released)
  delete    remove messages for good
  stats     counts per queue and state, bytes, segments, free space (--json, --prometheus)
  help      this text, or a command's ('spool-ctl help list', 'spool-ctl list --help')

Global options (before the command):
  --spool DIR[,DIR...]  the spool's directories: every shard, comma-separated
  --read-only           never lock or write the spool; a mutating command is then a
                        usage error
  -h, --help            this text

The read commands (list, show, cat, export, stats) always open the spool read-only: they
take no lock and write nothing to it, so they work beside a running MTA and on a full or
read-only disk. The mutating commands (hold, release, requeue, delete) need the spool to
themselves: while another process has it open they fail, naming the holder.

Message ids: export, hold, release, requeue and delete take many; an argument '-' reads
more from stdin, one per line (blank lines and lines starting with '#' are skipped). Each
failure is reported on stderr; the others still happen.

Exit status:
  0  success
  1  an operation failed: an id that does not parse or names no message, a corrupt
     message, a refused state change, a file export could not write (for many ids: at
     least one failed)
  2  usage error
  3  the spool cannot be opened (missing, not a spool, held by another process)
)";

// ---- Output ----------------------------------------------------------------------------

void PrintError(std::string_view message) { cli::PrintError(kTool, message); }

void Out(std::string_view text) { std::fwrite(text.data(), 1, text.size(), stdout); }

// Flushes stdout; a failed write (disk full, closed pipe) turns success into failure.
int FinishOutput(int code) {
  if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
    PrintError(std::string("writing to stdout: ") + std::strerror(errno));
    return code == kExitOk ? kExitFailed : code;
  }
  return code;
}

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

// "2h5m", "3d4h", "45s": the two largest units, for people.
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

// "2026-11-28 01:02:03": an ISO time without the milliseconds, for tables.
std::string ShortTime(int64_t unix_ms) {
  std::string t = FormatIsoTime(unix_ms);
  t.resize(19);
  t[10] = ' ';
  return t;
}

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

// ---- Command lines ---------------------------------------------------------------------

struct OptionSpec {
  std::string_view name;  // "--queue"
  bool takes_value;
};

struct Args {
  std::map<std::string, std::string, std::less<>> options;  // name -> value ("" for flags)
  std::vector<std::string> positional;

  bool Has(std::string_view name) const { return options.find(name) != options.end(); }
  std::optional<std::string> Value(std::string_view name) const {
    auto it = options.find(name);
    if (it == options.end()) return std::nullopt;
    return it->second;
  }
};

// Declares a command's options, each to be given once, and its positional arguments on
// *flags, all of them going into *args.
void DeclareArgs(const std::vector<OptionSpec>& specs, cli::Flags* flags, Args* args) {
  for (const OptionSpec& spec : specs) {
    const std::string name(spec.name);
    if (spec.takes_value) {
      flags->Value(
          name,
          [args, name](const std::string& value) {
            args->options[name] = value;
            return std::string();
          },
          cli::Repeat::kOnce);
    } else {
      flags->Flag(
          name, [args, name] { args->options[name] = ""; }, cli::Repeat::kOnce);
    }
  }
  flags->Positional([args](const std::string& arg) {
    args->positional.push_back(arg);
    return std::string();
  });
}

std::optional<MessageState> ParseState(std::string_view name) {
  for (MessageState s : {MessageState::kQueued, MessageState::kHeld, MessageState::kCorrupt}) {
    if (MessageStateName(s) == name) return s;
  }
  return std::nullopt;
}

// ---- Commands --------------------------------------------------------------------------

// What a command runs once the spool is open.
struct Context {
  std::string command;
  Spool* spool = nullptr;
  int64_t now_ms = 0;
};

using Runner = std::function<int(Context&)>;

struct Command {
  std::string_view name;
  bool mutating;
  std::string_view summary;  // the synopsis line
  std::string_view help;     // the rest of `COMMAND --help`
  std::vector<OptionSpec> options;
  // Checks the arguments (before the spool is opened) and returns what to run, or sets
  // *error to a usage error.
  std::function<Runner(const Args&, std::string* error)> plan;
};

// The error of one operation on one message: "hold ID: no message ID".
void PrintOpError(const Context& ctx, std::string_view id, const Status& s) {
  PrintError(ctx.command + " " + Printable(id) + ": " + std::string(s.message()));
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

struct ListFilter {
  std::optional<std::string> queue;
  std::optional<MessageState> state;
  std::optional<int64_t> older_than_ms;
  std::optional<std::string> sender;  // lower case; "<>" is the null sender
  std::optional<std::string> recipient;

  bool Matches(const MessageInfo& m, int64_t now_ms) const {
    if (queue && m.envelope.queue != *queue) return false;
    if (state && m.state != *state) return false;
    if (older_than_ms && m.arrival_ms > now_ms - *older_than_ms) return false;
    if (sender) {
      if (*sender == "<>") {
        if (!m.envelope.sender.empty()) return false;
      } else if (Lower(m.envelope.sender).find(*sender) == std::string::npos) {
        return false;
      }
    }
    if (recipient) {
      const bool any = std::any_of(
          m.envelope.recipients.begin(), m.envelope.recipients.end(),
          [&](const std::string& r) { return Lower(r).find(*recipient) != std::string::npos; });
      if (!any) return false;
    }
    return true;
  }
};

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

Runner PlanList(const Args& a, std::string* error) {
  if (!a.positional.empty()) {
    *error = "unexpected argument '" + Printable(a.positional[0]) + "'";
    return nullptr;
  }
  ListFilter f;
  f.queue = a.Value("--queue");
  if (auto s = a.Value("--state")) {
    f.state = ParseState(*s);
    if (!f.state) {
      *error = "unknown state '" + Printable(*s) + "' (queued, held, corrupt)";
      return nullptr;
    }
  }
  if (auto d = a.Value("--older-than")) {
    int64_t ms = 0;
    if (!ParseDuration(*d, &ms)) {
      *error = "bad duration '" + Printable(*d) + "' (like 90s, 30m, 2h, 3d, 1h30m)";
      return nullptr;
    }
    f.older_than_ms = ms;
  }
  if (auto s = a.Value("--sender")) f.sender = Lower(*s);
  if (auto r = a.Value("--recipient")) f.recipient = Lower(*r);
  const bool json = a.Has("--json");
  const bool ids = a.Has("--ids");
  if (json && ids) {
    *error = "--json and --ids exclude each other";
    return nullptr;
  }
  return [f, json, ids](Context& ctx) {
    if (!json && !ids) {
      Out(PadRight("ID", MessageId::kTextLength) + "  " + PadRight("QUEUE", kQueueWidth) + "  " +
          PadRight("STATE", kStateWidth) + "  " + PadLeft("SIZE", kSizeWidth) + "  " +
          PadRight("ARRIVAL (UTC)", 19) + "  " + PadLeft("TRIES", kAttemptsWidth) +
          "  SENDER -> RECIPIENTS\n");
    }
    Status s = ctx.spool->ForEach([&](const MessageInfo& m) {
      if (!f.Matches(m, ctx.now_ms)) return true;
      if (json) {
        Out(MessageInfoJson(m) + "\n");
      } else if (ids) {
        Out(m.id.ToString() + "\n");
      } else {
        Out(ListLine(m));
      }
      return true;
    });
    if (!s.ok()) {
      PrintError("list: " + s.ToString());
      return kExitFailed;
    }
    return kExitOk;
  };
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
    StatusOr<MessageInfo> m = ctx.spool->Get(*id);
    if (!m.ok()) {
      PrintOpError(ctx, text, m.status());
      return kExitFailed;
    }
    Out(json ? MessageInfoJson(*m) + "\n" : ShowText(*m, ctx.now_ms));
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
    StatusOr<std::string> body = ctx.spool->ReadBody(*id);
    if (!body.ok()) {
      PrintOpError(ctx, text, body.status());
      return kExitFailed;
    }
    Out(*body);
    return kExitOk;
  };
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

// Runs `op` on every id of `args`, reading the ids of a "-" from stdin (one per line;
// blank lines and '#' comments skipped). Each failure gets its line on stderr and the
// others still run; then a summary line if any failed. Returns the exit code.
int ForEachId(const Context& ctx, const std::vector<std::string>& args,
              const std::function<Status(const MessageId&)>& op) {
  uint64_t done = 0, failed = 0;
  const auto apply = [&](const std::string& text) {
    std::optional<MessageId> id = ParseIdOrReport(ctx, text);
    if (!id) {
      ++failed;
      return;
    }
    Status s = op(*id);
    if (!s.ok()) {
      PrintOpError(ctx, text, s);
      ++failed;
      return;
    }
    ++done;
  };
  for (const std::string& arg : args) {
    if (arg != "-") {
      apply(arg);
      continue;
    }
    std::string line;
    while (std::getline(std::cin, line)) {
      const size_t b = line.find_first_not_of(" \t\r");
      if (b == std::string::npos || line[b] == '#') continue;
      const size_t e = line.find_last_not_of(" \t\r");
      apply(line.substr(b, e - b + 1));
    }
  }
  if (failed > 0) {
    PrintError(ctx.command + ": " + std::to_string(failed) + " of " +
               std::to_string(failed + done) + " failed");
    return kExitFailed;
  }
  return kExitOk;
}

// hold, release, requeue, delete.
Runner PlanBulk(const Args& a, std::string* error, Status (Spool::*op)(const MessageId&)) {
  if (!ManyIds(a, error)) return nullptr;
  return [args = a.positional, op](Context& ctx) {
    return ForEachId(ctx, args, [&](const MessageId& id) { return (ctx.spool->*op)(id); });
  };
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
    return ForEachId(
        ctx, args, [&](const MessageId& id) { return ExportOne(**fs, *ctx.spool, dir, id, sync); });
  };
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
    StatusOr<Metrics> m = CollectMetrics(*ctx.spool);
    if (!m.ok()) {
      PrintError("stats: " + m.status().ToString());
      return kExitFailed;
    }
    if (json) {
      Out(FormatStatsJson(*m) + "\n");
    } else if (prometheus) {
      Out(FormatPrometheus(*m));
    } else {
      Out(StatsText(*m));
    }
    return kExitOk;
  };
}

const std::vector<Command>& Commands() {
  static const auto* commands = new std::vector<Command>{
      {"list",
       false,
       "list [--queue Q] [--state queued|held|corrupt] [--older-than DURATION]\n"
       "     [--sender SUBSTR] [--recipient SUBSTR] [--json | --ids]",
       R"(Lists the messages that match every filter given, in id (arrival) order per shard.

  --queue Q              messages of queue Q
  --state STATE          queued, held or corrupt (quarantined by spool-fsck --repair)
  --older-than DURATION  arrived at least DURATION ago: 90s, 30m, 2h, 3d, 1w, 1h30m
  --sender SUBSTR        sender contains SUBSTR (ASCII case-insensitive); '<>' is the
                         null sender (bounces)
  --recipient SUBSTR     some recipient contains SUBSTR (ASCII case-insensitive)
  --json                 one JSON object per line: id, queue, sender, recipients,
                         recipient_status, size, arrival, arrival_ms, next_attempt,
                         next_attempt_ms, attempts, state, metadata
  --ids                  ids only, one per line (for 'spool-ctl hold -' and the like)
)",
       {{"--queue", true},
        {"--state", true},
        {"--older-than", true},
        {"--sender", true},
        {"--recipient", true},
        {"--json", false},
        {"--ids", false}},
       PlanList},
      {"show",
       false,
       "show ID [--json]",
       R"(Shows a message's envelope, state, attempts and per-recipient status.

  --json  one JSON object, the fields of 'list --json'
)",
       {{"--json", false}},
       PlanShow},
      {"cat",
       false,
       "cat ID",
       R"(Writes the message's body to stdout byte for byte, after verifying its checksums.
A missing or corrupt message writes nothing to stdout, the reason to stderr, and exits 1.
)",
       {},
       PlanCat},
      {"export",
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
      {"hold",
       true,
       "hold ID... (or - for ids on stdin)",
       "Holds messages: they are not due until released. Needs the spool to itself.\n",
       {},
       [](const Args& a, std::string* e) { return PlanBulk(a, e, &Spool::Hold); }},
      {"release",
       true,
       "release ID... (or - for ids on stdin)",
       "Releases held messages: queued again, due now. Needs the spool to itself.\n",
       {},
       [](const Args& a, std::string* e) { return PlanBulk(a, e, &Spool::Release); }},
      {"requeue",
       true,
       "requeue ID... (or - for ids on stdin)",
       "Makes messages due now, releasing held ones (after an outage of the next hop).\n"
       "Needs the spool to itself.\n",
       {},
       [](const Args& a, std::string* e) { return PlanBulk(a, e, &Spool::Requeue); }},
      {"delete",
       true,
       "delete ID... (or - for ids on stdin)",
       "Removes messages for good, without a bounce. Needs the spool to itself.\n",
       {},
       [](const Args& a, std::string* e) { return PlanBulk(a, e, &Spool::Remove); }},
      {"stats",
       false,
       "stats [--json | --prometheus]",
       R"(Counts messages and body bytes per queue and state, the oldest message, segments
and free disk space.

  --json        one JSON object (see docs/operations.md)
  --prometheus  Prometheus text exposition format, e.g. for node_exporter's textfile
                collector. Write-path counters, sync latencies and health belong to the
                process that has the spool open: the MTA exports them itself
                (spool/metrics.h).
)",
       {{"--json", false}, {"--prometheus", false}},
       PlanStats},
  };
  return *commands;
}

const Command* FindCommand(std::string_view name) {
  for (const Command& c : Commands()) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

std::string CommandHelp(const Command& c) {
  return "Usage: spool-ctl --spool DIR[,DIR...] [--read-only] " + std::string(c.summary) + "\n\n" +
         std::string(c.help) + "\n  -h, --help  this text\n";
}

// The library's log lines (damage found at open, say) go to stderr as
// "spool-ctl: spool log: error: ...", warnings and errors only, so that they read apart
// from the command's own error line. SPOOL_LOG_LEVEL restores the library's own format
// and level.
void InstallLogSink() {
  if (std::getenv("SPOOL_LOG_LEVEL") != nullptr) return;
  SetLogSink([](LogLevel level, std::string_view message) {
    if (level < LogLevel::kWarning) return;
    PrintError("spool log: " + Lower(LogLevelName(level)) + ": " + std::string(message));
  });
}

int Run(const std::vector<std::string>& argv) {
  // Global options, up to the command.
  std::optional<std::string> spool_arg;
  bool read_only = false;
  cli::Flags global(kTool, kExitUsage);
  global.Value("--spool", &spool_arg, cli::Repeat::kOnce)
      .Flag("--read-only", &read_only)
      .StopAtPositional()
      .UnknownOptionHint("global options go before the command");
  const std::span<const std::string> args = std::span(argv).subspan(1);
  switch (global.Parse(args)) {
    case cli::Parsed::kOk:
      break;
    case cli::Parsed::kHelp:
      Out(kToolHelp);
      return kExitOk;
    case cli::Parsed::kUsageError:
      return kExitUsage;
  }
  const size_t i = global.consumed();
  if (i >= args.size()) return global.UsageError("no command given");
  const std::string name = args[i];
  if (name == "help") {
    if (i + 1 >= args.size()) {
      Out(kToolHelp);
      return kExitOk;
    }
    const Command* c = FindCommand(args[i + 1]);
    if (c == nullptr) return global.UsageError("unknown command '" + Printable(args[i + 1]) + "'");
    Out(CommandHelp(*c));
    return kExitOk;
  }
  const Command* command = FindCommand(name);
  if (command == nullptr) return global.UsageError("unknown command '" + Printable(name) + "'");

  cli::Flags flags(kTool, kExitUsage, name);
  Args command_args;
  DeclareArgs(command->options, &flags, &command_args);
  switch (flags.Parse(args.subspan(i + 1))) {
    case cli::Parsed::kOk:
      break;
    case cli::Parsed::kHelp:
      Out(CommandHelp(*command));
      return kExitOk;
    case cli::Parsed::kUsageError:
      return kExitUsage;
  }
  std::string error;
  Runner runner = command->plan(command_args, &error);
  if (!runner) return flags.UsageError(error);
  if (!spool_arg) return global.UsageError("--spool DIR[,DIR...] is needed");
  Options options;
  if (error = cli::ParseSpoolDirs(*spool_arg, &options.dirs); !error.empty()) {
    return global.UsageError(error);
  }
  if (command->mutating && read_only) {
    return flags.UsageError(name + " changes the spool; it cannot run with --read-only");
  }
  // An operator's tool never creates a spool; the read commands never lock or write one.
  options.create_if_missing = false;
  options.read_only = !command->mutating;
  options.lock_holder = "spool-ctl " + name + " (pid " + std::to_string(getpid()) + ")";

  InstallLogSink();
  StatusOr<std::unique_ptr<Spool>> spool = Spool::Open(options);
  if (!spool.ok()) {
    PrintError(std::string("cannot open the spool") + (command->mutating ? " for writing" : "") +
               ": " + Printable(spool.status().message()));
    return kExitCannotOpen;
  }
  Context ctx;
  ctx.command = name;
  ctx.spool = spool->get();
  ctx.now_ms = NowMs();
  return runner(ctx);
}

}  // namespace

bool ParseDuration(std::string_view text, int64_t* ms) {
  if (text.empty()) return false;
  int64_t total = 0;
  size_t i = 0;
  while (i < text.size()) {
    int64_t n = 0;
    const size_t start = i;
    for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) {
      if (n > (INT64_MAX - 9) / 10) return false;
      n = n * 10 + (text[i] - '0');
    }
    if (i == start || i == text.size()) return false;  // no number, or no unit
    int64_t unit;
    switch (text[i++]) {
      case 's':
        unit = kMsPerSecond;
        break;
      case 'm':
        unit = kMsPerMinute;
        break;
      case 'h':
        unit = kMsPerHour;
        break;
      case 'd':
        unit = kMsPerDay;
        break;
      case 'w':
        unit = kMsPerWeek;
        break;
      default:
        return false;
    }
    if (n > (INT64_MAX - total) / unit) return false;
    total += n * unit;
  }
  *ms = total;
  return true;
}

int CtlMain(int argc, char** argv) {
  const std::vector<std::string> args(argv, argv + argc);
  return FinishOutput(Run(args));
}

}  // namespace spool::ctl
