#include "control/control_server.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "io/errno_status.h"
#include "spool/control.h"
#include "spool/logging.h"
#include "spool/metrics.h"

namespace spool::control {
namespace {

// Connections waiting to be accepted.
constexpr int kListenBacklog = 16;

// Writes all of `data` to `fd` (blocking); false if the peer is gone.
bool SendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

std::string Refusal(std::string_view code, std::string_view message) {
  return R"({"type":"result","ok":false,"code":)" + JsonQuote(code) + R"(,"message":)" +
         JsonQuote(message) + "}\n";
}

}  // namespace

StatusOr<std::string> SocketAddressPath(const std::string& dir, int* dir_fd) {
  *dir_fd = -1;
  const std::string path = dir + "/" + kControlSocketName;
  if (path.size() < sizeof(sockaddr_un::sun_path)) return path;
  *dir_fd = ::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (*dir_fd < 0) return io::ErrnoToStatus(errno, "open", dir);
  return "/proc/self/fd/" + std::to_string(*dir_fd) + "/" + kControlSocketName;
}

StatusOr<std::unique_ptr<ControlServer>> ControlServer::Start(Spool* spool,
                                                              const std::string& dir) {
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) return io::ErrnoToStatus(errno, "stat", dir);
  const std::string path = dir + "/" + kControlSocketName;
  int dir_fd = -1;
  SPOOL_ASSIGN_OR_RETURN(std::string address, SocketAddressPath(dir, &dir_fd));
  const auto close_dir = [&] {
    if (dir_fd >= 0) ::close(dir_fd);
  };
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    close_dir();
    return io::ErrnoToStatus(errno, "socket for", path);
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, address.c_str(), address.size() + 1);
  // Only the spool's lock holder serves the socket: one left behind is stale.
  if (::unlink(address.c_str()) != 0 && errno != ENOENT) {
    const int err = errno;
    ::close(fd);
    close_dir();
    return io::ErrnoToStatus(err, "unlink stale socket", path);
  }
  // The socket is reachable before chmod, but only through the spool directory (0700),
  // and no peer is served before listen(); every peer is checked anyway.
  Status status;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    status = io::ErrnoToStatus(errno, "bind", path);
  } else if (::chmod(address.c_str(), 0600) != 0) {
    status = io::ErrnoToStatus(errno, "chmod", path);
  } else if (::listen(fd, kListenBacklog) != 0) {
    status = io::ErrnoToStatus(errno, "listen", path);
  }
  const int wake = status.ok() ? ::eventfd(0, EFD_CLOEXEC) : -1;
  if (status.ok() && wake < 0) status = io::ErrnoToStatus(errno, "eventfd for", path);
  if (!status.ok()) {
    ::unlink(address.c_str());  // best effort: the failure reported is the first one
    ::close(fd);
    close_dir();
    return status;
  }
  close_dir();
  std::unique_ptr<ControlServer> server(new ControlServer(spool, path, fd, wake, st.st_uid));
  server->acceptor_ = std::thread([s = server.get()] { s->AcceptLoop(); });
  return server;
}

ControlServer::~ControlServer() {
  stopping_.store(true);
  const uint64_t one = 1;
  if (::write(wake_fd_, &one, sizeof(one)) < 0) {
    // Cannot happen for an eventfd below its maximum; the loops also poll stopping_.
  }
  if (acceptor_.joinable()) acceptor_.join();
  {
    MutexLock l(&mu_);
    for (Connection& c : connections_) ::shutdown(c.fd, SHUT_RDWR);
  }
  for (;;) {
    Connection* c = nullptr;
    {
      MutexLock l(&mu_);
      if (connections_.empty()) break;
      c = &connections_.front();
    }
    if (c->thread.joinable()) c->thread.join();
    MutexLock l(&mu_);
    ::close(c->fd);
    connections_.pop_front();
  }
  ::close(listen_fd_);
  ::close(wake_fd_);
  ::unlink(path_.c_str());  // best effort: a leftover socket is stale and replaced at open
}

void ControlServer::Reap() {
  for (auto it = connections_.begin(); it != connections_.end();) {
    if (!it->finished.load()) {
      ++it;
      continue;
    }
    it->thread.join();
    ::close(it->fd);
    it = connections_.erase(it);
  }
}

void ControlServer::AcceptLoop() {
  while (!stopping_.load()) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      Log(LogLevel::kError, path_ + ": control socket: poll: " + std::strerror(errno));
      return;
    }
    if (fds[1].revents != 0) return;
    if ((fds[0].revents & POLLIN) == 0) continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;  // the peer went away first, or a transient error: keep serving
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
      SendAll(fd, Refusal("permission", "cannot identify the peer (SO_PEERCRED)"));
      ::close(fd);
      continue;
    }
    if (cred.uid != 0 && cred.uid != owner_) {
      Log(LogLevel::kWarning, path_ + ": refused a control connection from uid " +
                                  std::to_string(cred.uid) + " (pid " + std::to_string(cred.pid) +
                                  ")");
      SendAll(fd, Refusal("permission", "uid " + std::to_string(cred.uid) +
                                            " may not control this spool (only its owner, uid " +
                                            std::to_string(owner_) + ", and root may)"));
      ::close(fd);
      continue;
    }
    MutexLock l(&mu_);
    Reap();
    if (connections_.size() >= kMaxConnections) {
      SendAll(fd, Refusal("overload", "too many control connections (" +
                                          std::to_string(kMaxConnections) +
                                          "); try again when one ends"));
      ::close(fd);
      continue;
    }
    Connection& c = connections_.emplace_back();
    c.fd = fd;
    c.thread = std::thread([this, conn = &c] { Serve(conn); });
  }
}

void ControlServer::Serve(Connection* c) {
  const std::string hello = R"({"type":"hello","protocol":"spool-control","version":)" +
                            std::to_string(kControlProtocolVersion) + R"(,"pid":)" +
                            std::to_string(::getpid()) + "}\n";
  std::string buffer;
  bool alive = SendAll(c->fd, hello);
  const auto emit = [&](std::string_view line) {
    std::string out(line);
    out += '\n';
    alive = alive && !stopping_.load() && SendAll(c->fd, out);
    return alive;
  };
  char chunk[64 << 10];
  while (alive && !stopping_.load()) {
    const size_t newline = buffer.find('\n');
    if (newline != std::string::npos) {
      const std::string line = buffer.substr(0, newline);
      buffer.erase(0, newline + 1);
      if (line.empty()) continue;
      RunControlRequest(*spool_, line, emit);
      continue;
    }
    if (buffer.size() > kMaxRequestBytes) {
      SendAll(c->fd, Refusal("invalid_argument",
                             "request longer than " + std::to_string(kMaxRequestBytes) + " bytes"));
      break;
    }
    pollfd fds[2] = {{c->fd, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[1].revents != 0) break;
    const ssize_t n = ::recv(c->fd, chunk, sizeof(chunk), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    buffer.append(chunk, static_cast<size_t>(n));
  }
  c->finished.store(true);
}

}  // namespace spool::control
