#include "tools/opensmtpd/queue_tool.h"

#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <utility>

#include "spool/logging.h"
#include "tools/opensmtpd/proc_protocol.h"
#include "tools/opensmtpd/queue_backend.h"

namespace spool::opensmtpd {
namespace {

constexpr char kSyslogIdent[] = "queue-spool";

constexpr char kHelp[] =
    "usage: smtpd -B queue=spool:DIR[,DIR...][,NAME=VALUE...]\n"
    "\n"
    "OpenSMTPD's queue on a spool: smtpd runs this program as\n"
    "/usr/libexec/opensmtpd/queue-spool, with its queue socket on standard input.\n"
    "Options: segment_size, min_free_bytes, max_message_size (bytes, K/M/G suffix),\n"
    "io_backend (auto|io_uring|posix), direct_io (0|1). See docs/opensmtpd.md.\n";

int SyslogPriority(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return LOG_DEBUG;
    case LogLevel::kInfo:
      return LOG_INFO;
    case LogLevel::kWarning:
      return LOG_WARNING;
    case LogLevel::kError:
      return LOG_ERR;
  }
  return LOG_ERR;
}

// The engine's log and the backend's go to syslog (mail facility, as smtpd's) and, at
// info level and above, to stderr: smtpd's own (its terminal with -d, /dev/null once
// daemonized).
void RouteLog() {
  openlog(kSyslogIdent, LOG_PID, LOG_MAIL);
  SetLogSink([](LogLevel level, std::string_view message) {
    syslog(SyslogPriority(level), "%.*s", static_cast<int>(message.size()), message.data());
    if (level >= LogLevel::kInfo) {
      std::fprintf(stderr, "%s[%d]: %s: %.*s\n", kSyslogIdent, static_cast<int>(getpid()),
                   std::string(LogLevelName(level)).c_str(), static_cast<int>(message.size()),
                   message.data());
    }
  });
}

std::optional<uint64_t> ParseBytes(std::string_view text) {
  uint64_t multiplier = 1;
  if (!text.empty()) {
    switch (text.back()) {
      case 'K':
      case 'k':
        multiplier = 1ull << 10;
        break;
      case 'M':
      case 'm':
        multiplier = 1ull << 20;
        break;
      case 'G':
      case 'g':
        multiplier = 1ull << 30;
        break;
    }
    if (multiplier != 1) text.remove_suffix(1);
  }
  if (text.empty() || text.size() > 15) return std::nullopt;
  uint64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v * multiplier;
}

}  // namespace

std::string ParseQueueArgument(std::string_view argument, Options* options) {
  options->dirs.clear();
  while (!argument.empty()) {
    const size_t comma = argument.find(',');
    const std::string_view item = argument.substr(0, comma);
    argument = comma == std::string_view::npos ? std::string_view() : argument.substr(comma + 1);
    if (item.empty()) return "an empty item in the queue argument";
    const size_t eq = item.find('=');
    if (eq == std::string_view::npos) {
      options->dirs.emplace_back(item);
      continue;
    }
    const std::string name(item.substr(0, eq));
    const std::string_view value = item.substr(eq + 1);
    const std::optional<uint64_t> bytes = ParseBytes(value);
    if (name == "segment_size" && bytes) {
      options->segment_size = *bytes;
    } else if (name == "min_free_bytes" && bytes) {
      options->min_free_bytes = *bytes;
    } else if (name == "max_message_size" && bytes) {
      options->max_message_size = *bytes;
    } else if (name == "io_backend") {
      options->io_backend = std::string(value);
    } else if (name == "direct_io" && (value == "0" || value == "1")) {
      options->direct_io = value == "1";
    } else {
      return "bad option '" + std::string(item) + "'";
    }
  }
  if (options->dirs.empty()) return "no spool directory (smtpd -B queue=spool:DIR)";
  return "";
}

int QueueMain(int argc, char** argv) {
  if (argc == 2 && (std::strcmp(argv[1], "-h") == 0 || std::strcmp(argv[1], "--help") == 0)) {
    std::fputs(kHelp, stdout);
    return kExitOk;
  }
  // smtpd's queue process ignores these, and so does its queue: an orderly stop is CLOSE
  // and the end of the socket (a Ctrl-C with smtpd -d, systemd's SIGTERM to the unit).
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGPIPE}) std::signal(sig, SIG_IGN);
  RouteLog();
  Options options;
  const std::string usage =
      argc == 2 ? ParseQueueArgument(argv[1], &options) : "one argument expected";
  if (!usage.empty()) {
    Log(LogLevel::kError, std::string(kSyslogIdent) + ": " + usage);
    std::fputs(kHelp, stderr);
    return kExitUsage;
  }
  struct stat st;
  if (fstat(STDIN_FILENO, &st) != 0 || !S_ISSOCK(st.st_mode)) {
    Log(LogLevel::kError, std::string(kSyslogIdent) +
                              ": standard input is not smtpd's queue socket (smtpd runs this "
                              "program: smtpd -B queue=spool:DIR)");
    return kExitUsage;
  }
  options.lock_holder = "spool-opensmtpd-queue (pid " + std::to_string(getpid()) + ")";
  StatusOr<std::unique_ptr<Spool>> spool = Spool::Open(options);
  if (!spool.ok()) {
    Log(LogLevel::kError,
        std::string(kSyslogIdent) + ": cannot open the spool: " + spool.status().ToString());
    return kExitFailed;
  }
  QueueBackend backend(spool->get());
  Channel channel(STDIN_FILENO);
  for (;;) {
    StatusOr<std::optional<ProcMessage>> request = channel.Read();
    if (!request.ok()) {
      Log(LogLevel::kError, std::string(kSyslogIdent) + ": " + request.status().ToString());
      return kExitFailed;
    }
    if (!request->has_value()) break;  // smtpd's queue process is gone
    StatusOr<Reply> reply = backend.Handle(**request);
    if (!reply.ok()) {
      Log(LogLevel::kError, std::string(kSyslogIdent) + ": " + reply.status().ToString());
      return kExitFailed;
    }
    if (Status s = channel.Reply(reply->payload, reply->fd); !s.ok()) {
      Log(LogLevel::kError, std::string(kSyslogIdent) + ": " + s.ToString());
      return kExitFailed;
    }
  }
  if (!backend.closed()) {
    Log(LogLevel::kWarning,
        std::string(kSyslogIdent) + ": smtpd's queue process went away without CLOSE");
  }
  return kExitOk;
}

}  // namespace spool::opensmtpd
