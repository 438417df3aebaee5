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
#include "tools/common/flags.h"
#include "tools/smtpd/server.h"

namespace spool::smtpd {
namespace {

constexpr std::string_view kTool = "spool-smtpd";
// Descriptors beyond the connections: the spool's segment files, RocksDB, listeners.
constexpr rlim_t kSpareDescriptors = 256;
// The largest --max-connections, --max-recipients and --max-errors, and the longest
// --idle-timeout and --drain-timeout.
constexpr uint64_t kMaxCount = 1'000'000;
constexpr uint64_t kMaxSeconds = 86'400;
constexpr int64_t kMsPerSecond = 1000;

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

// What the command line sets.
struct Settings {
  std::optional<std::string> spool;
  ServerOptions server;
  Options spool_options;
};

std::string BadValue(std::string_view option, const std::string& value) {
  return "option " + std::string(option) + ": bad value '" + value + "'";
}

// Declares `option`, a count in [min, max] that goes times `scale` into *out.
template <typename T>
void DeclareCount(cli::Flags* flags, std::string_view option, uint64_t min, uint64_t max, T* out,
                  uint64_t scale = 1) {
  flags->Value(option, [=, option = std::string(option)](const std::string& v) {
    uint64_t n = 0;
    if (!ParseCount(v, max, &n) || n < min) return BadValue(option, v);
    *out = static_cast<T>(n * scale);
    return std::string();
  });
}

// Declares `option`, a byte size of at least `min` that goes into *out.
void DeclareByteSize(cli::Flags* flags, std::string_view option, uint64_t min, uint64_t* out) {
  flags->Value(option, [=, option = std::string(option)](const std::string& v) {
    uint64_t n = 0;
    if (!ParseByteSize(v, &n) || n < min) return BadValue(option, v);
    *out = n;
    return std::string();
  });
}

// Declares spool-smtpd's options, which go into *settings.
void DeclareOptions(cli::Flags* flags, Settings* settings) {
  ServerOptions& server = settings->server;
  Options& spool = settings->spool_options;
  flags->Value("--spool", &settings->spool, cli::Repeat::kOnce);
  flags->Value("--listen", [&server](const std::string& v) {
    server.listen.push_back(v);
    return std::string();
  });
  DeclareByteSize(flags, "--max-message-size", 1, &spool.max_message_size);
  DeclareCount(flags, "--max-connections", 1, kMaxCount, &server.max_connections);
  DeclareCount(flags, "--max-recipients", 1, kMaxCount, &server.max_recipients);
  DeclareCount(flags, "--idle-timeout", 1, kMaxSeconds, &server.idle_timeout_ms, kMsPerSecond);
  DeclareCount(flags, "--drain-timeout", 0, kMaxSeconds, &server.drain_timeout_ms, kMsPerSecond);
  DeclareCount(flags, "--max-errors", 1, kMaxCount, &server.max_errors);
  flags->Value("--hostname", [&server](const std::string& v) {
    if (v.empty() || v.find_first_of(" \t\r\n") != std::string::npos) {
      return BadValue("--hostname", v);
    }
    server.hostname = v;
    return std::string();
  });
  DeclareByteSize(flags, "--min-free-bytes", 0, &spool.min_free_bytes);
  DeclareByteSize(flags, "--segment-size", 1, &spool.segment_size);
  flags->Value("--io-backend", [&spool](const std::string& v) {
    if (v != "auto" && v != "io_uring" && v != "posix") return BadValue("--io-backend", v);
    spool.io_backend = v;
    return std::string();
  });
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
  Settings settings;
  cli::Flags flags(kTool, kExitUsage);
  DeclareOptions(&flags, &settings);
  switch (flags.Parse(argc, argv)) {
    case cli::Parsed::kOk:
      break;
    case cli::Parsed::kHelp:
      std::fwrite(kHelp, 1, sizeof(kHelp) - 1, stdout);
      return kExitOk;
    case cli::Parsed::kUsageError:
      return kExitUsage;
  }
  if (!settings.spool || settings.spool->empty()) {
    return flags.UsageError("--spool DIR[,DIR...] is required");
  }
  if (settings.server.listen.empty()) return flags.UsageError("--listen HOST:PORT is required");
  Options options = settings.spool_options;
  if (std::string error = cli::ParseSpoolDirs(*settings.spool, &options.dirs); !error.empty()) {
    return flags.UsageError(error);
  }

  // SIGTERM and SIGINT go to a thread of ours only: blocked here, before the spool
  // starts its threads (which inherit the mask), and taken by sigwait below.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  RaiseDescriptorLimit(settings.server.max_connections);

  options.lock_holder = "spool-smtpd pid " + std::to_string(getpid());
  StatusOr<std::unique_ptr<Spool>> spool = Spool::Open(options);
  if (!spool.ok()) {
    PrintError("cannot open the spool: " + std::string(spool.status().message()));
    return kExitCannotOpen;
  }
  StatusOr<std::unique_ptr<Server>> server = Server::Create(spool->get(), settings.server);
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
