#include "tools/opensmtpd/queue_backend.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "io/errno_status.h"
#include "spool/logging.h"

namespace spool::opensmtpd {
namespace {

// Sizes of the fixed parts of payloads (smtpd-api.h, queue_proc.c).
constexpr size_t kMsgidSize = sizeof(uint32_t);
constexpr size_t kEvpidSize = sizeof(uint64_t);
constexpr size_t kIntSize = sizeof(int32_t);

template <typename T>
void Put(std::string* out, T v) {
  out->append(reinterpret_cast<const char*>(&v), sizeof(v));
}

template <typename T>
T Get(std::string_view payload) {
  T v;
  std::memcpy(&v, payload.data(), sizeof(v));
  return v;
}

Reply Result(bool ok) {
  Reply r;
  Put<int32_t>(&r.payload, ok ? 1 : 0);
  return r;
}

std::string Hex(uint64_t v, int digits) {
  char text[32];
  std::snprintf(text, sizeof(text), "%0*llx", digits, static_cast<unsigned long long>(v));
  return text;
}
std::string MsgidText(uint32_t msgid) { return Hex(msgid, 8); }
std::string EvpidText(uint64_t evpid) { return Hex(evpid, 16); }

void Warn(const std::string& message) { Log(LogLevel::kWarning, "queue-spool: " + message); }

Status ProtocolError(std::string_view what, const ProcMessage& m) {
  return InvalidArgumentError("queue-proc: " + std::string(what) + " (request type " +
                              std::to_string(static_cast<uint32_t>(m.type)) + ", payload of " +
                              std::to_string(m.payload.size()) + " bytes)");
}

// The value of "KEY: value" lines in OpenSMTPD's envelope text; "" if absent (or the
// envelope is not text: queue compression or encryption).
std::string EnvelopeField(std::string_view text, std::string_view key) {
  size_t at = 0;
  while (at < text.size()) {
    const size_t eol = std::min(text.find('\n', at), text.size());
    const std::string_view line = text.substr(at, eol - at);
    if (line.size() > key.size() + 2 && line.substr(0, key.size()) == key &&
        line.substr(key.size(), 2) == ": ") {
      return std::string(line.substr(key.size() + 2));
    }
    at = eol + 1;
  }
  return "";
}

// The spool envelope of a committed message: its sender and recipients as the first
// envelopes say (for operators: spool-ctl list and show), the envelopes in the metadata.
Envelope SpoolEnvelope(const QueuedMessage& m) {
  Envelope e;
  e.queue = kSpoolQueue;
  for (const auto& [evpid, bytes] : m.envelopes) {
    if (e.recipients.empty()) e.sender = EnvelopeField(bytes, "sender");
    std::string rcpt = EnvelopeField(bytes, "rcpt");
    e.recipients.push_back(rcpt.empty() ? EvpidText(evpid) : std::move(rcpt));
  }
  e.metadata = EncodeQueuedMessage(m);
  return e;
}

// The whole file behind `fd`, read from offset 0.
StatusOr<std::string> ReadWhole(int fd, uint64_t max_size) {
  struct stat st;
  if (fstat(fd, &st) != 0) return io::ErrnoToStatus(errno, "fstat", "the message file");
  if (static_cast<uint64_t>(st.st_size) > max_size) {
    return TooBigError("message of " + std::to_string(st.st_size) + " bytes over the limit of " +
                       std::to_string(max_size));
  }
  std::string body(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < body.size()) {
    const ssize_t n = pread(fd, body.data() + done, body.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return io::ErrnoToStatus(errno, "read", "the message file");
    if (n == 0) return IoError("the message file is shorter than its size");
    done += static_cast<size_t>(n);
  }
  return body;
}

Status WriteAll(int fd, std::string_view piece) {
  while (!piece.empty()) {
    const ssize_t n = write(fd, piece.data(), piece.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return io::ErrnoToStatus(errno, "write", "a memfd");
    piece.remove_prefix(static_cast<size_t>(n));
  }
  return Status::Ok();
}

}  // namespace

QueueBackend::QueueBackend(Spool* spool) : spool_(spool), random_(std::random_device{}()) {}

StatusOr<Reply> QueueBackend::Handle(ProcMessage& request) {
  const std::string_view p = request.payload;
  const auto need = [&](bool ok) -> Status {
    return ok ? Status::Ok() : ProtocolError("a payload of the wrong size", request);
  };
  switch (request.type) {
    case RequestType::kInit:
      return Init(request);
    case RequestType::kClose:
      SPOOL_RETURN_IF_ERROR(need(p.empty()));
      closed_ = true;
      return Result(true);
    case RequestType::kMessageCreate:
      SPOOL_RETURN_IF_ERROR(need(p.empty()));
      return MessageCreate();
    case RequestType::kMessageDelete:
      SPOOL_RETURN_IF_ERROR(need(p.size() == kMsgidSize));
      return MessageDelete(Get<uint32_t>(p));
    case RequestType::kMessageCommit: {
      SPOOL_RETURN_IF_ERROR(need(p.size() == kMsgidSize));
      const int fd = std::exchange(request.fd, -1);
      Reply r = MessageCommit(Get<uint32_t>(p), fd);
      if (fd >= 0) close(fd);
      return r;
    }
    case RequestType::kMessageFdR:
      SPOOL_RETURN_IF_ERROR(need(p.size() == kMsgidSize));
      return MessageFdR(Get<uint32_t>(p));
    case RequestType::kEnvelopeCreate:
      SPOOL_RETURN_IF_ERROR(need(p.size() > kMsgidSize && p.size() - kMsgidSize < kEnvelopeMax));
      return EnvelopeCreate(Get<uint32_t>(p), p.substr(kMsgidSize));
    case RequestType::kEnvelopeDelete:
      SPOOL_RETURN_IF_ERROR(need(p.size() == kEvpidSize));
      return EnvelopeDelete(Get<uint64_t>(p));
    case RequestType::kEnvelopeLoad:
      SPOOL_RETURN_IF_ERROR(need(p.size() == kEvpidSize));
      return EnvelopeLoad(Get<uint64_t>(p));
    case RequestType::kEnvelopeUpdate:
      SPOOL_RETURN_IF_ERROR(need(p.size() > kEvpidSize && p.size() - kEvpidSize < kEnvelopeMax));
      return EnvelopeUpdate(Get<uint64_t>(p), p.substr(kEvpidSize));
    case RequestType::kEnvelopeWalk:
      SPOOL_RETURN_IF_ERROR(need(p.empty()));
      return EnvelopeWalk();
    default:
      return ProtocolError("an unknown request", request);
  }
}

// The recovery: every committed message in the spool is smtpd's queue, walked in the
// order of the snapshot taken here; nothing uncommitted survived the restart.
StatusOr<Reply> QueueBackend::Init(const ProcMessage& request) {
  if (request.payload.size() != sizeof(uint32_t)) {
    return ProtocolError("INIT without a version", request);
  }
  if (const uint32_t version = Get<uint32_t>(request.payload); version != kApiVersion) {
    return InvalidArgumentError("queue-proc: smtpd speaks API version " + std::to_string(version) +
                                ", this backend version " + std::to_string(kApiVersion));
  }
  incoming_.clear();
  committed_.clear();
  walk_.clear();
  walk_message_ = walk_envelope_ = 0;
  std::vector<MessageId> empty;
  SPOOL_RETURN_IF_ERROR(spool_->ForEach([&](const MessageInfo& info) {
    QueuedMessage m;
    if (!DecodeQueuedMessage(info.envelope.metadata, &m)) {
      Warn("spool message " + info.id.ToString() +
           " holds no OpenSMTPD envelopes; left alone (spool-ctl show " + info.id.ToString() + ")");
      return true;
    }
    if (!committed_.emplace(m.msgid, info.id).second) {
      Warn("spool message " + info.id.ToString() + " has msgid " + MsgidText(m.msgid) +
           " of spool message " + committed_[m.msgid].ToString() + "; left alone");
      return true;
    }
    if (m.envelopes.empty()) {
      empty.push_back(info.id);
      return true;
    }
    std::vector<uint64_t> evpids;
    evpids.reserve(m.envelopes.size());
    for (const auto& [evpid, bytes] : m.envelopes) evpids.push_back(evpid);
    walk_.emplace_back(m.msgid, std::move(evpids));
    return true;
  }));
  for (const MessageId& id : empty) {
    if (Status s = spool_->Remove(id); !s.ok()) Warn("removing an empty message: " + s.ToString());
  }
  Log(LogLevel::kInfo, "queue-spool: " + std::to_string(walk_.size()) + " messages to walk");
  return Reply{};
}

Reply QueueBackend::MessageCreate() {
  if (Status s = spool_->Admission(0); !s.ok()) {
    Warn("refusing a new message (smtpd answers 421): " + s.ToString());
    Reply r = Result(false);
    return r;
  }
  const uint32_t msgid = NewMsgid();
  incoming_[msgid].encoded_size = EncodedSize(QueuedMessage{msgid, {}});
  Reply r = Result(true);
  Put<uint32_t>(&r.payload, msgid);
  return r;
}

Reply QueueBackend::MessageDelete(uint32_t msgid) {
  if (incoming_.erase(msgid) != 0) return Result(true);
  // smtpd deletes only uncommitted messages; a committed one goes with its envelopes.
  auto it = committed_.find(msgid);
  if (it == committed_.end()) return Result(true);
  if (Status s = spool_->Remove(it->second); !s.ok() && s.code() != Code::kNotFound) {
    Warn("message " + MsgidText(msgid) + ": removal failed: " + s.ToString());
    return Result(false);
  }
  committed_.erase(it);
  return Result(true);
}

Reply QueueBackend::MessageCommit(uint32_t msgid, int fd) {
  auto it = incoming_.find(msgid);
  if (it == incoming_.end() || fd < 0) {
    Warn("commit of message " + MsgidText(msgid) +
         (fd < 0 ? " without its file" : ", which is not being received"));
    return Result(false);
  }
  // smtpd sends no MESSAGE_DELETE after a failed commit: the message is forgotten either way.
  Incoming incoming = std::move(it->second);
  incoming_.erase(it);
  if (incoming.envelopes.empty()) {
    Warn("commit of message " + MsgidText(msgid) + " without envelopes");
    return Result(false);
  }
  StatusOr<std::string> body = ReadWhole(fd, spool_->options().max_message_size);
  if (!body.ok()) {
    Warn("commit of message " + MsgidText(msgid) + ": " + body.status().ToString());
    return Result(false);
  }
  const QueuedMessage m{msgid, std::move(incoming.envelopes)};
  StatusOr<MessageId> id = spool_->Enqueue(SpoolEnvelope(m), *body);
  if (!id.ok()) {
    Warn("commit of message " + MsgidText(msgid) +
         " (smtpd answers 421): " + id.status().ToString());
    return Result(false);
  }
  committed_[msgid] = *id;
  return Result(true);
}

Reply QueueBackend::MessageFdR(uint32_t msgid) {
  auto it = committed_.find(msgid);
  if (it == committed_.end()) {
    Warn("body of message " + MsgidText(msgid) + " asked for: no such committed message");
    return Reply{};
  }
  const int fd = memfd_create("queue-spool-body", MFD_CLOEXEC);
  if (fd < 0) {
    Warn("memfd_create: " + io::ErrnoToStatus(errno, "memfd_create", "").ToString());
    return Reply{};
  }
  Status s = spool_->ReadBodyStream(it->second,
                                    [&](std::string_view piece) { return WriteAll(fd, piece); });
  if (s.ok() && lseek(fd, 0, SEEK_SET) != 0) s = io::ErrnoToStatus(errno, "lseek", "a memfd");
  if (!s.ok()) {
    close(fd);
    Warn("message " + MsgidText(msgid) + " (spool message " + it->second.ToString() +
         "): body unavailable, its deliveries are tempfailed: " + s.ToString());
    return Reply{};
  }
  return Reply{"", fd};
}

Reply QueueBackend::EnvelopeCreate(uint32_t msgid, std::string_view bytes) {
  if (auto it = incoming_.find(msgid); it != incoming_.end()) {
    Incoming& in = it->second;
    const size_t size = in.encoded_size + EncodedEnvelopeSize(bytes.size());
    if (size > kMaxMetadataSize) {
      Warn("message " + MsgidText(msgid) + ": more envelopes than fit in " +
           std::to_string(kMaxMetadataSize) + " bytes (smtpd answers 421 to RCPT)");
      return Result(false);
    }
    const uint64_t evpid = NewEvpid(msgid, in.envelopes);
    in.envelopes.emplace(evpid, std::string(bytes));
    in.encoded_size = size;
    Reply r = Result(true);
    Put<uint64_t>(&r.payload, evpid);
    return r;
  }
  // An envelope added to a committed message: a bounce.
  StatusOr<Stored> stored = Load(msgid);
  if (!stored.ok()) {
    Warn("new envelope for message " + MsgidText(msgid) + ": " + stored.status().ToString());
    return Result(false);
  }
  const uint64_t evpid = NewEvpid(msgid, stored->message.envelopes);
  stored->message.envelopes.emplace(evpid, std::string(bytes));
  if (Status s = Save(msgid, *stored); !s.ok()) {
    Warn("new envelope for message " + MsgidText(msgid) + ": " + s.ToString());
    return Result(false);
  }
  Reply r = Result(true);
  Put<uint64_t>(&r.payload, evpid);
  return r;
}

Reply QueueBackend::EnvelopeDelete(uint64_t evpid) {
  const uint32_t msgid = MsgidOf(evpid);
  if (auto it = incoming_.find(msgid); it != incoming_.end()) {
    auto e = it->second.envelopes.find(evpid);
    if (e != it->second.envelopes.end()) {
      it->second.encoded_size -= EncodedEnvelopeSize(e->second.size());
      it->second.envelopes.erase(e);
    }
    return Result(true);
  }
  StatusOr<Stored> stored = Load(msgid);
  if (!stored.ok()) return Result(stored.status().code() == Code::kNotFound);
  if (stored->message.envelopes.erase(evpid) == 0) return Result(true);
  if (Status s = Save(msgid, *stored); !s.ok()) {
    Warn("deleting envelope " + EvpidText(evpid) +
         " (it may come back after a restart): " + s.ToString());
    return Result(false);
  }
  return Result(true);
}

Reply QueueBackend::EnvelopeLoad(uint64_t evpid) {
  const uint32_t msgid = MsgidOf(evpid);
  const std::string* bytes = nullptr;
  StatusOr<Stored> stored = NotFoundError("");
  if (auto it = incoming_.find(msgid); it != incoming_.end()) {
    auto e = it->second.envelopes.find(evpid);
    if (e != it->second.envelopes.end()) bytes = &e->second;
  } else if (stored = Load(msgid); stored.ok()) {
    auto e = stored->message.envelopes.find(evpid);
    if (e != stored->message.envelopes.end()) bytes = &e->second;
  }
  if (bytes == nullptr || bytes->size() > kEnvelopeMax) return Reply{};  // not found
  return Reply{*bytes, -1};
}

Reply QueueBackend::EnvelopeUpdate(uint64_t evpid, std::string_view bytes) {
  const uint32_t msgid = MsgidOf(evpid);
  if (auto it = incoming_.find(msgid); it != incoming_.end()) {
    auto e = it->second.envelopes.find(evpid);
    if (e == it->second.envelopes.end()) return Result(false);
    const size_t size = it->second.encoded_size - EncodedEnvelopeSize(e->second.size()) +
                        EncodedEnvelopeSize(bytes.size());
    if (size > kMaxMetadataSize) return Result(false);
    e->second.assign(bytes);
    it->second.encoded_size = size;
    return Result(true);
  }
  StatusOr<Stored> stored = Load(msgid);
  if (!stored.ok()) {
    Warn("update of envelope " + EvpidText(evpid) + ": " + stored.status().ToString());
    return Result(false);
  }
  auto e = stored->message.envelopes.find(evpid);
  if (e == stored->message.envelopes.end()) {
    Warn("update of envelope " + EvpidText(evpid) + ": no such envelope");
    return Result(false);
  }
  e->second.assign(bytes);
  if (Status s = Save(msgid, *stored); !s.ok()) {
    Warn("update of envelope " + EvpidText(evpid) +
         " (the previous version stays): " + s.ToString());
    return Result(false);
  }
  return Result(true);
}

// One envelope per request: int r (its length; -1 once the walk is over), the evpid and
// the bytes. Envelopes deleted since INIT are skipped; those created since are not in the
// snapshot (smtpd knows them already).
Reply QueueBackend::EnvelopeWalk() {
  while (walk_message_ < walk_.size()) {
    const auto& [msgid, evpids] = walk_[walk_message_];
    if (walk_envelope_ >= evpids.size()) {
      ++walk_message_;
      walk_envelope_ = 0;
      continue;
    }
    const uint64_t evpid = evpids[walk_envelope_++];
    StatusOr<Stored> stored = Load(msgid);
    if (!stored.ok()) {
      if (stored.status().code() != Code::kNotFound) {
        Warn("walk of message " + MsgidText(msgid) + ": " + stored.status().ToString());
      }
      walk_envelope_ = evpids.size();
      continue;
    }
    auto e = stored->message.envelopes.find(evpid);
    if (e == stored->message.envelopes.end() || e->second.size() > kEnvelopeMax) continue;
    Reply r;
    Put<int32_t>(&r.payload, static_cast<int32_t>(e->second.size()));
    Put<uint64_t>(&r.payload, evpid);
    r.payload.append(e->second);
    return r;
  }
  walk_.clear();
  walk_message_ = 0;
  Reply r;
  Put<int32_t>(&r.payload, -1);
  return r;
}

StatusOr<QueueBackend::Stored> QueueBackend::Load(uint32_t msgid) {
  auto it = committed_.find(msgid);
  if (it == committed_.end()) return NotFoundError("no message " + MsgidText(msgid));
  StatusOr<MessageInfo> info = spool_->Get(it->second);
  if (!info.ok()) {
    if (info.status().code() == Code::kNotFound) committed_.erase(it);
    return info.status();
  }
  Stored stored{it->second, {}};
  if (!DecodeQueuedMessage(info->envelope.metadata, &stored.message) ||
      stored.message.msgid != msgid) {
    return CorruptionError("spool message " + it->second.ToString() +
                           " does not hold the envelopes of message " + MsgidText(msgid));
  }
  return stored;
}

Status QueueBackend::Save(uint32_t msgid, const Stored& stored) {
  if (!stored.message.envelopes.empty()) {
    return spool_->SetMetadata(stored.id, EncodeQueuedMessage(stored.message));
  }
  // smtpd never deletes a committed message itself: it goes with its last envelope.
  Status s = spool_->Remove(stored.id);
  if (s.ok() || s.code() == Code::kNotFound) {
    committed_.erase(msgid);
    return Status::Ok();
  }
  return s;
}

uint32_t QueueBackend::NewMsgid() {
  for (;;) {
    const uint32_t msgid = static_cast<uint32_t>(random_());
    if (msgid != 0 && incoming_.count(msgid) == 0 && committed_.count(msgid) == 0) return msgid;
  }
}

uint64_t QueueBackend::NewEvpid(uint32_t msgid, const std::map<uint64_t, std::string>& taken) {
  for (;;) {
    const uint32_t low = static_cast<uint32_t>(random_());
    const uint64_t evpid = (uint64_t{msgid} << 32) | low;
    if (low != 0 && taken.count(evpid) == 0) return evpid;
  }
}

}  // namespace spool::opensmtpd
