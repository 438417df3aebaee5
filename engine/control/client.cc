// ControlClient (spool/control.h): a connection to a running spool's control socket.

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "control/control_server.h"
#include "control/json.h"
#include "io/errno_status.h"
#include "spool/control.h"

namespace spool {

StatusOr<std::unique_ptr<ControlClient>> ControlClient::Connect(
    const std::vector<std::string>& dirs) {
  Status last = UnavailableError("no control socket in " + (dirs.empty() ? "" : dirs[0]) +
                                 ": no running process serves this spool");
  for (const std::string& dir : dirs) {
    const std::string path = dir + "/" + kControlSocketName;
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
    int dir_fd = -1;
    StatusOr<std::string> address = control::SocketAddressPath(dir, &dir_fd);
    if (!address.ok()) return address.status();
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      const int err = errno;
      if (dir_fd >= 0) ::close(dir_fd);
      return io::ErrnoToStatus(err, "socket for", path);
    }
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, address->c_str(), address->size() + 1);
    int rc;
    do {
      rc = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    } while (rc != 0 && errno == EINTR);
    const int err = errno;
    if (dir_fd >= 0) ::close(dir_fd);
    if (rc != 0) {
      ::close(fd);
      if (err == ECONNREFUSED || err == ENOENT) {
        last = UnavailableError(path + " is stale: no running process serves it");
        continue;
      }
      if (err == EACCES || err == EPERM) {
        return PermissionError("cannot connect to " + path + ": " + std::strerror(err), err);
      }
      return io::ErrnoToStatus(err, "connect to", path);
    }
    std::unique_ptr<ControlClient> client(new ControlClient(fd));
    SPOOL_ASSIGN_OR_RETURN(client->hello_, client->ReadLine());
    SPOOL_ASSIGN_OR_RETURN(control::JsonValue hello, control::ParseJson(client->hello_));
    const control::JsonValue* type = hello.Find("type");
    if (type != nullptr && type->str == "result") {
      const control::JsonValue* message = hello.Find("message");
      const std::string why = message != nullptr ? message->str : client->hello_;
      const control::JsonValue* code = hello.Find("code");
      if (code != nullptr && code->str == "overload") return OverloadError(why);
      return PermissionError("the spool's control socket refused: " + why);
    }
    const control::JsonValue* version = hello.Find("version");
    if (type == nullptr || type->str != "hello" || version == nullptr) {
      return FailedPreconditionError(path + " does not speak the spool control protocol");
    }
    if (version->Int() != kControlProtocolVersion) {
      return FailedPreconditionError(path + " speaks control protocol version " +
                                     std::string(version->raw) + "; this build speaks version " +
                                     std::to_string(kControlProtocolVersion));
    }
    return client;
  }
  return last;
}

ControlClient::~ControlClient() { ::close(fd_); }

StatusOr<std::string> ControlClient::ReadLine() {
  char chunk[64 << 10];
  for (;;) {
    const size_t newline = buffer_.find('\n');
    if (newline != std::string::npos) {
      std::string line = buffer_.substr(0, newline);
      buffer_.erase(0, newline + 1);
      return line;
    }
    const ssize_t n = ::recv(fd_, chunk, sizeof(chunk), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return io::ErrnoToStatus(errno, "recv from", "the control socket");
    if (n == 0) {
      return IoError(
          "the spool's control connection closed before the answer was complete "
          "(the server stopped)");
    }
    buffer_.append(chunk, static_cast<size_t>(n));
  }
}

StatusOr<std::string> ControlClient::Call(
    std::string_view request, const std::function<void(std::string_view line)>& on_line) {
  std::string out(request);
  out += '\n';
  for (std::string_view rest = out; !rest.empty();) {
    const ssize_t n = ::send(fd_, rest.data(), rest.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return io::ErrnoToStatus(n < 0 ? errno : EPIPE, "send to", "the control socket");
    rest.remove_prefix(static_cast<size_t>(n));
  }
  for (;;) {
    SPOOL_ASSIGN_OR_RETURN(std::string line, ReadLine());
    // Only the final line has "type":"result"; the lines before it are short to tell.
    if (line.starts_with(R"({"type":"result")")) return line;
    if (on_line) on_line(line);
  }
}

}  // namespace spool
