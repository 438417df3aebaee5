// The SMTP receiver's grammar (smtpd/protocol.h) and spool-smtpd's byte sizes.

#include <string>
#include <vector>

#include "test_util.h"
#include "tools/smtpd/protocol.h"
#include "tools/smtpd/smtpd.h"

namespace spool::smtpd {
namespace {

struct Decoded {
  std::string body;
  bool done = false;
  size_t consumed = 0;  // bytes of the input up to and including the terminator
  bool saw_bare = false;
};

// Feeds `input` in pieces of the given sizes (the rest in one piece), keeping unconsumed
// bytes for the next piece as the server does.
Decoded Decode(const std::string& input, const std::vector<size_t>& cuts = {},
               BareLineEndings bare = BareLineEndings::kKeep) {
  DataDecoder decoder(bare);
  Decoded out;
  std::string pending;
  size_t offered = 0;
  std::vector<size_t> pieces = cuts;
  size_t sum = 0;
  for (size_t c : cuts) sum += c;
  if (sum < input.size()) pieces.push_back(input.size() - sum);
  for (size_t piece : pieces) {
    pending += input.substr(offered, piece);
    offered += piece;
    bool done = false;
    const size_t used = decoder.Feed(pending, &out.body, &done);
    out.consumed += used;
    out.saw_bare = decoder.saw_bare_line_ending();
    pending.erase(0, used);
    if (done) {
      out.done = true;
      return out;
    }
  }
  return out;
}

TEST(DataDecoderTest, PlainBodyEndsAtCrlfDotCrlf) {
  const Decoded d = Decode("Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n");
  EXPECT_TRUE(d.done);
  EXPECT_EQ(d.body, "Subject: x\r\n\r\nhello\r\n");
  EXPECT_EQ(d.consumed, std::string("Subject: x\r\n\r\nhello\r\n.\r\n").size());
}

TEST(DataDecoderTest, EmptyBody) {
  const Decoded d = Decode(".\r\n");
  EXPECT_TRUE(d.done);
  EXPECT_EQ(d.body, "");
  EXPECT_EQ(d.consumed, 3u);
}

TEST(DataDecoderTest, DotUnstuffing) {
  const Decoded d = Decode("..\r\n...x\r\n.y\r\n. \r\nmid.dle\r\n.\r\n");
  EXPECT_TRUE(d.done);
  EXPECT_EQ(d.body, ".\r\n..x\r\ny\r\n \r\nmid.dle\r\n");
}

TEST(DataDecoderTest, OnlyCrlfEndsLines) {
  // Bare LF and bare CR are body bytes; "<LF>.<LF>", "<CRLF>.<LF>" and "<LF>.<CRLF>" do
  // not end the data (no SMTP smuggling), and a dot after a bare LF is not unstuffed.
  const std::string body = "a\n.\nb\r\n.\nc\n.\r\nd\r.\re\r\n";
  const Decoded d = Decode(body + ".\r\n");
  EXPECT_TRUE(d.done);
  EXPECT_EQ(d.body, "a\n.\nb\r\n\nc\n.\r\nd\r.\re\r\n");
}

TEST(DataDecoderTest, BareLineEndingsAreNoticedAtEverySplit) {
  const std::string clean = "a\r\n..b\r\n\r\nc\r\n.\r\n";
  for (size_t a = 0; a <= clean.size(); ++a) {
    EXPECT_FALSE(Decode(clean, {a}).saw_bare) << "cut at " << a;
  }
  for (const std::string bare :
       {"a\nb\r\n.\r\n", "a\rb\r\n.\r\n", "a\r\r\n.\r\n", "\n.\r\n", "a\r\n.\n.\r\n", "x\r"}) {
    for (size_t a = 0; a <= bare.size(); ++a) {
      const std::string input = bare == "x\r" ? bare + "y\r\n.\r\n" : bare;
      EXPECT_TRUE(Decode(input, {a}).saw_bare) << "cut at " << a << " of " << bare;
    }
  }
}

TEST(DataDecoderTest, NormalizeStoresEveryLineEndingAsCrlf) {
  // The end of the data is still <CRLF>.<CRLF> only: "<LF>.<LF>" is stored as a line
  // holding a dot, never taken for the end.
  const std::string input = "a\n.\nb\r\nc\rd\r\r\n\n\r\n.\r\nNEXT";
  const std::string want = "a\r\n.\r\nb\r\nc\r\nd\r\n\r\n\r\n\r\n";
  for (size_t a = 0; a <= input.size(); ++a) {
    const Decoded d = Decode(input, {a}, BareLineEndings::kNormalize);
    ASSERT_TRUE(d.done) << "cut at " << a;
    EXPECT_EQ(d.body, want) << "cut at " << a;
    EXPECT_TRUE(d.saw_bare);
    EXPECT_EQ(d.consumed, input.size() - 4);
  }
}

TEST(DataDecoderTest, DotThenCrWithoutLfIsUnstuffed) {
  const Decoded d = Decode(".\rx\r\n.\r\n");
  EXPECT_TRUE(d.done);
  EXPECT_EQ(d.body, "\rx\r\n");
}

TEST(DataDecoderTest, EveryByteAndEverySplitGiveTheSameBody) {
  std::string body;
  for (int i = 0; i < 256; ++i) body += static_cast<char>(i);
  body += "\r\n.\r\n..\r\n.x\r\nline\r\r\n\n\r\n";
  std::string stuffed;
  // Dot-stuff as a client does: a '.' at the start of a CRLF line gets another.
  for (size_t i = 0; i < body.size(); ++i) {
    const bool line_start = i == 0 || (i >= 2 && body[i - 2] == '\r' && body[i - 1] == '\n');
    if (line_start && body[i] == '.') stuffed += '.';
    stuffed += body[i];
  }
  const std::string input = stuffed + ".\r\n";
  for (size_t a = 0; a <= input.size(); ++a) {
    const Decoded d = Decode(input, {a});
    ASSERT_TRUE(d.done) << "cut at " << a;
    ASSERT_EQ(d.body, body) << "cut at " << a;
    ASSERT_EQ(d.consumed, input.size());
  }
  std::vector<size_t> ones(input.size(), 1);
  EXPECT_EQ(Decode(input, ones).body, body);
}

TEST(DataDecoderTest, DiscardsWithoutSink) {
  DataDecoder decoder;
  bool done = false;
  const std::string input = "big\r\nbody\r\n.\r\nNEXT";
  EXPECT_EQ(decoder.Feed(input, nullptr, &done), input.size() - 4);
  EXPECT_TRUE(done);
}

TEST(DataDecoderTest, NotDoneKeepsAtMostTwoBytes) {
  DataDecoder decoder;
  std::string body;
  bool done = false;
  EXPECT_EQ(decoder.Feed("abc\r", &body, &done), 3u);
  EXPECT_FALSE(done);
  EXPECT_EQ(body, "abc");
  EXPECT_EQ(decoder.Feed("\r\n.", &body, &done), 2u);
  EXPECT_EQ(decoder.Feed(".\r", &body, &done), 0u);
  EXPECT_EQ(decoder.Feed(".\r\n", &body, &done), 3u);
  EXPECT_TRUE(done);
  EXPECT_EQ(body, "abc\r\n");
}

TEST(ParseCommandTest, VerbsAreCaseInsensitive) {
  EXPECT_EQ(ParseCommand("ehlo x").verb, Verb::kEhlo);
  EXPECT_EQ(ParseCommand("Mail FROM:<a>").verb, Verb::kMail);
  EXPECT_EQ(ParseCommand("Mail FROM:<a>").arg, "FROM:<a>");
  EXPECT_EQ(ParseCommand("DATA").verb, Verb::kData);
  EXPECT_EQ(ParseCommand("DATA  ").arg, "");
  EXPECT_EQ(ParseCommand("EXPN x").verb, Verb::kNotImplemented);
  EXPECT_EQ(ParseCommand("MAILFROM:<a>").verb, Verb::kUnknown);
  EXPECT_EQ(ParseCommand("").verb, Verb::kUnknown);
}

TEST(ParsePathArgTest, Paths) {
  PathArg p;
  EXPECT_EQ(ParsePathArg("FROM:<a@example.com>", "FROM", true, &p), PathError::kNone);
  EXPECT_EQ(p.address, "a@example.com");
  EXPECT_EQ(ParsePathArg("from: <a@example.com>", "FROM", true, &p), PathError::kNone);
  EXPECT_EQ(p.address, "a@example.com");
  EXPECT_EQ(ParsePathArg("FROM:<>", "FROM", true, &p), PathError::kNone);
  EXPECT_EQ(p.address, "");
  EXPECT_EQ(ParsePathArg("TO:<@relay.example,@b.example:u@c.example>", "TO", false, &p),
            PathError::kNone);
  EXPECT_EQ(p.address, "u@c.example");
  EXPECT_EQ(ParsePathArg("TO:<\"odd > name\"@example.org>", "TO", false, &p), PathError::kNone);
  EXPECT_EQ(p.address, "\"odd > name\"@example.org");
  EXPECT_EQ(ParsePathArg("TO:bare@example.org", "TO", false, &p), PathError::kNone);
  EXPECT_EQ(p.address, "bare@example.org");
  EXPECT_EQ(ParsePathArg("TO:<Postmaster>", "TO", false, &p), PathError::kNone);

  EXPECT_EQ(ParsePathArg("FROM<a@b>", "FROM", true, &p), PathError::kSyntax);
  EXPECT_EQ(ParsePathArg("TO:<a@b>", "FROM", true, &p), PathError::kSyntax);
  EXPECT_EQ(ParsePathArg("FROM:<a@b", "FROM", true, &p), PathError::kSyntax);
  EXPECT_EQ(ParsePathArg("FROM:<a b@c>", "FROM", true, &p), PathError::kSyntax);
  EXPECT_EQ(ParsePathArg("FROM:<a\x01@c>", "FROM", true, &p), PathError::kSyntax);
  EXPECT_EQ(ParsePathArg("FROM:<a@b>x", "FROM", true, &p), PathError::kSyntax);
  EXPECT_EQ(ParsePathArg("FROM:", "FROM", true, &p), PathError::kSyntax);
  EXPECT_EQ(ParsePathArg("FROM:<" + std::string(300, 'a') + ">", "FROM", true, &p),
            PathError::kSyntax);
}

TEST(ParsePathArgTest, Parameters) {
  PathArg p;
  EXPECT_EQ(ParsePathArg("FROM:<a@b> SIZE=12345 BODY=8BITMIME", "FROM", true, &p),
            PathError::kNone);
  EXPECT_EQ(p.size, 12345u);
  EXPECT_TRUE(p.body_8bit);
  EXPECT_EQ(ParsePathArg("FROM:<a@b> body=7bit", "FROM", true, &p), PathError::kNone);
  EXPECT_FALSE(p.body_8bit);
  EXPECT_FALSE(p.size.has_value());
  EXPECT_EQ(ParsePathArg("FROM:<a@b> SIZE=", "FROM", true, &p), PathError::kBadParameter);
  EXPECT_EQ(ParsePathArg("FROM:<a@b> SIZE=99999999999999999999999", "FROM", true, &p),
            PathError::kBadParameter);
  EXPECT_EQ(ParsePathArg("FROM:<a@b> SMTPUTF8", "FROM", true, &p), PathError::kBadParameter);
  EXPECT_EQ(ParsePathArg("TO:<a@b> NOTIFY=NEVER", "TO", false, &p), PathError::kBadParameter);
}

TEST(ParseByteSizeTest, Units) {
  uint64_t n = 0;
  EXPECT_TRUE(ParseByteSize("1000", &n));
  EXPECT_EQ(n, 1000u);
  EXPECT_TRUE(ParseByteSize("64K", &n));
  EXPECT_EQ(n, 64u << 10);
  EXPECT_TRUE(ParseByteSize("1MiB", &n));
  EXPECT_EQ(n, 1u << 20);
  EXPECT_TRUE(ParseByteSize("2GB", &n));
  EXPECT_EQ(n, 2ull << 30);
  EXPECT_FALSE(ParseByteSize("", &n));
  EXPECT_FALSE(ParseByteSize("K", &n));
  EXPECT_FALSE(ParseByteSize("12X", &n));
  EXPECT_FALSE(ParseByteSize("-1", &n));
  EXPECT_FALSE(ParseByteSize("99999999999T", &n));
}

}  // namespace
}  // namespace spool::smtpd
