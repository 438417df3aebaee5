#include "spool/smtp_reply.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <regex>
#include <string>

#include "io/errno_status.h"
#include "test_util.h"

namespace spool {
namespace {

// The reply table of docs/errors.md, row by row, driven by the statuses the I/O layer makes
// of real errnos.
struct Row {
  int err;
  const char* reply;
};

class ErrnoReplyTest : public ::testing::TestWithParam<Row> {};

TEST_P(ErrnoReplyTest, MatchesSpecTable) {
  const Row& row = GetParam();
  Status s = io::ErrnoToStatus(row.err, "write", "/var/spool/0/seg-000001");
  EXPECT_EQ(SmtpReplyFor(s).ToString(), row.reply) << s.ToString();
}

INSTANTIATE_TEST_SUITE_P(SpecTable, ErrnoReplyTest,
                         ::testing::Values(Row{ENOSPC, "452 4.3.1 Insufficient system storage"},
                                           Row{EDQUOT, "452 4.3.1 Insufficient system storage"},
                                           Row{EACCES, "451 4.3.5 System incorrectly configured"},
                                           Row{EPERM, "451 4.3.5 System incorrectly configured"},
                                           Row{EROFS, "451 4.3.5 System incorrectly configured"},
                                           Row{EIO, "451 4.3.0 Local error in processing"},
                                           Row{EUCLEAN, "451 4.3.0 Local error in processing"},
                                           Row{EBADF, "451 4.3.0 Local error in processing"},
                                           Row{ENOMEM, "451 4.3.0 Local error in processing"}));

TEST(SmtpReplyTest, OkIs250) {
  SmtpReply r = SmtpReplyFor(Status::Ok());
  EXPECT_EQ(r.code, 250);
  EXPECT_FALSE(r.transient());
}

TEST(SmtpReplyTest, StorageFullBelowMinimum) {
  EXPECT_EQ(SmtpReplyFor(StorageFullError("free space 10 MiB under minimum 64 MiB")).ToString(),
            "452 4.3.1 Insufficient system storage");
}

TEST(SmtpReplyTest, CorruptionIsLocalError) {
  EXPECT_EQ(SmtpReplyFor(CorruptionError("checksum mismatch in seg 3 at 4096")).ToString(),
            "451 4.3.0 Local error in processing");
}

TEST(SmtpReplyTest, OverloadIsCongestion) {
  EXPECT_EQ(SmtpReplyFor(OverloadError("commit queue full")).ToString(),
            "451 4.4.5 Mail system congestion");
}

TEST(SmtpReplyTest, NotServingIs421) {
  EXPECT_EQ(SmtpReplyFor(UnavailableError("shard latched")).ToString(),
            "421 4.3.2 Service not available");
  EXPECT_EQ(SmtpReplyFor(FailedPreconditionError("held by pid 7")).ToString(),
            "421 4.3.2 Service not available");
}

TEST(SmtpReplyTest, TooBigIs552) {
  EXPECT_EQ(SmtpReplyFor(TooBigError("100 MiB over 50 MiB")).ToString(),
            "552 5.3.4 Message too big for system");
}

TEST(SmtpReplyTest, EveryCodeHasAReplyFreeOfInternals) {
  // Reply texts must never leak paths, errno names or the status message.
  const std::regex leak("(/|E[A-Z]{2,}|errno|seg|shard)");
  for (int c = 0; c <= static_cast<int>(Code::kInternal); ++c) {
    Status s(static_cast<Code>(c), "open /var/spool/0/seg-1: EIO errno 5 shard 0", EIO);
    SmtpReply r = SmtpReplyFor(s);
    std::string text = r.ToString();
    EXPECT_FALSE(std::regex_search(text, leak)) << CodeName(s.code()) << ": " << text;
    EXPECT_TRUE(r.code == 250 || (r.code >= 400 && r.code < 600)) << text;
    EXPECT_EQ(r.enhanced[0] - '0', r.code / 100) << text;
  }
}

TEST(SmtpReplyTest, TransientClassification) {
  EXPECT_TRUE(SmtpReplyFor(IoError("x")).transient());
  EXPECT_TRUE(SmtpReplyFor(UnavailableError("x")).transient());
  EXPECT_FALSE(SmtpReplyFor(TooBigError("x")).transient());
}

}  // namespace
}  // namespace spool
