#include "tools/smtpd/server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <new>
#include <optional>
#include <utility>

#include "spool/logging.h"
#include "spool/smtp_reply.h"
#include "tools/smtpd/protocol.h"

namespace spool::smtpd {
namespace {

// epoll tokens: the eventfd, then the listeners, then sessions (by serial).
constexpr uint64_t kWakeToken = 0;
constexpr uint64_t kFirstListenToken = 1;
constexpr uint64_t kFirstSessionSerial = uint64_t{1} << 32;

constexpr size_t kReadChunk = 16 << 10;
// Bytes read from one connection per wake-up, so that one fast sender cannot starve the
// others (the rest is read on the next round: the epoll is level-triggered).
constexpr size_t kReadBudget = 256 << 10;
// A client that pipelines commands faster than it reads replies, or whose DATA waits for
// a write or the budget, is not read further until these drain.
constexpr size_t kMaxBufferedInput = 64 << 10;
// An envelope's bytes besides its paths (the record's fixed fields, the queue name, the
// metadata) and per recipient (a length prefix), rounded up.
constexpr size_t kEnvelopeFixedBytes = 1 << 10;
constexpr size_t kEnvelopeBytesPerRecipient = 16;
// Over the budget, a session in DATA writes out what it holds once it is at least this
// fraction of a chunk (1/8), before it takes more, and so do the sessions that wait for
// their client: the budget frees itself, without a flood of tiny chunks; below it, a
// session reads on (so the budget never waits for itself). With the defaults, 1000
// sessions each under the fraction hold 16 MiB, a quarter of the budget.
constexpr size_t kBudgetFlushDivisor = 8;
// A DATA buffer with less room than this is written out before more is decoded into it
// (a Feed needs a few bytes to decide on a line end).
constexpr size_t kMinFeedRoom = 64;
constexpr size_t kMaxPendingOutput = 64 << 10;
constexpr int kMaxEvents = 256;
constexpr int64_t kMaxSweepIntervalMs = 1000;

// Replies of the protocol itself (the storage replies come from SmtpReplyFor).
constexpr std::string_view kReplyOk = "250 2.0.0 Ok";
constexpr std::string_view kReplyMailOk = "250 2.1.0 Ok";
constexpr std::string_view kReplyRcptOk = "250 2.1.5 Ok";
constexpr std::string_view kReplyStartData = "354 End data with <CR><LF>.<CR><LF>";
constexpr std::string_view kReplyBye = "221 2.0.0 Bye";
constexpr std::string_view kReplyVrfy =
    "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery";
constexpr std::string_view kReplyHelp =
    "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP";
constexpr std::string_view kReplyLineTooLong = "500 5.5.2 Error: line too long";
constexpr std::string_view kReplyUnknown = "500 5.5.2 Error: command not recognized";
constexpr std::string_view kReplyNotImplemented = "502 5.5.1 Error: command not implemented";
constexpr std::string_view kReplyNeedHelo = "503 5.5.1 Error: send HELO/EHLO first";
constexpr std::string_view kReplyNestedMail = "503 5.5.1 Error: nested MAIL command";
constexpr std::string_view kReplyNeedMail = "503 5.5.1 Error: need MAIL command";
constexpr std::string_view kReplyNeedRcpt = "503 5.5.1 Error: need RCPT command";
constexpr std::string_view kReplyHeloSyntax = "501 5.5.4 Syntax: EHLO hostname";
constexpr std::string_view kReplyMailSyntax = "501 5.5.4 Syntax: MAIL FROM:<address>";
constexpr std::string_view kReplyRcptSyntax = "501 5.5.4 Syntax: RCPT TO:<address>";
constexpr std::string_view kReplyNoArgs = "501 5.5.4 Syntax: no parameters allowed";
constexpr std::string_view kReplyVrfySyntax = "501 5.5.4 Syntax: VRFY address";
constexpr std::string_view kReplyBadRcpt = "501 5.1.3 Bad recipient address syntax";
constexpr std::string_view kReplyBadParam = "555 5.5.4 Unsupported parameter";
constexpr std::string_view kReplyTooManyRcpts = "452 4.5.3 Error: too many recipients";
constexpr std::string_view kReplyTimeout = "421 4.4.2 Error: timeout exceeded";
constexpr std::string_view kReplyTooManyErrors = "421 4.7.0 Error: too many errors";
constexpr std::string_view kReplyTooManyConnections = "421 4.7.0 Error: too many connections";
constexpr std::string_view kReplyClientConnections =
    "421 4.7.0 Error: too many connections from your address";
constexpr std::string_view kReplyClientRate =
    "421 4.7.0 Error: too many connections from your address; slow down";
constexpr std::string_view kReplyBareLf = "550 5.5.2 Error: bare <LF> or <CR> received";
constexpr std::string_view kReplyEnvelopeFull = "452 4.5.3 Error: too many recipients";
constexpr std::string_view kReplyBusy = "452 4.3.1 Error: too much mail in progress, try later";
constexpr std::string_view kReplyOutOfMemory = "451 4.3.0 Error: out of memory, try later";
constexpr std::string_view kReplyCommitTimeout =
    "451 4.3.0 Error: timeout while storing the message";

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string ErrnoText(int err) { return std::strerror(err); }

// "1.2.3.4:25" or "[::1]:25".
std::string AddressText(const sockaddr_storage& addr) {
  char host[INET6_ADDRSTRLEN] = "?";
  uint16_t port = 0;
  if (addr.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&addr);
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
    port = ntohs(in->sin_port);
    return std::string(host) + ":" + std::to_string(port);
  }
  if (addr.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&addr);
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
    port = ntohs(in6->sin6_port);
    return "[" + std::string(host) + "]:" + std::to_string(port);
  }
  return "?";
}

// The host part of AddressText (for logs and metadata).
std::string HostOf(const std::string& address) {
  const size_t colon = address.rfind(':');
  std::string host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  return host;
}

// Splits "HOST:PORT" / "[V6]:PORT".
bool SplitHostPort(const std::string& text, std::string* host, std::string* port) {
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return false;
    }
    *host = text.substr(1, close - 1);
    *port = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string::npos) return false;
    *host = text.substr(0, colon);
    *port = text.substr(colon + 1);
  }
  return !host->empty() && !port->empty();
}

// A client's word fit for one metadata field: every byte outside '!'..'~' (spaces,
// controls, 8-bit) becomes '?', so that it cannot add a field; at most `max` bytes.
std::string MetadataToken(std::string_view text, size_t max) {
  std::string out(text.substr(0, max));
  for (char& ch : out) {
    const auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c >= 0x7F) ch = '?';
  }
  return out;
}

}  // namespace

struct Server::Session {
  enum class Phase {
    kCommand,     // reading command lines
    kData,        // reading the message after 354
    kCommitting,  // the message is with the spool; input waits until the reply is sent
  };

  uint64_t serial = 0;
  int fd = -1;
  std::string peer;     // "1.2.3.4:5678"
  std::string client;   // "1.2.3.4": the key of the per-client limits
  uint32_t events = 0;  // the epoll interest registered

  std::string in;    // received, not yet processed
  std::string out;   // replies not yet sent
  bool eof = false;  // the client closed its side
  bool close_after_flush = false;
  bool skipping_long_line = false;
  int errors = 0;
  int64_t last_active_ms = 0;      // the last byte in or out
  int64_t connected_ms = 0;        // session_timeout_ms
  int64_t command_started_ms = 0;  // command_timeout_ms: the last reply or the greeting
  int64_t data_started_ms = 0;     // data_timeout_ms: the 354
  int64_t commit_started_ms = 0;   // commit_timeout_ms

  Phase phase = Phase::kCommand;
  bool greeted = false;  // HELO or EHLO seen
  std::string helo;      // as MetadataToken made it
  bool have_mail = false;
  std::string sender;
  std::vector<std::string> recipients;
  size_t envelope_bytes = 0;  // an upper bound of the encoded envelope
  std::optional<uint64_t> declared_size;
  DataDecoder decoder;
  // The body bytes decoded and not yet handed on (at most options.stream_chunk_size plus
  // one Feed); counted in pending_bytes_.
  std::string body;
  uint64_t body_size = 0;  // bytes of the body so far, handed on or not
  // A streamed message: begun at its first full buffer; a write thread holds it too while
  // `writing`.
  std::shared_ptr<BodyWriter> writer;
  bool writing = false;
  // Why the message will be refused once its data ends (too big, a failed write); the
  // rest of the data is read and dropped meanwhile.
  Status body_error;

  bool in_transaction() const { return have_mail || phase != Phase::kCommand; }
};

Server::Server(Spool* spool, const ServerOptions& options)
    : spool_(spool),
      options_(options),
      max_message_size_(spool->options().max_message_size),
      next_serial_(kFirstSessionSerial),
      writers_(std::make_unique<WorkerPool>(std::max(1, options.write_threads))) {}

Server::~Server() {
  writers_.reset();  // its jobs post to wake_fd_
  for (auto& [serial, s] : sessions_) {
    if (s->fd >= 0) close(s->fd);
  }
  for (int fd : listen_fds_) close(fd);
  if (wake_fd_ >= 0) close(wake_fd_);
  if (epoll_fd_ >= 0) close(epoll_fd_);
}

Listeners::~Listeners() {
  for (int fd : fds_) close(fd);
}

Listeners& Listeners::operator=(Listeners&& other) noexcept {
  std::swap(fds_, other.fds_);
  std::swap(bound_, other.bound_);
  return *this;
}

StatusOr<Listeners> Listeners::Bind(const std::vector<std::string>& addresses) {
  if (addresses.empty()) return InvalidArgumentError("no address to listen on");
  Listeners out;
  for (const std::string& text : addresses) {
    std::string host, port;
    if (!SplitHostPort(text, &host, &port)) {
      return InvalidArgumentError("--listen " + text + ": expected HOST:PORT");
    }
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* res = nullptr;
    if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res); rc != 0) {
      return InvalidArgumentError("--listen " + text + ": " + gai_strerror(rc));
    }
    std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> own(res, freeaddrinfo);
    const int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return InternalError("socket: " + ErrnoText(errno));
    out.fds_.push_back(fd);
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, res->ai_addr, res->ai_addrlen) != 0) {
      return FailedPreconditionError("--listen " + text + ": bind: " + ErrnoText(errno));
    }
    if (listen(fd, SOMAXCONN) != 0) {
      return FailedPreconditionError("--listen " + text + ": listen: " + ErrnoText(errno));
    }
    sockaddr_storage bound{};
    socklen_t len = sizeof(bound);
    getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
    out.bound_.push_back(AddressText(bound));
  }
  return out;
}

StatusOr<std::unique_ptr<Server>> Server::Create(Spool* spool, const ServerOptions& options,
                                                 Listeners listeners) {
  if (options.stream_chunk_size < kMinStreamChunk) {
    return InvalidArgumentError("the stream chunk size must be at least " +
                                std::to_string(kMinStreamChunk));
  }
  std::unique_ptr<Server> server(new Server(spool, options));
  server->hostname_ = options.hostname;
  if (server->hostname_.empty()) {
    char name[256] = {};
    if (gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') {
      std::strcpy(name, "localhost");
    }
    server->hostname_ = name;
  }
  server->epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (server->epoll_fd_ < 0) return InternalError("epoll_create1: " + ErrnoText(errno));
  server->wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (server->wake_fd_ < 0) return InternalError("eventfd: " + ErrnoText(errno));
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kWakeToken;
  if (epoll_ctl(server->epoll_fd_, EPOLL_CTL_ADD, server->wake_fd_, &ev) != 0) {
    return InternalError("epoll_ctl: " + ErrnoText(errno));
  }
  server->bound_ = listeners.addresses();
  server->listen_fds_ = std::exchange(listeners.fds_, {});
  for (size_t i = 0; i < server->listen_fds_.size(); ++i) {
    ev.events = EPOLLIN;
    ev.data.u64 = kFirstListenToken + i;
    if (epoll_ctl(server->epoll_fd_, EPOLL_CTL_ADD, server->listen_fds_[i], &ev) != 0) {
      return InternalError("epoll_ctl: " + ErrnoText(errno));
    }
  }
  return server;
}

void Server::RequestStop() {
  stop_requested_.store(true);
  const uint64_t one = 1;
  // A full counter (impossible in practice) still leaves the eventfd readable.
  (void)!write(wake_fd_, &one, sizeof(one));
}

Status Server::Run() {
  epoll_event events[kMaxEvents];
  int64_t next_sweep = NowMs();
  for (;;) {
    if (stop_requested_.load() && !draining_) BeginDrain();
    if (draining_ && sessions_.empty() && work_in_flight_ == 0) break;

    const int64_t now = NowMs();
    if (now >= next_sweep) {
      Sweep(now);
      const int64_t shortest =
          std::min({options_.idle_timeout_ms, options_.command_timeout_ms, options_.data_timeout_ms,
                    options_.session_timeout_ms, options_.commit_timeout_ms});
      next_sweep = now + std::min<int64_t>(kMaxSweepIntervalMs, std::max<int64_t>(1, shortest / 4));
      continue;  // Sweep may have closed the last session while draining
    }
    const int n = epoll_wait(epoll_fd_, events, kMaxEvents, static_cast<int>(next_sweep - now));
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      // The writes in flight finish, and no writer outlives this call: the spool may be
      // closed before the server is destroyed.
      writers_.reset();
      for (auto& [serial, session] : sessions_) session->writer.reset();
      return InternalError("epoll_wait: " + ErrnoText(err));
    }
    for (int i = 0; i < n; ++i) {
      const uint64_t token = events[i].data.u64;
      if (token == kWakeToken) {
        uint64_t count;
        (void)!read(wake_fd_, &count, sizeof(count));
        DrainCompletions();
      } else if (token < kFirstSessionSerial) {
        const size_t index = token - kFirstListenToken;
        if (index < listen_fds_.size() && listen_fds_[index] >= 0) Accept(listen_fds_[index]);
      } else {
        auto it = sessions_.find(token);
        if (it != sessions_.end()) OnSessionEvent(*it->second, events[i].events);
      }
    }
    RelieveBudget();
  }
  Log(LogLevel::kInfo, "smtpd: drained, every session closed");
  return Status::Ok();
}

void Server::SetListenersEnabled(bool enabled) {
  if (enabled == listeners_enabled_) return;
  listeners_enabled_ = enabled;
  for (size_t i = 0; i < listen_fds_.size(); ++i) {
    if (listen_fds_[i] < 0) continue;
    epoll_event ev{};
    ev.events = enabled ? uint32_t{EPOLLIN} : uint32_t{0};
    ev.data.u64 = kFirstListenToken + i;
    epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, listen_fds_[i], &ev);
  }
}

void Server::Accept(int listen_fd) {
  for (;;) {
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    const int fd =
        accept4(listen_fd, reinterpret_cast<sockaddr*>(&addr), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // Out of descriptors: stop accepting until a session closes (a level-triggered
        // listener would otherwise spin).
        Log(LogLevel::kWarning, "smtpd: accept: " + ErrnoText(errno) + "; pausing accepts");
        SetListenersEnabled(false);
      }
      return;
    }
    const std::string peer = AddressText(addr);
    const std::string client = HostOf(peer);
    const int64_t now = NowMs();
    std::string_view refusal;
    if (sessions_.size() >= options_.max_connections) {
      refusal = kReplyTooManyConnections;
    } else {
      const size_t open = clients_.count(client) != 0 ? clients_[client].connections : 0;
      if (open >= options_.max_connections_per_client) {
        refusal = kReplyClientConnections;
      } else if (!AdmitClient(client, now)) {
        refusal = kReplyClientRate;
      }
    }
    if (!refusal.empty()) {
      std::string line(refusal);
      line += "\r\n";
      (void)!send(fd, line.data(), line.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      close(fd);
      Log(LogLevel::kWarning, "smtpd: " + peer + ": refused: " + std::string(refusal.substr(10)));
      continue;
    }
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    std::unique_ptr<Session> owned;
    try {
      owned = std::make_unique<Session>();
      owned->peer = peer;
      owned->client = client;
      owned->decoder =
          DataDecoder(options_.normalize_bare_line_endings ? BareLineEndings::kNormalize
                                                           : BareLineEndings::kKeep);
    } catch (const std::bad_alloc&) {
      close(fd);
      Log(LogLevel::kError, "smtpd: " + peer + ": refused: out of memory");
      continue;
    }
    ++clients_[client].connections;
    Session& s = *owned;
    s.serial = next_serial_++;
    s.fd = fd;
    s.last_active_ms = s.connected_ms = s.command_started_ms = now;
    sessions_.emplace(s.serial, std::move(owned));
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = s.serial;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
      Log(LogLevel::kError, "smtpd: epoll_ctl: " + ErrnoText(errno));
      Close(s);
      continue;
    }
    s.events = EPOLLIN;

    // Admission at connect: a spool that is not serving at all is refused here; a full
    // or faulty one is refused at MAIL, where the client can be told why (RFC 5321
    // allows only 220, 421 and 554 as a greeting).
    const Status admission = spool_->Admission(0);
    const SmtpReply reply = SmtpReplyFor(admission);
    if (!admission.ok() && reply.code == 421) {
      Log(LogLevel::kWarning, "smtpd: " + peer + ": refused at connect: " + admission.ToString());
      Reply(s, reply.ToString());
      CloseAfterReply(s);
    } else {
      Reply(s, "220 " + hostname_ + " ESMTP spool-smtpd");
    }
    const uint64_t serial = s.serial;
    Flush(s);
    if (sessions_.count(serial) != 0) UpdateInterest(s);
  }
}

bool Server::AdmitClient(const std::string& host, int64_t now_ms) {
  const size_t rate = options_.max_connection_rate_per_client;
  if (rate == 0) return true;
  Client& c = clients_[host];
  if (c.refilled_ms == 0) {
    c.tokens = static_cast<double>(rate);
  } else {
    const double per_ms = static_cast<double>(rate) / 60'000.0;
    c.tokens = std::min(static_cast<double>(rate),
                        c.tokens + static_cast<double>(now_ms - c.refilled_ms) * per_ms);
  }
  c.refilled_ms = now_ms;
  if (c.tokens < 1) return false;
  c.tokens -= 1;
  return true;
}

void Server::OnSessionEvent(Session& s, uint32_t events) {
  // Every buffer a session holds is bounded, but the process may still run out of memory
  // (an address-space limit, other sessions): that session gets 451 and is closed; the
  // others and the process go on.
  const uint64_t serial = s.serial;
  try {
    ProcessSession(s, events);
  } catch (const std::bad_alloc&) {
    if (auto it = sessions_.find(serial); it != sessions_.end()) OutOfMemory(*it->second);
  }
}

void Server::OutOfMemory(Session& s) {
  Log(LogLevel::kError, "smtpd: " + s.peer + ": out of memory; closing the session");
  std::string().swap(s.in);
  std::string().swap(s.out);
  ReleasePending(s.body.size());
  std::string().swap(s.body);
  s.writer.reset();
  s.body_error = Status::Ok();
  s.phase = s.phase == Session::Phase::kCommitting ? s.phase : Session::Phase::kCommand;
  Reply(s, kReplyOutOfMemory);
  CloseAfterReply(s);
  const uint64_t serial = s.serial;
  Flush(s);
  if (sessions_.count(serial) != 0) UpdateInterest(s);
}

void Server::ProcessSession(Session& s, uint32_t events) {
  const uint64_t serial = s.serial;
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) ReadInput(s);
  if ((events & (EPOLLHUP | EPOLLERR)) && (s.phase == Session::Phase::kCommitting || s.writing)) {
    // The connection is dead: the reply cannot reach it (and a level-triggered HUP would
    // repeat until the commit ends). The completion finds no session and says so.
    Close(s);
    return;
  }
  ProcessInput(s);
  Flush(s);
  if (sessions_.count(serial) == 0) return;
  MaybeDrain(s);
  Flush(s);
  if (sessions_.count(serial) == 0) return;
  if (s.eof && s.phase != Session::Phase::kCommitting && !s.writing) {
    // Nothing more can arrive; what could be answered has been.
    Close(s);
    return;
  }
  UpdateInterest(s);
}

void Server::ReadInput(Session& s) {
  size_t budget = kReadBudget;
  while (budget > 0 && !s.eof && !s.close_after_flush) {
    if (s.in.size() >= kMaxBufferedInput) break;
    const size_t old = s.in.size();
    s.in.resize(old + kReadChunk);
    const ssize_t n = recv(s.fd, s.in.data() + old, kReadChunk, 0);
    if (n <= 0) {
      s.in.resize(old);
      if (n == 0) {
        s.eof = true;
      } else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        break;
      } else {
        // A reset connection: whatever it sent before is still processed.
        s.eof = true;
      }
      break;
    }
    s.in.resize(old + static_cast<size_t>(n));
    s.last_active_ms = NowMs();
    budget -= std::min(budget, static_cast<size_t>(n));
    // In DATA the bytes go straight to the body, keeping the buffer small.
    if (s.phase == Session::Phase::kData) ProcessInput(s);
  }
}

void Server::ProcessInput(Session& s) {
  size_t pos = 0;
  while (pos < s.in.size() && !s.close_after_flush) {
    if (s.phase == Session::Phase::kCommitting) break;
    if (s.out.size() >= kMaxPendingOutput) break;
    if (s.phase == Session::Phase::kData) {
      if (!ProcessData(s, &pos)) break;
      continue;
    }
    // Command mode: one line up to LF.
    const size_t lf = s.in.find('\n', pos);
    if (lf == std::string::npos) {
      if (s.in.size() - pos > kMaxCommandLine) {
        // No end in sight: drop what there is; the line is answered when its end arrives.
        s.skipping_long_line = true;
        pos = s.in.size();
      }
      break;
    }
    std::string_view line(s.in.data() + pos, lf - pos);
    const size_t length_with_crlf = lf + 1 - pos + (line.empty() || line.back() != '\r' ? 1 : 0);
    pos = lf + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (s.skipping_long_line || length_with_crlf > kMaxCommandLine) {
      s.skipping_long_line = false;
      ReplyError(s, kReplyLineTooLong);
      continue;
    }
    if (draining_ && !s.in_transaction()) {
      MaybeDrain(s);
      break;
    }
    s.command_started_ms = NowMs();
    HandleLine(s, line);
  }
  if (s.close_after_flush) {
    s.in.clear();  // nothing after the closing reply is answered
  } else {
    s.in.erase(0, pos);
  }
}

bool Server::ProcessData(Session& s, size_t* pos) {
  if (s.writing) return false;  // reading resumes once the write is durable
  std::string_view input = std::string_view(s.in).substr(*pos);
  if (s.body_error.ok()) {
    const size_t chunk = options_.stream_chunk_size;
    const size_t room = chunk - std::min(chunk, s.body.size());
    if (room < kMinFeedRoom) {
      WriteBody(s, /*commit=*/false);
      return !s.writing;  // a message that could not begin is read on and dropped
    }
    if (OverBudget() && s.body.size() >= chunk / kBudgetFlushDivisor) {
      // Under pressure, smaller pieces sooner: what the session holds goes to the disk
      // before it takes more.
      WriteBody(s, /*commit=*/false);
      return !s.writing;
    }
    // Feed appends at most twice what it consumes (kNormalize): the buffer stays within
    // one chunk.
    input = input.substr(0, options_.normalize_bare_line_endings ? room / 2 : room);
  }
  bool done = false;
  const size_t before = s.body.size();
  const size_t used = s.decoder.Feed(input, s.body_error.ok() ? &s.body : nullptr, &done);
  *pos += used;
  pending_bytes_ += s.body.size() - before;
  s.body_size += s.body.size() - before;
  if (s.decoder.saw_bare_line_ending() && !options_.normalize_bare_line_endings) {
    // What the message is and where it ends is ambiguous from here: nothing more of the
    // connection is read (as Postfix's smtpd_forbid_bare_newline).
    Log(LogLevel::kInfo, "smtpd: " + s.peer + ": bare <LF> or <CR> in DATA; refused");
    ResetTransaction(s);
    Reply(s, kReplyBareLf);
    CloseAfterReply(s);
    return false;
  }
  if (s.body_error.ok() && s.body_size > max_message_size_) {
    // Over the limit: the rest is read and dropped, then 552 (RFC 5321 §4.5.3.1.10:
    // the client is still sending, so the reply waits for the end of the data).
    s.body_error = TooBigError("message over the limit");
    ReleasePending(s.body.size());
    std::string().swap(s.body);
    s.writer.reset();
  }
  if (done) {
    FinishData(s);
    return true;
  }
  return used > 0;
}

void Server::HandleLine(Session& s, std::string_view line) {
  const Command cmd = ParseCommand(line);
  switch (cmd.verb) {
    case Verb::kEhlo:
    case Verb::kHelo: {
      if (cmd.arg.empty()) {
        ReplyError(s, kReplyHeloSyntax);
        return;
      }
      ResetTransaction(s);
      s.greeted = true;
      s.helo = MetadataToken(cmd.arg, kMaxHeloInMetadata);
      if (cmd.verb == Verb::kHelo) {
        Reply(s, "250 " + hostname_);
      } else {
        Reply(s, "250-" + hostname_ + "\r\n250-PIPELINING\r\n250-SIZE " +
                     std::to_string(max_message_size_) +
                     "\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES");
      }
      return;
    }
    case Verb::kMail:
      HandleMail(s, cmd.arg);
      return;
    case Verb::kRcpt:
      HandleRcpt(s, cmd.arg);
      return;
    case Verb::kData:
      HandleData(s, cmd.arg);
      return;
    case Verb::kRset:
      if (!cmd.arg.empty()) {
        ReplyError(s, kReplyNoArgs);
        return;
      }
      ResetTransaction(s);
      Reply(s, kReplyOk);
      return;
    case Verb::kNoop:
      Reply(s, kReplyOk);
      return;
    case Verb::kQuit:
      Reply(s, kReplyBye);
      CloseAfterReply(s);
      return;
    case Verb::kVrfy:
      if (cmd.arg.empty()) {
        ReplyError(s, kReplyVrfySyntax);
        return;
      }
      Reply(s, kReplyVrfy);
      return;
    case Verb::kHelp:
      Reply(s, kReplyHelp);
      return;
    case Verb::kNotImplemented:
      ReplyError(s, kReplyNotImplemented);
      return;
    case Verb::kUnknown:
      ReplyError(s, kReplyUnknown);
      return;
  }
}

bool Server::RefusedByAdmission(Session& s, uint64_t expected_size) {
  const Status admission = spool_->Admission(expected_size);
  if (admission.ok()) return false;
  Log(LogLevel::kWarning, "smtpd: " + s.peer + ": refused: " + admission.ToString());
  ReplyStatus(s, admission);
  return true;
}

void Server::HandleMail(Session& s, std::string_view arg) {
  if (!s.greeted) return ReplyError(s, kReplyNeedHelo);
  if (s.have_mail) return ReplyError(s, kReplyNestedMail);
  PathArg path;
  switch (ParsePathArg(arg, "FROM", /*allow_params=*/true, &path)) {
    case PathError::kNone:
      break;
    case PathError::kSyntax:
      return ReplyError(s, kReplyMailSyntax);
    case PathError::kBadParameter:
      return ReplyError(s, kReplyBadParam);
  }
  if (path.size && *path.size > max_message_size_) {
    return ReplyError(s, SmtpReplyFor(TooBigError("declared size over the limit")).ToString());
  }
  if (RefusedByAdmission(s, path.size.value_or(0))) return;
  s.have_mail = true;
  s.sender = std::move(path.address);
  s.envelope_bytes = kEnvelopeFixedBytes + kMaxHeloInMetadata + s.sender.size();
  s.declared_size = path.size;
  Reply(s, kReplyMailOk);
}

void Server::HandleRcpt(Session& s, std::string_view arg) {
  if (!s.have_mail) return ReplyError(s, kReplyNeedMail);
  PathArg path;
  switch (ParsePathArg(arg, "TO", /*allow_params=*/false, &path)) {
    case PathError::kNone:
      break;
    case PathError::kSyntax:
      return ReplyError(s, kReplyRcptSyntax);
    case PathError::kBadParameter:
      return ReplyError(s, kReplyBadParam);
  }
  if (path.address.empty()) return ReplyError(s, kReplyBadRcpt);
  if (s.recipients.size() >= options_.max_recipients) {
    // Not counted as a client error: RFC 5321 §4.5.3.1.10 expects the client to send
    // the rest in another transaction.
    return Reply(s, kReplyTooManyRcpts);
  }
  const size_t bytes = path.address.size() + kEnvelopeBytesPerRecipient;
  if (s.envelope_bytes + bytes > kMaxEnvelopeBytes) {
    // The envelope would not fit the spool's record beside the body: refused now, while
    // the client can still send the rest in another transaction.
    return Reply(s, kReplyEnvelopeFull);
  }
  s.envelope_bytes += bytes;
  s.recipients.push_back(std::move(path.address));
  Reply(s, kReplyRcptOk);
}

void Server::HandleData(Session& s, std::string_view arg) {
  if (!arg.empty()) return ReplyError(s, kReplyNoArgs);
  if (!s.have_mail) return ReplyError(s, kReplyNeedMail);
  if (s.recipients.empty()) return ReplyError(s, kReplyNeedRcpt);
  if (RefusedByAdmission(s, s.declared_size.value_or(0))) return;
  if (OverBudget()) {
    Log(LogLevel::kWarning, "smtpd: " + s.peer + ": DATA refused: " +
                                std::to_string(pending_bytes_) + " bytes pending");
    return Reply(s, kReplyBusy);
  }
  s.phase = Session::Phase::kData;
  s.decoder.Reset();
  s.body.clear();
  s.body_size = 0;
  s.body_error = Status::Ok();
  s.data_started_ms = NowMs();
  Reply(s, kReplyStartData);
}

void Server::FinishData(Session& s) {
  if (!s.body_error.ok()) {
    const Status error = s.body_error;
    Log(LogLevel::kInfo, "smtpd: " + s.peer + ": message refused: " + error.ToString());
    ResetTransaction(s);
    if (error.code() == Code::kTooBig) {
      ReplyError(s, SmtpReplyFor(error).ToString());
    } else {
      ReplyStatus(s, error);
    }
    return;
  }
  s.phase = Session::Phase::kCommitting;
  s.commit_started_ms = NowMs();
  if (s.writer != nullptr) {
    WriteBody(s, /*commit=*/true);
    ResetTransaction(s);
    return;
  }
  // The whole body is in the buffer: one record, without a write thread.
  const Envelope envelope = MakeEnvelope(s);
  const std::string body = std::move(s.body);
  ResetTransaction(s);
  ++work_in_flight_;
  const uint64_t serial = s.serial;
  const size_t bytes = body.size();
  // The callback runs on a spool thread (or right here, for a message refused before it
  // reached the log): it only queues the result and wakes the loop.
  spool_->EnqueueAsync(envelope, body, [this, serial, bytes](const StatusOr<MessageId>& result) {
    Post({serial, Completion::Kind::kCommit, bytes, result});
  });
}

Envelope Server::MakeEnvelope(Session& s) {
  Envelope envelope;
  envelope.sender = s.sender;
  envelope.recipients = s.recipients;
  if (options_.record_client) {
    envelope.metadata = "client=" + MetadataToken(s.client, INET6_ADDRSTRLEN) + " helo=" + s.helo;
  }
  return envelope;
}

void Server::WriteBody(Session& s, bool commit) {
  if (s.writer == nullptr) {
    StatusOr<std::unique_ptr<BodyWriter>> writer = spool_->BeginMessage(MakeEnvelope(s));
    if (!writer.ok()) {
      if (commit) {
        // Cannot happen (a commit follows a first write), but answer it if it does.
        ReleasePending(s.body.size());
        std::string().swap(s.body);
        ++work_in_flight_;
        Post({s.serial, Completion::Kind::kCommit, 0, writer.status()});
        return;
      }
      s.body_error = writer.status();
      ReleasePending(s.body.size());
      std::string().swap(s.body);
      return;
    }
    s.writer = std::move(writer).value();
  }
  ++work_in_flight_;
  s.writing = !commit;
  const uint64_t serial = s.serial;
  // The job owns the bytes (moved out of the session: it holds none meanwhile) and a
  // reference to the writer, which it drops before it posts (see ~Server and Run: no
  // writer outlives the last completion).
  writers_->Submit([this, serial, commit, writer = s.writer, piece = std::move(s.body)]() mutable {
    const size_t bytes = piece.size();
    Completion c{serial, commit ? Completion::Kind::kCommit : Completion::Kind::kChunk, bytes,
                 InternalError("no result")};
    try {
      Status status = piece.empty() ? Status::Ok() : writer->Append(piece);
      if (commit) {
        c.result = status.ok() ? writer->Commit() : StatusOr<MessageId>(status);
      } else {
        c.result = status.ok() ? StatusOr<MessageId>(MessageId()) : StatusOr<MessageId>(status);
      }
    } catch (const std::bad_alloc&) {
      c.result = OverloadError("out of memory");  // 451 4.4.5, as for any overload
    }
    std::string().swap(piece);
    writer.reset();
    Post(std::move(c));
  });
  s.body = std::string();
}

void Server::Post(Completion c) {
  {
    MutexLock l(&mu_);
    completions_.push_back(std::move(c));
  }
  const uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof(one));
}

void Server::DrainCompletions() {
  completions_scratch_.clear();
  {
    MutexLock l(&mu_);
    completions_scratch_.swap(completions_);
  }
  for (Completion& c : completions_scratch_) {
    --work_in_flight_;
    ReleasePending(c.bytes);
    auto it = sessions_.find(c.serial);
    if (it == sessions_.end()) {
      if (c.kind == Completion::Kind::kCommit && c.result.ok()) {
        Log(LogLevel::kWarning,
            "smtpd: queued " + c.result->ToString() + " but its client had gone before the reply");
      }
      continue;
    }
    Session& s = *it->second;
    if (c.kind == Completion::Kind::kChunk) {
      s.writing = false;
      if (!c.result.ok() && s.body_error.ok()) {
        Log(LogLevel::kWarning,
            "smtpd: " + s.peer + ": message not stored: " + c.result.status().ToString());
        s.body_error = c.result.status();
        ReleasePending(s.body.size());
        std::string().swap(s.body);
        s.writer.reset();
      }
      OnSessionEvent(s, 0);
      continue;
    }
    s.writer.reset();
    s.phase = Session::Phase::kCommand;
    s.last_active_ms = s.command_started_ms = NowMs();
    if (c.result.ok()) {
      Log(LogLevel::kDebug, "smtpd: " + s.peer + ": queued as " + c.result->ToString());
      Reply(s, "250 2.0.0 Ok: queued as " + c.result->ToString());
    } else {
      Log(LogLevel::kWarning,
          "smtpd: " + s.peer + ": message not stored: " + c.result.status().ToString());
      ReplyStatus(s, c.result.status());
    }
    // Go on with what the client pipelined behind the data.
    OnSessionEvent(s, 0);
  }
  completions_scratch_.clear();
}

void Server::ReleasePending(size_t bytes) {
  pending_bytes_ -= std::min<uint64_t>(bytes, pending_bytes_);
}

void Server::RelieveBudget() {
  if (!OverBudget()) return;
  const size_t threshold = options_.stream_chunk_size / kBudgetFlushDivisor;
  for (auto& [serial, session] : sessions_) {
    Session& s = *session;
    if (s.phase == Session::Phase::kData && !s.writing && s.body_error.ok() &&
        s.body.size() >= threshold) {
      WriteBody(s, /*commit=*/false);
    }
  }
}

void Server::Reply(Session& s, std::string_view line) {
  s.out.append(line);
  s.out.append("\r\n");
}

void Server::ReplyError(Session& s, std::string_view line) {
  Reply(s, line);
  if (++s.errors >= options_.max_errors) {
    Reply(s, kReplyTooManyErrors);
    CloseAfterReply(s);
  }
}

void Server::ReplyStatus(Session& s, const Status& status) {
  const SmtpReply reply = SmtpReplyFor(status);
  Reply(s, reply.ToString());
  if (reply.code == 421) CloseAfterReply(s);
}

void Server::ResetTransaction(Session& s) {
  s.have_mail = false;
  s.sender.clear();
  s.recipients.clear();
  s.envelope_bytes = 0;
  s.declared_size.reset();
  if (s.phase == Session::Phase::kData) s.phase = Session::Phase::kCommand;
  ReleasePending(s.body.size());
  std::string().swap(s.body);
  s.body_size = 0;
  s.body_error = Status::Ok();
  // A streamed message not handed to a commit is aborted (a write thread may still hold
  // it for a chunk; the last reference aborts it).
  if (s.phase != Session::Phase::kCommitting) s.writer.reset();
}

void Server::CloseAfterReply(Session& s) { s.close_after_flush = true; }

void Server::Flush(Session& s) {
  while (!s.out.empty()) {
    const ssize_t n = send(s.fd, s.out.data(), s.out.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      // The client is gone: nothing more can reach it.
      s.out.clear();
      s.eof = true;
      s.close_after_flush = true;
      break;
    }
    s.out.erase(0, static_cast<size_t>(n));
    s.last_active_ms = NowMs();
  }
  if (s.out.empty() && s.close_after_flush && s.phase != Session::Phase::kCommitting &&
      !s.writing) {
    Close(s);
  }
}

void Server::UpdateInterest(Session& s) {
  uint32_t want = 0;
  const bool input_room = s.in.size() < kMaxBufferedInput;
  if (!s.eof && !s.close_after_flush && input_room && s.out.size() < kMaxPendingOutput) {
    want |= EPOLLIN;
  }
  if (!s.out.empty()) want |= EPOLLOUT;
  if (want == s.events) return;
  epoll_event ev{};
  ev.events = want;
  ev.data.u64 = s.serial;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, s.fd, &ev) == 0) s.events = want;
}

void Server::Close(Session& s) {
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, s.fd, nullptr);
  close(s.fd);
  s.fd = -1;
  ReleasePending(s.body.size());
  if (auto it = clients_.find(s.client); it != clients_.end()) {
    --it->second.connections;
    if (it->second.connections == 0 && options_.max_connection_rate_per_client == 0) {
      clients_.erase(it);
    }
  }
  sessions_.erase(s.serial);  // destroys s
  if (!listeners_enabled_ && !draining_) SetListenersEnabled(true);
}

void Server::MaybeDrain(Session& s) {
  if (!draining_ || s.close_after_flush || s.in_transaction()) return;
  ReplyStatus(s, UnavailableError("shutting down"));
  CloseAfterReply(s);
}

void Server::BeginDrain() {
  draining_ = true;
  drain_deadline_ms_ = NowMs() + options_.drain_timeout_ms;
  for (size_t i = 0; i < listen_fds_.size(); ++i) {
    if (listen_fds_[i] < 0) continue;
    epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, listen_fds_[i], nullptr);
    close(listen_fds_[i]);
    listen_fds_[i] = -1;
  }
  Log(LogLevel::kInfo, "smtpd: stopping: no new connections; " + std::to_string(sessions_.size()) +
                           " sessions, " + std::to_string(work_in_flight_) +
                           " commits and writes in flight");
  std::vector<uint64_t> serials;
  for (const auto& [serial, s] : sessions_) serials.push_back(serial);
  for (uint64_t serial : serials) {
    auto it = sessions_.find(serial);
    if (it == sessions_.end()) continue;
    Session& s = *it->second;
    MaybeDrain(s);
    Flush(s);
    if (sessions_.count(serial) != 0) UpdateInterest(s);
  }
}

void Server::Sweep(int64_t now_ms) {
  const bool drain_expired = draining_ && now_ms >= drain_deadline_ms_;
  std::vector<std::pair<uint64_t, std::string_view>> expired;  // serial, why
  for (const auto& [serial, session] : sessions_) {
    const Session& s = *session;
    std::string_view why;
    if (s.phase == Session::Phase::kCommitting) {
      if (now_ms - s.commit_started_ms >= options_.commit_timeout_ms) why = "commit";
    } else if (drain_expired) {
      why = "drain";
    } else if (now_ms - s.connected_ms >= options_.session_timeout_ms) {
      why = "session";
    } else if (s.phase == Session::Phase::kData &&
               now_ms - s.data_started_ms >= options_.data_timeout_ms) {
      why = "data";
    } else if (s.phase == Session::Phase::kCommand &&
               now_ms - s.command_started_ms >= options_.command_timeout_ms) {
      why = "command";
    } else if (!s.writing && now_ms - s.last_active_ms >= options_.idle_timeout_ms) {
      why = "idle";
    }
    if (!why.empty()) expired.emplace_back(serial, why);
  }
  for (const auto& [serial, why] : expired) {
    Session& s = *sessions_.at(serial);
    if (!s.close_after_flush || why == "commit") {
      Log(LogLevel::kInfo,
          "smtpd: " + s.peer + ": closed after the " + std::string(why) +
              (why == "drain" || why == "idle" || why == "commit" ? " timeout" : " deadline"));
      s.out.clear();
      if (why == "drain") {
        Reply(s, SmtpReplyFor(UnavailableError("shutting down")).ToString());
      } else if (why == "commit") {
        s.phase = Session::Phase::kCommand;  // its completion will find no session
        Reply(s, kReplyCommitTimeout);
      } else {
        Reply(s, kReplyTimeout);
      }
      ResetTransaction(s);
      CloseAfterReply(s);
      s.writing = false;  // a chunk in flight finds no session
      Flush(s);
      if (sessions_.count(serial) == 0) continue;
    }
    // Still unsent after a timeout: the client does not read. Give up on it.
    Close(s);
  }
  // Clients with no connection whose rate bucket is full again are forgotten.
  if (options_.max_connection_rate_per_client != 0) {
    const double full = static_cast<double>(options_.max_connection_rate_per_client);
    const double per_ms = full / 60'000.0;
    for (auto it = clients_.begin(); it != clients_.end();) {
      const Client& c = it->second;
      const bool refilled = c.tokens + static_cast<double>(now_ms - c.refilled_ms) * per_ms >= full;
      it = c.connections == 0 && refilled ? clients_.erase(it) : std::next(it);
    }
  }
}

}  // namespace spool::smtpd
