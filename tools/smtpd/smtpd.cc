#include "tools/smtpd/smtpd.h"

#include <ftw.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
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
// The largest count option (--max-connections, ...) and the longest timeout.
constexpr uint64_t kMaxCount = 1'000'000;
constexpr uint64_t kMaxSeconds = 86'400;
constexpr int64_t kMsPerSecond = 1000;
constexpr uint64_t kMaxWriteThreads = 64;
// Descriptors nftw may hold open while it walks a spool to hand it to --user.
constexpr int kWalkDescriptors = 16;

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
  --user USER                 after binding, run as USER (and its group, or --group): the
                              spool's files are given to them, then the spool is opened
  --group GROUP               the group for --user (default: USER's primary group)
  --max-message-size BYTES    larger messages get 552 5.3.4 (default 64M); advertised by SIZE
  --max-connections N         more get 421 4.7.0 at connect (default 1000)
  --max-connections-per-client N
                              more from one address get 421 4.7.0 (default 50)
  --max-connection-rate N     new connections per minute from one address; more get
                              421 4.7.0 (default 0: no limit)
  --max-recipients N          more RCPTs per message get 452 4.5.3 (default 1000); so does
                              a RCPT that would make the envelope larger than 60K
  --max-pending-bytes BYTES   DATA received and not yet durable, all sessions together; at
                              it, DATA gets 452 4.3.1 and sessions in DATA write out what
                              they hold before reading on (default 64M)
  --stream-chunk-size BYTES   DATA is held and written in pieces of this size; a smaller
                              message is one record (default 128K, at least 4K)
  --write-threads N           threads writing streamed DATA (default 4)
  --bare-line-endings reject|normalize
                              a bare LF or CR in DATA: 550 5.5.2 and the connection closed
                              (reject, the default), or stored as CRLF (normalize)
  --idle-timeout SECONDS      a client silent this long gets 421 4.4.2 and is closed
                              (default 300)
  --command-timeout SECONDS   a command line not complete this long after the last reply:
                              421 4.4.2 and closed (default 300)
  --data-timeout SECONDS      a message's DATA not ended this long after its 354: 421 4.4.2
                              and closed (default 600)
  --session-timeout SECONDS   a connection open this long: 421 4.4.2 and closed (default 1800)
  --commit-timeout SECONDS    a message not stored this long after its data ended: 451 4.3.0
                              and closed (default 120)
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
  std::optional<std::string> user;
  std::optional<std::string> group;
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
  flags->Value("--user", &settings->user, cli::Repeat::kOnce);
  flags->Value("--group", &settings->group, cli::Repeat::kOnce);
  DeclareCount(flags, "--max-connections", 1, kMaxCount, &server.max_connections);
  DeclareCount(flags, "--max-connections-per-client", 1, kMaxCount,
               &server.max_connections_per_client);
  DeclareCount(flags, "--max-connection-rate", 0, kMaxCount,
               &server.max_connection_rate_per_client);
  DeclareByteSize(flags, "--max-pending-bytes", 1, &server.max_pending_bytes);
  flags->Value("--stream-chunk-size", [&server](const std::string& v) {
    uint64_t n = 0;
    if (!ParseByteSize(v, &n) || n < kMinStreamChunk || n > kMaxStreamChunk) {
      return BadValue("--stream-chunk-size", v);
    }
    server.stream_chunk_size = static_cast<size_t>(n);
    return std::string();
  });
  DeclareCount(flags, "--write-threads", 1, kMaxWriteThreads, &server.write_threads);
  flags->Value("--bare-line-endings", [&server](const std::string& v) {
    if (v != "reject" && v != "normalize") return BadValue("--bare-line-endings", v);
    server.normalize_bare_line_endings = v == "normalize";
    return std::string();
  });
  DeclareCount(flags, "--command-timeout", 1, kMaxSeconds, &server.command_timeout_ms,
               kMsPerSecond);
  DeclareCount(flags, "--data-timeout", 1, kMaxSeconds, &server.data_timeout_ms, kMsPerSecond);
  DeclareCount(flags, "--session-timeout", 1, kMaxSeconds, &server.session_timeout_ms,
               kMsPerSecond);
  DeclareCount(flags, "--commit-timeout", 1, kMaxSeconds, &server.commit_timeout_ms, kMsPerSecond);
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

// Who --user and --group name.
struct RunAs {
  std::string user;
  uid_t uid = 0;
  gid_t gid = 0;
};

// Looks up --user and --group; an error message, or "" with *out set.
std::string LookUpRunAs(const std::string& user, const std::optional<std::string>& group,
                        RunAs* out) {
  const passwd* pw = getpwnam(user.c_str());
  if (pw == nullptr) return "--user " + user + ": no such user";
  out->user = user;
  out->uid = pw->pw_uid;
  out->gid = pw->pw_gid;
  if (group) {
    const struct group* gr = getgrnam(group->c_str());
    if (gr == nullptr) return "--group " + *group + ": no such group";
    out->gid = gr->gr_gid;
  }
  if (out->uid == 0) return "--user " + user + ": is root; name an unprivileged user";
  return "";
}

// The owner nftw's callback gives the files to (nftw passes no context).
RunAs walk_owner;
int walk_errno = 0;

int GiveToOwner(const char* path, const struct stat* st, int /*type*/, FTW* /*ftw*/) {
  if (st->st_uid == walk_owner.uid && st->st_gid == walk_owner.gid) return 0;
  // lchown: a symbolic link in a spool is not followed out of it.
  if (lchown(path, walk_owner.uid, walk_owner.gid) != 0) {
    walk_errno = errno;
    return 1;
  }
  return 0;
}

// Gives every file and directory under the spool's directories to `run_as` (creating
// the directories if missing), so that the user can open the spool and write to it.
std::string GiveSpoolTo(const std::vector<std::string>& dirs, const RunAs& run_as) {
  walk_owner = run_as;
  for (const std::string& dir : dirs) {
    std::error_code error;
    std::filesystem::create_directories(dir, error);
    if (error) return "cannot create " + dir + ": " + error.message();
    walk_errno = 0;
    if (nftw(dir.c_str(), GiveToOwner, kWalkDescriptors, FTW_PHYS) != 0) {
      return "cannot give " + dir + " to " + run_as.user + ": " +
             std::strerror(walk_errno != 0 ? walk_errno : errno);
    }
  }
  return "";
}

// Drops root for good: supplementary groups, group, then user (every thread: glibc
// applies set*id to the whole process).
std::string SwitchTo(const RunAs& run_as) {
  if (setgroups(1, &run_as.gid) != 0) return std::string("setgroups: ") + std::strerror(errno);
  if (setgid(run_as.gid) != 0) return std::string("setgid: ") + std::strerror(errno);
  if (setuid(run_as.uid) != 0) return std::string("setuid: ") + std::strerror(errno);
  if (setuid(0) == 0) return "still able to become root after setuid";
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
  if (settings.group && !settings.user) return flags.UsageError("--group needs --user");
  std::optional<RunAs> run_as;
  if (settings.user) {
    run_as.emplace();
    if (std::string error = LookUpRunAs(*settings.user, settings.group, &*run_as); !error.empty()) {
      return flags.UsageError(error);
    }
    if (geteuid() != 0) return flags.UsageError("--user needs to be started as root");
  } else if (geteuid() == 0) {
    Log(LogLevel::kWarning,
        "smtpd: running as root: every client talks to a root process; give --user USER to "
        "drop to it after binding (docs/smtpd.md, \"Privileges\")");
  }
  // The event loop never waits for the disk: a full commit queue is answered 451 at once,
  // and streamed DATA is written by the server's write threads as it arrives, piece by
  // piece (the spool holds none of it).
  options.async_commit_wait_ms = 0;
  options.stream_write_through = true;
  options.stream_chunk_size = settings.server.stream_chunk_size;

  // SIGTERM and SIGINT go to a thread of ours only: blocked here, before the spool
  // starts its threads (which inherit the mask), and taken by sigwait below.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  RaiseDescriptorLimit(settings.server.max_connections);

  // Bind first (a port under 1024 needs root), then give up root, then open the spool as
  // its owner: every file the spool creates from then on, from any of its threads, is
  // the user's (docs/smtpd.md, "Privileges").
  StatusOr<Listeners> listeners = Listeners::Bind(settings.server.listen);
  if (!listeners.ok()) {
    PrintError(std::string(listeners.status().message()));
    return kExitFailed;
  }
  if (run_as) {
    if (std::string error = GiveSpoolTo(options.dirs, *run_as); !error.empty()) {
      PrintError(error);
      return kExitCannotOpen;
    }
    if (std::string error = SwitchTo(*run_as); !error.empty()) {
      PrintError("cannot run as " + run_as->user + ": " + error);
      return kExitFailed;
    }
    Log(LogLevel::kInfo, "smtpd: running as " + run_as->user + " (uid " +
                             std::to_string(run_as->uid) + ", gid " + std::to_string(run_as->gid) +
                             ")");
  }

  options.lock_holder = "spool-smtpd pid " + std::to_string(getpid());
  StatusOr<std::unique_ptr<Spool>> spool = Spool::Open(options);
  if (!spool.ok()) {
    PrintError("cannot open the spool: " + std::string(spool.status().message()));
    return kExitCannotOpen;
  }
  StatusOr<std::unique_ptr<Server>> server =
      Server::Create(spool->get(), settings.server, std::move(listeners).value());
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
