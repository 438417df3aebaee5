#include "tools/opensmtpd/proc_protocol.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "io/errno_status.h"

namespace spool::opensmtpd {
namespace {

// Descriptors one recvmsg accepts: smtpd sends at most one per message, and at most one
// message is in flight.
constexpr size_t kMaxFdsPerRead = 4;
constexpr size_t kReadChunk = 65536;

struct Header {
  uint32_t type;
  uint16_t len;
  uint16_t flags;
  uint32_t peerid;
  uint32_t pid;
};
static_assert(sizeof(Header) == kHeaderSize);

}  // namespace

ProcMessage::ProcMessage(ProcMessage&& other) noexcept
    : type(other.type), payload(std::move(other.payload)), fd(std::exchange(other.fd, -1)) {}

ProcMessage& ProcMessage::operator=(ProcMessage&& other) noexcept {
  if (this != &other) {
    if (fd >= 0) close(fd);
    type = other.type;
    payload = std::move(other.payload);
    fd = std::exchange(other.fd, -1);
  }
  return *this;
}

ProcMessage::~ProcMessage() {
  if (fd >= 0) close(fd);
}

StatusOr<bool> Channel::Fill() {
  char data[kReadChunk];
  alignas(struct cmsghdr) char control[CMSG_SPACE(kMaxFdsPerRead * sizeof(int))];
  struct iovec iov = {data, sizeof(data)};
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n;
  do {
    n = recvmsg(fd_, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return io::ErrnoToStatus(errno, "recvmsg", "the queue-proc socket");
  for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      fds_.push_back(fd);
    }
  }
  if ((msg.msg_flags & MSG_CTRUNC) != 0) {
    return CorruptionError("queue-proc: descriptors were truncated (more than expected)");
  }
  if (n == 0) return false;
  buffer_.append(data, static_cast<size_t>(n));
  return true;
}

StatusOr<std::optional<ProcMessage>> Channel::Read() {
  for (;;) {
    if (buffer_.size() >= kHeaderSize) {
      Header h;
      std::memcpy(&h, buffer_.data(), kHeaderSize);
      if (h.len < kHeaderSize || h.len > kMaxMessageSize) {
        return CorruptionError("queue-proc: a message of impossible length " +
                               std::to_string(h.len));
      }
      if (buffer_.size() >= h.len) {
        ProcMessage m;
        m.type = static_cast<RequestType>(h.type);
        m.payload = buffer_.substr(kHeaderSize, h.len - kHeaderSize);
        buffer_.erase(0, h.len);
        if ((h.flags & kFlagHasFd) != 0) {
          if (fds_.empty()) {
            return CorruptionError(
                "queue-proc: a message announces a descriptor that did not "
                "come");
          }
          m.fd = fds_.front();
          fds_.pop_front();
        }
        return std::optional<ProcMessage>(std::move(m));
      }
    }
    SPOOL_ASSIGN_OR_RETURN(bool more, Fill());
    if (!more) {
      if (buffer_.empty()) return std::optional<ProcMessage>();
      return IoError("queue-proc: the socket closed inside a message");
    }
  }
}

Status Channel::Reply(std::string_view payload, int fd) {
  Header h = {};
  h.type = static_cast<uint32_t>(RequestType::kOk);
  h.len = static_cast<uint16_t>(kHeaderSize + payload.size());
  h.flags = fd >= 0 ? kFlagHasFd : 0;
  h.pid = static_cast<uint32_t>(getpid());
  std::string out(reinterpret_cast<const char*>(&h), kHeaderSize);
  out.append(payload);
  size_t sent = 0;
  Status result = Status::Ok();
  while (sent < out.size()) {
    struct iovec iov = {out.data() + sent, out.size() - sent};
    struct msghdr msg = {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    if (sent == 0 && fd >= 0) {  // the descriptor goes with the first byte
      msg.msg_control = control;
      msg.msg_controllen = sizeof(control);
      struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int));
      std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
    }
    const ssize_t n = sendmsg(fd_, &msg, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      result = io::ErrnoToStatus(errno, "sendmsg", "the queue-proc socket");
      break;
    }
    sent += static_cast<size_t>(n);
  }
  if (fd >= 0) close(fd);
  return result;
}

}  // namespace spool::opensmtpd
