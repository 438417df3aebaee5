// What spool-opensmtpd-queue keeps in a spool message's metadata: the OpenSMTPD msgid and
// the message's envelopes (evpid -> smtpd's envelope bytes, opaque and binary-safe).
//
// The encoding is text framing with lengths, so that spool-ctl show prints it readably:
//   "opensmtpd-queue 1 msgid 0a1b2c3d\n"
//   then per envelope, in evpid order: "<evpid, 16 hex digits> <length>\n" <bytes> "\n".
//
// Thread-safety: pure functions.

#ifndef SPOOL_TOOLS_OPENSMTPD_ENVELOPES_H_
#define SPOOL_TOOLS_OPENSMTPD_ENVELOPES_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

namespace spool::opensmtpd {

struct QueuedMessage {
  uint32_t msgid = 0;
  std::map<uint64_t, std::string> envelopes;  // evpid -> bytes
};

// The bytes EncodeQueuedMessage makes of `m`, without making them.
size_t EncodedSize(const QueuedMessage& m);
// Bytes one more envelope of `bytes` adds to EncodedSize.
size_t EncodedEnvelopeSize(size_t bytes);
std::string EncodeQueuedMessage(const QueuedMessage& m);
// False if `in` is not such an encoding (not a message of this backend, or damaged).
bool DecodeQueuedMessage(std::string_view in, QueuedMessage* m);

// The msgid part of an evpid (OpenSMTPD's evpid_to_msgid).
inline uint32_t MsgidOf(uint64_t evpid) { return static_cast<uint32_t>(evpid >> 32); }

}  // namespace spool::opensmtpd

#endif  // SPOOL_TOOLS_OPENSMTPD_ENVELOPES_H_
