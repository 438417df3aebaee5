// OpenSMTPD's external queue protocol ("queue-proc", PROC_QUEUE_API_VERSION 2, as in
// OpenSMTPD 6.8): imsg framing over the socket smtpd hands its queue backend on fd 0.
// docs/opensmtpd.md describes the protocol and how spool-opensmtpd-queue maps it.
//
// A message is a 16-byte header in host byte order (type, total length, flags, peer id,
// pid) and a payload; a file descriptor travels by SCM_RIGHTS with the message's first
// byte when the flags say so. smtpd sends one request and blocks until its reply: the
// backend answers every request exactly once, in order, with type kOk (any other type is
// fatal to smtpd).
//
// Thread-safety: a Channel is thread-compatible (one thread at a time).

#ifndef SPOOL_TOOLS_OPENSMTPD_PROC_PROTOCOL_H_
#define SPOOL_TOOLS_OPENSMTPD_PROC_PROTOCOL_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>

#include "spool/status.h"

namespace spool::opensmtpd {

// Request types (smtpd-api.h, enum queue_proc_type). kOk is the only reply type.
enum class RequestType : uint32_t {
  kOk = 0,
  kFail = 1,  // never sent by a backend: smtpd treats it as fatal
  kInit = 2,
  kClose = 3,
  kMessageCreate = 4,
  kMessageDelete = 5,
  kMessageCommit = 6,
  kMessageFdR = 7,
  kEnvelopeCreate = 8,
  kEnvelopeDelete = 9,
  kEnvelopeLoad = 10,
  kEnvelopeUpdate = 11,
  kEnvelopeWalk = 12,
};
inline constexpr uint32_t kMaxRequestType = 12;
// The protocol version smtpd sends with kInit (PROC_QUEUE_API_VERSION).
inline constexpr uint32_t kApiVersion = 2;

// imsg framing (openbsd-compat/imsg.h): the header, the flag of an attached fd, and the
// largest message, header included (MAX_IMSGSIZE): a larger reply is fatal to smtpd.
inline constexpr size_t kHeaderSize = 16;
inline constexpr uint16_t kFlagHasFd = 1;
inline constexpr size_t kMaxMessageSize = 16384;
// sizeof(struct envelope) in OpenSMTPD 6.8 on amd64: smtpd's envelope buffers. An
// envelope text is shorter; a kEnvelopeLoad reply longer than this is fatal to smtpd.
inline constexpr size_t kEnvelopeMax = 7568;

// A message read from the socket. Owns `fd` (-1: none) until it is taken.
struct ProcMessage {
  RequestType type = RequestType::kOk;
  std::string payload;
  int fd = -1;
  ProcMessage() = default;
  ProcMessage(const ProcMessage&) = delete;
  ProcMessage& operator=(const ProcMessage&) = delete;
  ProcMessage(ProcMessage&& other) noexcept;
  ProcMessage& operator=(ProcMessage&& other) noexcept;
  ~ProcMessage();
};

// One end of the queue-proc socket.
class Channel {
 public:
  // Uses `fd` (a connected AF_UNIX stream socket, blocking); does not own it.
  explicit Channel(int fd) : fd_(fd) {}

  // Reads the next whole message, waiting for it. Returns nullopt at a clean end of the
  // stream (smtpd's queue process exited). Errors: kIoError (the socket failed, or the
  // stream ended inside a message); kCorruption (a header whose length is impossible, a
  // flag announcing an fd that did not come).
  StatusOr<std::optional<ProcMessage>> Read();

  // Sends a kOk reply with `payload` and, if fd >= 0, that descriptor (closed here once
  // sent, also on failure). REQUIRES: kHeaderSize + payload.size() <= kMaxMessageSize.
  // Errors: kIoError.
  Status Reply(std::string_view payload, int fd = -1);

 private:
  // Reads more bytes (and descriptors) into the buffers; false at the end of the stream.
  StatusOr<bool> Fill();

  const int fd_;
  std::string buffer_;
  std::deque<int> fds_;  // received, not yet handed to a message
};

}  // namespace spool::opensmtpd

#endif  // SPOOL_TOOLS_OPENSMTPD_PROC_PROTOCOL_H_
