// The OpenSMTPD queue on a spool: each request of the queue-proc protocol
// (proc_protocol.h) mapped onto spool calls, so that what smtpd was told is stored
// survives a crash exactly as acknowledged. The mapping (docs/opensmtpd.md):
//   - a message being received (MESSAGE_CREATE, its ENVELOPE_CREATEs) lives in memory
//     only: smtpd forgets uncommitted messages at a restart;
//   - MESSAGE_COMMIT stores the body and the envelopes as one spool message (the
//     envelopes in its metadata: envelopes.h), durable before the reply;
//   - ENVELOPE_CREATE, _UPDATE and _DELETE on a committed message replace the metadata
//     durably (Spool::SetMetadata); deleting the last envelope removes the message;
//   - MESSAGE_FD_R hands out the checksum-verified body in a memfd (none for a damaged
//     body: smtpd then tempfails its envelopes, and the rest of the queue flows);
//   - ENVELOPE_WALK returns the committed envelopes as they were at INIT, grouped by
//     message.
//
// Thread-safety: thread-compatible; smtpd sends one request at a time.

#ifndef SPOOL_TOOLS_OPENSMTPD_QUEUE_BACKEND_H_
#define SPOOL_TOOLS_OPENSMTPD_QUEUE_BACKEND_H_

#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "spool/spool.h"
#include "spool/status.h"
#include "tools/opensmtpd/envelopes.h"
#include "tools/opensmtpd/proc_protocol.h"

namespace spool::opensmtpd {

// The queue's spool messages are in this scheduling queue (spool-ctl list --queue).
inline constexpr char kSpoolQueue[] = "opensmtpd";

// A reply's payload and the descriptor that goes with it (-1: none; owned by the reply
// until sent).
struct Reply {
  std::string payload;
  int fd = -1;
};

class QueueBackend {
 public:
  // REQUIRES: `spool` outlives the backend and is writable.
  explicit QueueBackend(Spool* spool);

  // Answers one request. A failure that smtpd can handle (a full disk, a damaged body, an
  // unknown id) is an answer too: r=0, an empty load, no descriptor, with a log line.
  // Errors, after which the backend must stop (smtpd then stops too, having no queue):
  // kInvalidArgument (a request that breaks the protocol: an unknown type, a payload of
  // the wrong size, another API version); the spool's, from the walk at INIT.
  StatusOr<Reply> Handle(ProcMessage& request);

  // Whether smtpd sent CLOSE (an orderly shutdown: the socket's end follows).
  bool closed() const { return closed_; }

 private:
  struct Incoming {
    std::map<uint64_t, std::string> envelopes;
    size_t encoded_size = 0;  // EncodedSize of the message as it stands
  };
  // A committed message as stored.
  struct Stored {
    MessageId id;
    QueuedMessage message;
  };

  StatusOr<Reply> Init(const ProcMessage& request);
  Reply MessageCreate();
  Reply MessageDelete(uint32_t msgid);
  Reply MessageCommit(uint32_t msgid, int fd);
  Reply MessageFdR(uint32_t msgid);
  Reply EnvelopeCreate(uint32_t msgid, std::string_view bytes);
  Reply EnvelopeDelete(uint64_t evpid);
  Reply EnvelopeLoad(uint64_t evpid);
  Reply EnvelopeUpdate(uint64_t evpid, std::string_view bytes);
  Reply EnvelopeWalk();

  // The committed message `msgid` as stored now. kNotFound if there is none.
  StatusOr<Stored> Load(uint32_t msgid);
  // Stores `stored.message` as the message's metadata, or removes the message when it has
  // no envelope left.
  Status Save(uint32_t msgid, const Stored& stored);
  uint32_t NewMsgid();
  uint64_t NewEvpid(uint32_t msgid, const std::map<uint64_t, std::string>& taken);

  Spool* const spool_;
  std::mt19937_64 random_;
  bool closed_ = false;
  std::map<uint32_t, Incoming> incoming_;
  std::map<uint32_t, MessageId> committed_;
  // The walk: each committed message's envelopes at INIT, and how far smtpd has come.
  std::vector<std::pair<uint32_t, std::vector<uint64_t>>> walk_;
  size_t walk_message_ = 0, walk_envelope_ = 0;
};

}  // namespace spool::opensmtpd

#endif  // SPOOL_TOOLS_OPENSMTPD_QUEUE_BACKEND_H_
