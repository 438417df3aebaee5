#include "tools/ctl/ctl.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "spool/control.h"
#include "spool/logging.h"
#include "tools/ctl/internal.h"

namespace spool::ctl {
namespace {

constexpr int64_t kMsPerSecond = 1000;
constexpr int64_t kMsPerMinute = 60 * kMsPerSecond;
constexpr int64_t kMsPerHour = 60 * kMsPerMinute;
constexpr int64_t kMsPerDay = 24 * kMsPerHour;
constexpr int64_t kMsPerWeek = 7 * kMsPerDay;

constexpr char kToolHelp[] =
    R"(Usage: spool-ctl --spool DIR[,DIR...] [--read-only] COMMAND [ARGS]

Inspect and operate the queue of a spool, beside a running MTA or on a stopped one.

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
  --read-only           never lock or write the spool, and read it directly even beside
                        a running MTA; a mutating command is then a usage error
  -h, --help            this text

While a process (the MTA) has the spool open, the mutating commands (hold, release,
requeue, delete) and list, show and stats go through the spool's control socket: the
process makes the changes and answers with what it holds now. Only the spool's owner and
root may use the socket. While nobody has the spool open, spool-ctl opens it itself:
read-only for the read commands, for writing for the mutating ones. cat and export always
read the spool directly, read-only.

Message ids: export, hold, release, requeue and delete take many; an argument '-' reads
more from stdin, one per line (blank lines and lines starting with '#' are skipped). Each
failure is reported on stderr; the others still happen. hold, release, requeue and delete
also take a filter instead of ids (see 'spool-ctl help delete').

Exit status:
  0  success
  1  an operation failed: an id that does not parse or names no message, a filter that
     matches nothing, a corrupt message, a refused state change, a file export could
     not write (for many ids: at least one failed)
  2  usage error
  3  the spool cannot be reached: missing, not a spool, held by a process that serves no
     control socket, a control socket that refuses this user
)";

// Flushes stdout; a failed write (disk full, closed pipe) turns success into failure.
int FinishOutput(int code) {
  if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
    PrintError(std::string("writing to stdout: ") + std::strerror(errno));
    return code == kExitOk ? kExitFailed : code;
  }
  return code;
}

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

// Reaches the spool for `command`: through the control socket of the process that holds
// it when there is one (and the command may use it), else by opening it here. Prints the
// error and returns null when it cannot.
std::unique_ptr<Target> Reach(const Command& command, Options options, bool read_only) {
  if (command.mutating || (command.live && !read_only)) {
    StatusOr<std::unique_ptr<ControlClient>> client = ControlClient::Connect(options.dirs);
    if (client.ok()) return std::make_unique<Target>(std::move(client).value());
    if (client.status().code() != Code::kUnavailable) {
      PrintError("cannot reach the spool's control socket: " +
                 cli::Printable(client.status().message()));
      return nullptr;
    }
  }
  // An operator's tool never creates a spool; the read commands never lock or write one.
  options.create_if_missing = false;
  options.read_only = !command.mutating;
  options.control_socket = false;
  options.lock_holder =
      "spool-ctl " + std::string(command.name) + " (pid " + std::to_string(getpid()) + ")";
  StatusOr<std::unique_ptr<Spool>> spool = Spool::Open(options);
  if (!spool.ok()) {
    PrintError(std::string("cannot open the spool") + (command.mutating ? " for writing" : "") +
               ": " + cli::Printable(spool.status().message()));
    return nullptr;
  }
  return std::make_unique<Target>(std::move(spool).value());
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
    if (c == nullptr) {
      return global.UsageError("unknown command '" + cli::Printable(args[i + 1]) + "'");
    }
    Out(CommandHelp(*c));
    return kExitOk;
  }
  const Command* command = FindCommand(name);
  if (command == nullptr) {
    return global.UsageError("unknown command '" + cli::Printable(name) + "'");
  }

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
  InstallLogSink();
  std::unique_ptr<Target> target = Reach(*command, options, read_only);
  if (target == nullptr) return kExitCannotOpen;
  Context ctx;
  ctx.command = name;
  ctx.target = target.get();
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
