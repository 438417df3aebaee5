#include "tools/smtpd/smtpd.h"

#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "spool/logging.h"
#include "spool/spool.h"
#include "spool/status.h"
#include "tools/common/cli.h"
#include "tools/smtpd/server.h"

namespace spool::smtpd {
namespace {

constexpr std::string_view kTool = "spool-smtpd";
// Descriptors beyond the connections: the spool's segment files, RocksDB, listeners.
constexpr rlim_t kSpareDescriptors = 256;

constexpr char kHelp[] =
    R"(Usage: spool-smtpd --spool DIR[,DIR...] --listen HOST:PORT [options]

The reference SMTP front-end of spool: an RFC 5321 receiver (EHLO/HELO, MAIL, RCPT, DATA,
RSET, NOOP, QUIT, VRFY, HELP; PIPELINING, SIZE, 8BITMIME, ENHANCEDSTATUSCODES) that stores
each message's DATA byte for byte in the spool and answers "250 2.0.0 Ok: queued as ID"
only once it is durable. Relays nothing: delivery is another program's job.

Options:
  --spool DIR[,DIR...]        the spool's directories (created if missing)
  --listen HOST:PORT          address to listen on; IPv6 as [::1]:25; port 0 picks a free
                              one; may be given more than once
  --max-message-size BYTES    larger messages get 552 5.3.4 (default 64M); advertised by SIZE
  --max-connections N         more get 421 4.7.0 at connect (default 1000)
  --max-recipients N          more RCPTs per message get 452 4.5.3 (default 1000)
  --idle-timeout SECONDS      a silent client gets 421 4.4.2 and is closed (default 300)
  --drain-timeout SECONDS     on SIGTERM, how long transactions in flight may take to
                              finish before their connections are closed (default 30)
  --max-errors N              a client after N error replies gets 421 4.7.0 (default 20)
  --hostname NAME             name in the greeting and EHLO reply (default: the host name)
  --min-free-bytes BYTES      refuse mail (452 4.3.1) when a spool filesystem has less
                              free space than this (default 128M)
  --segment-size BYTES        segment file size of a new spool (default 64M)
  --io-backend auto|io_uring|posix    the spool's I/O backend (default auto)
  -h, --help                  this text

BYTES: a number, optionally followed by K, M, G or T (powers of 1024).

Once listening it prints "spool-smtpd: listening on ADDRESS" on stdout, one line per
address; it logs to stderr (SPOOL_LOG_LEVEL=debug|info|warning|error; debug logs every
queued id). SIGTERM or SIGINT: stop accepting, answer 421 to idle clients, let
transactions in flight finish, exit 0. See docs/smtpd.md.

Exit status:
  0  stopped by SIGTERM or SIGINT after draining
  1  cannot listen, or the server failed
  2  usage error
  3  the spool cannot be opened (not a spool, held by another process, ...)
)";

void PrintError(std::string_view message) { cli::PrintError(kTool, message); }

bool ParseCount(std::string_view text, uint64_t max, uint64_t* out) {
  if (text.empty() || text.size() > 19) return false;
  uint64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (v > max) return false;
  *out = v;
  return true;
}

// Raises the soft descriptor limit as far as the hard one allows: each connection is a
// descriptor.
void RaiseDescriptorLimit(size_t connections) {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return;
  const rlim_t want = static_cast<rlim_t>(connections) + kSpareDescriptors;
  if (lim.rlim_cur >= want) return;
  lim.rlim_cur = lim.rlim_max == RLIM_INFINITY ? want : std::min(want, lim.rlim_max);
  if (setrlimit(RLIMIT_NOFILE, &lim) != 0 || lim.rlim_cur < want) {
    Log(LogLevel::kWarning, "smtpd: the descriptor limit (" + std::to_string(lim.rlim_cur) +
                                ") is below --max-connections plus " +
                                std::to_string(kSpareDescriptors) +
                                "; connections beyond it wait in the listen queue");
  }
}

// Every option takes a value.
constexpr std::string_view kValueOptions[] = {
    "--spool",          "--listen",         "--max-message-size", "--max-connections",
    "--max-recipients", "--idle-timeout",   "--drain-timeout",    "--max-errors",
    "--hostname",       "--min-free-bytes", "--segment-size",     "--io-backend",
};

struct Flags {
  std::optional<std::string> spool;
  std::vector<std::string> listen;
  ServerOptions server;
  Options spool_options;
};

// Parses argv into *flags. Returns an error text, empty on success; sets *help.
std::string ParseFlags(int argc, char** argv, Flags* flags, bool* help) {
  *help = false;
  for (int i = 1; i < argc; ++i) {
    std::string name = argv[i];
    std::optional<std::string> value;
    if (const size_t eq = name.find('='); eq != std::string::npos && name.starts_with("--")) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    if (name == "-h" || name == "--help") {
      *help = true;
      return "";
    }
    if (!name.starts_with("--")) return "unexpected argument '" + name + "'";
    if (std::find(std::begin(kValueOptions), std::end(kValueOptions), name) ==
        std::end(kValueOptions)) {
      return "unknown option '" + name + "'";
    }
    if (!value) {
      if (i + 1 >= argc) return "option " + name + " needs a value";
      value = argv[++i];
    }
    const std::string& v = *value;
    uint64_t n = 0;
    const auto bad = [&] { return "option " + name + ": bad value '" + v + "'"; };
    if (name == "--spool") {
      if (flags->spool) return "option --spool given twice";
      flags->spool = v;
    } else if (name == "--listen") {
      flags->listen.push_back(v);
    } else if (name == "--max-message-size") {
      if (!ParseByteSize(v, &n) || n == 0) return bad();
      flags->spool_options.max_message_size = n;
    } else if (name == "--max-connections") {
      if (!ParseCount(v, 1'000'000, &n) || n == 0) return bad();
      flags->server.max_connections = n;
    } else if (name == "--max-recipients") {
      if (!ParseCount(v, 1'000'000, &n) || n == 0) return bad();
      flags->server.max_recipients = n;
    } else if (name == "--idle-timeout") {
      if (!ParseCount(v, 86'400, &n) || n == 0) return bad();
      flags->server.idle_timeout_ms = static_cast<int64_t>(n) * 1000;
    } else if (name == "--drain-timeout") {
      if (!ParseCount(v, 86'400, &n)) return bad();
      flags->server.drain_timeout_ms = static_cast<int64_t>(n) * 1000;
    } else if (name == "--max-errors") {
      if (!ParseCount(v, 1'000'000, &n) || n == 0) return bad();
      flags->server.max_errors = static_cast<int>(n);
    } else if (name == "--hostname") {
      if (v.empty() || v.find_first_of(" \t\r\n") != std::string::npos) return bad();
      flags->server.hostname = v;
    } else if (name == "--min-free-bytes") {
      if (!ParseByteSize(v, &n)) return bad();
      flags->spool_options.min_free_bytes = n;
    } else if (name == "--segment-size") {
      if (!ParseByteSize(v, &n) || n == 0) return bad();
      flags->spool_options.segment_size = n;
    } else if (name == "--io-backend") {
      if (v != "auto" && v != "io_uring" && v != "posix") return bad();
      flags->spool_options.io_backend = v;
    } else {
      return "unknown option '" + name + "'";
    }
  }
  if (!flags->spool || flags->spool->empty()) return "--spool DIR[,DIR...] is required";
  if (flags->listen.empty()) return "--listen HOST:PORT is required";
  for (const std::string& dir : cli::SplitDirs(*flags->spool)) {
    if (dir.empty()) return "--spool: empty directory name in '" + *flags->spool + "'";
  }
  return "";
}

}  // namespace

bool ParseByteSize(std::string_view text, uint64_t* bytes) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0 || digits > 19) return false;
  uint64_t v = 0;
  for (size_t i = 0; i < digits; ++i) v = v * 10 + static_cast<uint64_t>(text[i] - '0');
  std::string_view unit = text.substr(digits);
  int shift = 0;
  if (!unit.empty()) {
    switch (unit.front()) {
      case 'K':
      case 'k':
        shift = 10;
        break;
      case 'M':
      case 'm':
        shift = 20;
        break;
      case 'G':
      case 'g':
        shift = 30;
        break;
      case 'T':
      case 't':
        shift = 40;
        break;
      default:
        return false;
    }
    unit.remove_prefix(1);
    if (unit != "" && unit != "B" && unit != "iB") return false;
  }
  if (shift > 0 && v > (std::numeric_limits<uint64_t>::max() >> shift)) return false;
  *bytes = v << shift;
  return true;
}

int SmtpdMain(int argc, char** argv) {
  Flags flags;
  bool help = false;
  if (std::string error = ParseFlags(argc, argv, &flags, &help); !error.empty()) {
    PrintError(error + " (see --help)");
    return kExitUsage;
  }
  if (help) {
    std::fwrite(kHelp, 1, sizeof(kHelp) - 1, stdout);
    return kExitOk;
  }

  // SIGTERM and SIGINT go to a thread of ours only: blocked here, before the spool
  // starts its threads (which inherit the mask), and taken by sigwait below.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  RaiseDescriptorLimit(flags.server.max_connections);

  Options options = flags.spool_options;
  options.dirs = cli::SplitDirs(*flags.spool);
  options.lock_holder = "spool-smtpd pid " + std::to_string(getpid());
  StatusOr<std::unique_ptr<Spool>> spool = Spool::Open(options);
  if (!spool.ok()) {
    PrintError("cannot open the spool: " + std::string(spool.status().message()));
    return kExitCannotOpen;
  }
  flags.server.listen = flags.listen;
  StatusOr<std::unique_ptr<Server>> server = Server::Create(spool->get(), flags.server);
  if (!server.ok()) {
    PrintError(std::string(server.status().message()));
    return kExitFailed;
  }
  for (const std::string& address : (*server)->listen_addresses()) {
    std::printf("%s: listening on %s\n", std::string(kTool).c_str(), address.c_str());
  }
  std::fflush(stdout);

  Server* raw = server->get();
  std::thread signal_thread([raw, stop_signals] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    Log(LogLevel::kInfo, std::string("smtpd: ") + strsignal(sig) + ": draining");
    raw->RequestStop();
  });

  const Status run = (*server)->Run();
  if (!run.ok()) {
    // Wake the signal thread (it waits for a stop that will not come) so it can be joined.
    pthread_kill(signal_thread.native_handle(), SIGTERM);
  }
  signal_thread.join();
  // The spool before the server: closing it finishes every commit in flight, whose
  // callbacks refer to the server.
  spool->reset();
  server->reset();
  if (!run.ok()) {
    PrintError(run.ToString());
    return kExitFailed;
  }
  return kExitOk;
}

}  // namespace spool::smtpd
