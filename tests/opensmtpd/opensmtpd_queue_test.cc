// spool-opensmtpd-queue without smtpd: the metadata encoding, the queue argument, and the
// backend answering requests as smtpd sends them, across a restart.

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "spool_test_util.h"
#include "test_util.h"
#include "tools/opensmtpd/envelopes.h"
#include "tools/opensmtpd/queue_backend.h"
#include "tools/opensmtpd/queue_tool.h"

namespace spool::opensmtpd {
namespace {

using spool::testing::TempDir;

TEST(EnvelopesTest, EncodingRoundTripsBinaryEnvelopesAndRefusesDamage) {
  QueuedMessage m;
  m.msgid = 0x0a1b2c3d;
  m.envelopes[0x0a1b2c3d00000001ull] = "version: 3\nrcpt: bob@example.net\n";
  m.envelopes[0x0a1b2c3dffffffffull] = std::string("\0bin\n\nary 12\n", 13);
  const std::string text = EncodeQueuedMessage(m);
  EXPECT_EQ(text.size(), EncodedSize(m));
  EXPECT_EQ(text.rfind("opensmtpd-queue 1 msgid 0a1b2c3d\n", 0), 0u);
  QueuedMessage back;
  ASSERT_TRUE(DecodeQueuedMessage(text, &back));
  EXPECT_EQ(back.msgid, m.msgid);
  EXPECT_EQ(back.envelopes, m.envelopes);
  EXPECT_FALSE(DecodeQueuedMessage(text.substr(0, text.size() - 1), &back));
  EXPECT_FALSE(DecodeQueuedMessage("client=1.2.3.4 helo=x", &back));
  std::string other = text;
  other.replace(other.find("0a1b2c3d00000001"), 16, "0a1b2c3e00000001");  // another msgid
  EXPECT_FALSE(DecodeQueuedMessage(other, &back));
}

TEST(QueueArgumentTest, DirectoriesAndOptions) {
  Options o;
  EXPECT_EQ(ParseQueueArgument("/a,/b,segment_size=8M,min_free_bytes=1G,direct_io=0", &o), "");
  EXPECT_EQ(o.dirs, (std::vector<std::string>{"/a", "/b"}));
  EXPECT_EQ(o.segment_size, 8u << 20);
  EXPECT_EQ(o.min_free_bytes, 1u << 30);
  EXPECT_FALSE(o.direct_io);
  EXPECT_NE(ParseQueueArgument("", &o), "");
  EXPECT_NE(ParseQueueArgument("/a,bogus=1", &o), "");
  EXPECT_NE(ParseQueueArgument("/a,,/b", &o), "");
  EXPECT_NE(ParseQueueArgument("segment_size=1M", &o), "");
}

// Builds requests as smtpd does and reads replies as queue_proc.c does.
class BackendTest : public ::testing::Test {
 protected:
  TempDir dir_;
  Options options_ = testing::SmallSpoolOptions({dir_.Sub("spool")});
  std::unique_ptr<Spool> spool_;
  std::unique_ptr<QueueBackend> backend_;

  void Start() {
    backend_.reset();
    spool_.reset();
    ASSERT_OK_AND_ASSIGN(spool_, Spool::Open(options_));
    backend_ = std::make_unique<QueueBackend>(spool_.get());
    std::string version(4, '\0');
    const uint32_t v = kApiVersion;
    std::memcpy(version.data(), &v, 4);
    EXPECT_EQ(Call(RequestType::kInit, version).payload, "");
  }

  Reply Call(RequestType type, std::string payload, int fd = -1) {
    ProcMessage m;
    m.type = type;
    m.payload = std::move(payload);
    m.fd = fd;
    StatusOr<Reply> r = backend_->Handle(m);
    EXPECT_OK(r.status());
    return r.ok() ? std::move(r).value() : Reply{};
  }

  template <typename T>
  static std::string Bytes(T v) {
    return std::string(reinterpret_cast<const char*>(&v), sizeof(v));
  }
  template <typename T>
  static T At(const std::string& s, size_t offset) {
    T v;
    std::memcpy(&v, s.data() + offset, sizeof(v));
    return v;
  }

  uint32_t Create() {
    Reply r = Call(RequestType::kMessageCreate, "");
    EXPECT_EQ(r.payload.size(), 8u);
    EXPECT_EQ(At<int32_t>(r.payload, 0), 1);
    return At<uint32_t>(r.payload, 4);
  }
  uint64_t CreateEnvelope(uint32_t msgid, const std::string& text) {
    Reply r = Call(RequestType::kEnvelopeCreate, Bytes(msgid) + text);
    EXPECT_EQ(r.payload.size(), 12u);
    EXPECT_EQ(At<int32_t>(r.payload, 0), 1);
    const uint64_t evpid = At<uint64_t>(r.payload, 4);
    EXPECT_EQ(evpid >> 32, msgid);
    EXPECT_NE(evpid & 0xffffffffu, 0u);
    return evpid;
  }
  int32_t Commit(uint32_t msgid, const std::string& body) {
    const int fd = memfd_create("test-body", 0);
    EXPECT_EQ(write(fd, body.data(), body.size()), static_cast<ssize_t>(body.size()));
    Reply r = Call(RequestType::kMessageCommit, Bytes(msgid), fd);
    return At<int32_t>(r.payload, 0);
  }
  std::string Body(uint32_t msgid) {
    Reply r = Call(RequestType::kMessageFdR, Bytes(msgid));
    EXPECT_EQ(r.payload, "");
    if (r.fd < 0) return "<no fd>";
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = read(r.fd, buf, sizeof(buf))) > 0) out.append(buf, n);
    close(r.fd);
    return out;
  }
  std::vector<std::pair<uint64_t, std::string>> Walk() {
    std::vector<std::pair<uint64_t, std::string>> out;
    for (;;) {
      Reply r = Call(RequestType::kEnvelopeWalk, "");
      const int32_t n = At<int32_t>(r.payload, 0);
      if (n == -1) break;
      EXPECT_EQ(r.payload.size(), 12u + n);
      out.emplace_back(At<uint64_t>(r.payload, 4), r.payload.substr(12));
    }
    EXPECT_EQ(At<int32_t>(Call(RequestType::kEnvelopeWalk, "").payload, 0), -1);
    return out;
  }
};

TEST_F(BackendTest, LifeOfAMessageAcrossRestarts) {
  Start();
  const uint32_t msgid = Create();
  const uint64_t e1 = CreateEnvelope(msgid, "version: 3\nrcpt: a@example.net\n");
  const uint64_t e2 = CreateEnvelope(msgid, "version: 3\nrcpt: b@example.net\n");
  // An uncommitted message is not walked and does not survive a restart.
  const uint32_t lost = Create();
  CreateEnvelope(lost, "version: 3\n");
  ASSERT_EQ(Commit(msgid, "Subject: x\n\nbody\n"), 1);
  EXPECT_EQ(Body(msgid), "Subject: x\n\nbody\n");
  EXPECT_EQ(Call(RequestType::kEnvelopeLoad, Bytes(e1)).payload,
            "version: 3\nrcpt: a@example.net\n");
  EXPECT_EQ(At<int32_t>(Call(RequestType::kEnvelopeUpdate, Bytes(e2) + "v2\n").payload, 0), 1);
  const uint64_t bounce = CreateEnvelope(msgid, "type: bounce\n");

  Start();  // a restart: the walk holds the committed envelopes, grouped, as last stored
  std::vector<std::pair<uint64_t, std::string>> walked = Walk();
  ASSERT_EQ(walked.size(), 3u);
  for (const auto& [evpid, text] : walked) {
    EXPECT_EQ(evpid >> 32, msgid);
    if (evpid == e2) {
      EXPECT_EQ(text, "v2\n");
    } else if (evpid == bounce) {
      EXPECT_EQ(text, "type: bounce\n");
    }
  }
  EXPECT_EQ(Call(RequestType::kEnvelopeLoad, Bytes(uint64_t{lost} << 32 | 1)).payload, "");
  EXPECT_EQ(At<int32_t>(Call(RequestType::kEnvelopeDelete, Bytes(e1)).payload, 0), 1);
  EXPECT_EQ(At<int32_t>(Call(RequestType::kEnvelopeDelete, Bytes(e2)).payload, 0), 1);
  EXPECT_EQ(spool_->GetStats().messages, 1u);
  // The last envelope takes the message with it.
  EXPECT_EQ(At<int32_t>(Call(RequestType::kEnvelopeDelete, Bytes(bounce)).payload, 0), 1);
  EXPECT_EQ(spool_->GetStats().messages, 0u);
  EXPECT_EQ(Body(msgid), "<no fd>");
  Start();
  EXPECT_TRUE(Walk().empty());
}

TEST_F(BackendTest, RefusalsAreZeroRepliesAndProtocolErrorsStopTheBackend) {
  Start();
  const uint32_t msgid = Create();
  // A commit without envelopes, or of an unknown message.
  EXPECT_EQ(Commit(msgid, "x"), 0);
  EXPECT_EQ(Commit(12345, "x"), 0);
  // More envelopes than fit in the metadata: r=0 (smtpd answers 421 to RCPT).
  const uint32_t big = Create();
  const std::string text(kEnvelopeMax - 1, 'e');
  int refused = 0;
  for (int i = 0; i < 20; ++i) {
    Reply r = Call(RequestType::kEnvelopeCreate, Bytes(big) + text);
    if (At<int32_t>(r.payload, 0) == 0) ++refused;
  }
  EXPECT_GT(refused, 0);
  EXPECT_EQ(Commit(big, "body"), 1);
  // A protocol error.
  ProcMessage bad;
  bad.type = RequestType::kMessageFdR;
  bad.payload = "123";
  EXPECT_EQ(backend_->Handle(bad).status().code(), Code::kInvalidArgument);
  bad.type = static_cast<RequestType>(99);
  EXPECT_EQ(backend_->Handle(bad).status().code(), Code::kInvalidArgument);
  ProcMessage close_request;
  close_request.type = RequestType::kClose;
  ASSERT_OK(backend_->Handle(close_request).status());
  EXPECT_TRUE(backend_->closed());
}

}  // namespace
}  // namespace spool::opensmtpd
