// The encodings of log payloads and index values (index/codec.h): round trips at the
// edges of every field, and decoders that refuse short, garbled or foreign input without
// reading past it.

#include "index/codec.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <iostream>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "test_util.h"

namespace spool::internal {
namespace {

using spool::testing::SameBytes;

constexpr uint64_t kU64Max = std::numeric_limits<uint64_t>::max();
constexpr int64_t kI64Min = std::numeric_limits<int64_t>::min();
constexpr int64_t kI64Max = std::numeric_limits<int64_t>::max();
constexpr uint32_t kU32Max = std::numeric_limits<uint32_t>::max();
// The longest varint: 64 bits in 7-bit groups.
constexpr size_t kMaxVarintBytes = 10;

// A copy of `bytes` in a buffer of exactly its size, so that a sanitizer build reports a
// decoder reading past the end of its input.
class ExactBuffer {
 public:
  explicit ExactBuffer(std::string_view bytes)
      : size_(bytes.size()), data_(new char[bytes.size() == 0 ? 1 : bytes.size()]) {
    std::copy(bytes.begin(), bytes.end(), data_.get());
  }
  std::string_view view() const { return std::string_view(data_.get(), size_); }

 private:
  size_t size_;
  std::unique_ptr<char[]> data_;
};

MessageInfo SampleInfo() {
  MessageInfo info;
  info.envelope.sender = "alice@example.org";
  info.envelope.recipients = {"bob@example.net", "carol@example.net", "dave@example.com"};
  info.envelope.queue = "slow";
  info.envelope.metadata = std::string("helo=mx\0bin\xff", 12);
  info.size = 123456;
  info.arrival_ms = 1767225600000;  // 2026-01-01
  info.state = MessageState::kHeld;
  info.attempts = 7;
  info.next_attempt_ms = 1767225900000;
  info.recipient_status = {RecipientStatus::kDelivered, RecipientStatus::kDeferred,
                           RecipientStatus::kFailed};
  return info;
}

IndexEntry SampleEntry() {
  IndexEntry e;
  e.info = SampleInfo();
  e.main = {3, 8192, 4096};
  e.body_offset = 0;
  e.chunks = {{2, 0, 65536 + 4096}, {2, 69632, 65536 + 4096}, {3, 0, 4096}};
  e.state = {4, 12288, 4096};
  return e;
}

void ExpectSameEnvelope(const MessageInfo& got, const MessageInfo& want) {
  EXPECT_EQ(got.envelope.sender, want.envelope.sender);
  EXPECT_EQ(got.envelope.recipients, want.envelope.recipients);
  EXPECT_EQ(got.envelope.queue, want.envelope.queue);
  EXPECT_TRUE(SameBytes(got.envelope.metadata, want.envelope.metadata));
  EXPECT_EQ(got.size, want.size);
  EXPECT_EQ(got.arrival_ms, want.arrival_ms);
}

void ExpectSameState(const MessageInfo& got, const MessageInfo& want) {
  EXPECT_EQ(got.state, want.state);
  EXPECT_EQ(got.attempts, want.attempts);
  EXPECT_EQ(got.next_attempt_ms, want.next_attempt_ms);
  EXPECT_EQ(got.recipient_status, want.recipient_status);
}

MessageInfo EnvelopeRoundTrip(const MessageInfo& info) {
  const std::string enc = EncodeEnvelope(info);
  std::string_view in(enc);
  MessageInfo out;
  EXPECT_OK(DecodeEnvelope(&in, &out));
  EXPECT_TRUE(in.empty()) << in.size() << " bytes left";
  return out;
}

MessageInfo StateRoundTrip(const MessageInfo& info) {
  const std::string enc = EncodeState(info);
  std::string_view in(enc);
  MessageInfo out;
  EXPECT_OK(DecodeState(&in, &out));
  EXPECT_TRUE(in.empty()) << in.size() << " bytes left";
  return out;
}

// The decoders, each over a whole input, for the checks they all must pass.
struct Decoder {
  const char* name;
  std::string valid;  // a well-formed input
  Status (*decode)(std::string_view in);
};

std::vector<Decoder> AllDecoders() {
  const MessageInfo info = SampleInfo();
  const IndexEntry entry = SampleEntry();
  return {
      {"envelope", EncodeEnvelope(info),
       [](std::string_view in) {
         MessageInfo out;
         return DecodeEnvelope(&in, &out);
       }},
      {"state", EncodeState(info),
       [](std::string_view in) {
         MessageInfo out;
         return DecodeState(&in, &out);
       }},
      {"commit", EncodeCommit(info, entry.chunks),
       [](std::string_view in) {
         MessageInfo out;
         std::vector<log::Location> chunks;
         return DecodeCommit(in, &out, &chunks);
       }},
      {"index entry", EncodeIndexEntry(entry),
       [](std::string_view in) {
         IndexEntry out;
         return DecodeIndexEntry(in, &out);
       }},
  };
}

// ---- Varints ----------------------------------------------------------------------------

TEST(VarintTest, RoundTripsAtEveryLengthBoundary) {
  std::vector<uint64_t> values = {0, 1, kU64Max, kU64Max - 1, uint64_t{1} << 63};
  for (int bits = 7; bits < 64; bits += 7) {
    values.push_back((uint64_t{1} << bits) - 1);  // the largest of bits/7 bytes
    values.push_back(uint64_t{1} << bits);        // the smallest of one byte more
  }
  for (const uint64_t v : values) {
    std::string enc;
    PutVarint(&enc, v);
    const size_t bits = v == 0 ? 1 : 64 - std::countl_zero(v);
    EXPECT_EQ(enc.size(), (bits + 6) / 7) << v;
    enc += "tail";
    std::string_view in(enc);
    uint64_t got = 0;
    ASSERT_TRUE(GetVarint(&in, &got)) << v;
    EXPECT_EQ(got, v);
    EXPECT_EQ(in, "tail") << "a varint consumes exactly its bytes";
  }
  std::string max;
  PutVarint(&max, kU64Max);
  EXPECT_EQ(max.size(), kMaxVarintBytes);
}

TEST(VarintTest, EveryTruncationFails) {
  for (const uint64_t v : {uint64_t{128}, uint64_t{1} << 35, kU64Max}) {
    std::string enc;
    PutVarint(&enc, v);
    for (size_t n = 0; n < enc.size(); ++n) {
      const ExactBuffer buf(std::string_view(enc).substr(0, n));
      std::string_view in = buf.view();
      uint64_t got;
      EXPECT_FALSE(GetVarint(&in, &got)) << v << " cut to " << n << " bytes";
    }
  }
}

TEST(VarintTest, MoreThanTenBytesFail) {
  // Eleven bytes: ten continuation bytes, then a terminator.
  std::string enc(kMaxVarintBytes, '\x80');
  enc.push_back('\x00');
  std::string_view in(enc);
  uint64_t got;
  EXPECT_FALSE(GetVarint(&in, &got));
}

TEST(VarintTest, ValueBeyondSixtyFourBitsFails) {
  // Ten bytes whose last one carries bits past bit 63.
  for (const char last : {'\x02', '\x7f'}) {
    std::string enc(kMaxVarintBytes - 1, '\xff');
    enc.push_back(last);
    std::string_view in(enc);
    uint64_t got;
    EXPECT_FALSE(GetVarint(&in, &got)) << "last byte " << int(last) << " decoded as " << got;
  }
}

TEST(VarintTest, RedundantZeroGroupsDecode) {
  // Not what PutVarint writes, but within ten bytes it names one value.
  const std::string enc("\x81\x80\x00", 3);
  std::string_view in(enc);
  uint64_t got = 0;
  ASSERT_TRUE(GetVarint(&in, &got));
  EXPECT_EQ(got, 1u);
  EXPECT_TRUE(in.empty());
}

// ---- Bytes and locations ----------------------------------------------------------------

TEST(BytesTest, RoundTripsEmptyBinaryAndLarge) {
  const std::string large = testing::RandomBytes(1, 1 << 20);
  for (const std::string& s : {std::string(), std::string("\0\xff\n", 3), large}) {
    std::string enc;
    PutBytes(&enc, s);
    PutBytes(&enc, "next");
    std::string_view in(enc);
    std::string_view got, next;
    ASSERT_TRUE(GetBytes(&in, &got));
    ASSERT_TRUE(GetBytes(&in, &next));
    EXPECT_TRUE(SameBytes(got, s));
    EXPECT_EQ(next, "next");
    EXPECT_TRUE(in.empty());
  }
}

TEST(BytesTest, LengthBeyondInputFails) {
  std::string enc;
  PutBytes(&enc, "hello");
  for (size_t n = 0; n < enc.size(); ++n) {
    const ExactBuffer buf(std::string_view(enc).substr(0, n));
    std::string_view in = buf.view();
    std::string_view got;
    EXPECT_FALSE(GetBytes(&in, &got)) << "cut to " << n << " bytes";
  }
  std::string huge;
  PutVarint(&huge, kU64Max);
  huge += "abc";
  std::string_view in(huge);
  std::string_view got;
  EXPECT_FALSE(GetBytes(&in, &got));
}

TEST(LocationTest, RoundTripsZeroAndMaxima) {
  for (const log::Location& loc :
       {log::Location{}, log::Location{1, 4096, 512}, log::Location{kU64Max, kU64Max, kU32Max}}) {
    std::string enc;
    PutLocation(&enc, loc);
    std::string_view in(enc);
    log::Location got{9, 9, 9};
    ASSERT_TRUE(GetLocation(&in, &got));
    EXPECT_EQ(got, loc);
    EXPECT_TRUE(in.empty());
  }
}

TEST(LocationTest, SizeBeyondThirtyTwoBitsFails) {
  std::string enc;
  PutVarint(&enc, 1);
  PutVarint(&enc, 0);
  PutVarint(&enc, uint64_t{kU32Max} + 1);
  std::string_view in(enc);
  log::Location got;
  EXPECT_FALSE(GetLocation(&in, &got));
}

TEST(LocationTest, EveryTruncationFails) {
  std::string enc;
  PutLocation(&enc, {kU64Max, 1 << 20, kU32Max});
  for (size_t n = 0; n < enc.size(); ++n) {
    const ExactBuffer buf(std::string_view(enc).substr(0, n));
    std::string_view in = buf.view();
    log::Location got;
    EXPECT_FALSE(GetLocation(&in, &got)) << "cut to " << n << " bytes";
  }
}

// ---- Envelope ---------------------------------------------------------------------------

TEST(EnvelopeCodecTest, RoundTrips) {
  const MessageInfo info = SampleInfo();
  ExpectSameEnvelope(EnvelopeRoundTrip(info), info);
}

TEST(EnvelopeCodecTest, StartsWithTheVersion) {
  EXPECT_EQ(static_cast<uint8_t>(EncodeEnvelope(SampleInfo())[0]), kCodecVersion);
}

TEST(EnvelopeCodecTest, RoundTripsEmptyFields) {
  MessageInfo info;  // null sender, no recipients, empty queue and metadata, zero times
  info.envelope.queue.clear();
  ExpectSameEnvelope(EnvelopeRoundTrip(info), info);
}

TEST(EnvelopeCodecTest, RoundTripsManyRecipients) {
  MessageInfo info = SampleInfo();
  info.envelope.recipients.clear();
  for (int i = 0; i < 10000; ++i) {
    info.envelope.recipients.push_back("rcpt" + std::to_string(i) + "@example.net");
  }
  ExpectSameEnvelope(EnvelopeRoundTrip(info), info);
}

TEST(EnvelopeCodecTest, RoundTripsExtremeNumbers) {
  for (const int64_t arrival : {kI64Min, int64_t{-1}, int64_t{0}, int64_t{1}, kI64Max}) {
    MessageInfo info = SampleInfo();
    info.arrival_ms = arrival;
    info.size = kU64Max;
    ExpectSameEnvelope(EnvelopeRoundTrip(info), info);
  }
}

TEST(EnvelopeCodecTest, LeavesWhatFollowsInTheInput) {
  // A message record's payload: the envelope, then the body.
  const std::string body = testing::RandomBytes(2, 5000);
  const std::string payload = EncodeEnvelope(SampleInfo()) + body;
  std::string_view in(payload);
  MessageInfo out;
  ASSERT_OK(DecodeEnvelope(&in, &out));
  EXPECT_TRUE(SameBytes(in, body));
}

TEST(EnvelopeCodecTest, ReplacesWhatTheTargetHeld) {
  MessageInfo target = SampleInfo();
  target.envelope.recipients.assign(50, "stale@example.org");
  MessageInfo info;
  info.envelope.recipients = {"one@example.org"};
  const std::string enc = EncodeEnvelope(info);
  std::string_view in(enc);
  ASSERT_OK(DecodeEnvelope(&in, &target));
  ExpectSameEnvelope(target, info);
}

TEST(EnvelopeCodecTest, HugeRecipientCountFailsWithoutAllocating) {
  std::string enc(1, static_cast<char>(kCodecVersion));
  PutVarint(&enc, 0);  // arrival
  PutVarint(&enc, 0);  // size
  PutBytes(&enc, "");  // sender
  PutVarint(&enc, kU64Max >> 1);
  std::string_view in(enc);
  MessageInfo out;
  EXPECT_EQ(DecodeEnvelope(&in, &out).code(), Code::kCorruption);
}

// ---- State ------------------------------------------------------------------------------

TEST(StateCodecTest, RoundTripsEveryStateAndRecipientStatus) {
  for (const MessageState state :
       {MessageState::kQueued, MessageState::kHeld, MessageState::kCorrupt}) {
    MessageInfo info = SampleInfo();
    info.state = state;
    info.recipient_status = {RecipientStatus::kPending, RecipientStatus::kDelivered,
                             RecipientStatus::kFailed, RecipientStatus::kDeferred};
    ExpectSameState(StateRoundTrip(info), info);
  }
}

TEST(StateCodecTest, RoundTripsExtremes) {
  for (const int64_t next : {kI64Min, int64_t{-1}, int64_t{0}, kI64Max}) {
    MessageInfo info = SampleInfo();
    info.next_attempt_ms = next;
    info.attempts = kU32Max;
    ExpectSameState(StateRoundTrip(info), info);
  }
  MessageInfo none = SampleInfo();
  none.recipient_status.clear();
  ExpectSameState(StateRoundTrip(none), none);
  MessageInfo many = SampleInfo();
  many.recipient_status.assign(10000, RecipientStatus::kDeferred);
  ExpectSameState(StateRoundTrip(many), many);
}

TEST(StateCodecTest, LeavesTheEnvelopeAlone) {
  MessageInfo target = SampleInfo();
  MessageInfo info;
  info.state = MessageState::kCorrupt;
  info.recipient_status = {RecipientStatus::kFailed};
  const std::string enc = EncodeState(info);
  std::string_view in(enc);
  ASSERT_OK(DecodeState(&in, &target));
  ExpectSameState(target, info);
  ExpectSameEnvelope(target, SampleInfo());
}

TEST(StateCodecTest, UnknownStateOrRecipientStatusFails) {
  MessageInfo info = SampleInfo();
  info.recipient_status = {RecipientStatus::kPending};
  const std::string good = EncodeState(info);
  std::string bad_state = good;
  bad_state[1] = static_cast<char>(static_cast<uint8_t>(MessageState::kCorrupt) + 1);
  std::string bad_recipient = good;
  bad_recipient.back() = static_cast<char>(static_cast<uint8_t>(RecipientStatus::kDeferred) + 1);
  for (const std::string& enc : {bad_state, bad_recipient}) {
    std::string_view in(enc);
    MessageInfo out;
    EXPECT_EQ(DecodeState(&in, &out).code(), Code::kCorruption);
  }
}

TEST(StateCodecTest, HugeRecipientCountFailsWithoutAllocating) {
  std::string enc(1, static_cast<char>(kCodecVersion));
  enc.push_back(static_cast<char>(MessageState::kQueued));
  PutVarint(&enc, 0);  // attempts
  PutVarint(&enc, 0);  // next attempt
  PutVarint(&enc, kU64Max >> 1);
  std::string_view in(enc);
  MessageInfo out;
  EXPECT_EQ(DecodeState(&in, &out).code(), Code::kCorruption);
}

// ---- Commit -----------------------------------------------------------------------------

TEST(CommitCodecTest, RoundTrips) {
  const IndexEntry sample = SampleEntry();
  std::vector<log::Location> many;
  for (uint64_t i = 0; i < 5000; ++i) many.push_back({i, i * 4096, static_cast<uint32_t>(i)});
  for (const std::vector<log::Location>& chunks :
       {std::vector<log::Location>{}, sample.chunks, many,
        std::vector<log::Location>{{kU64Max, kU64Max, kU32Max}}}) {
    const std::string enc = EncodeCommit(sample.info, chunks);
    MessageInfo info;
    std::vector<log::Location> got = {{7, 7, 7}};  // replaced
    ASSERT_OK(DecodeCommit(enc, &info, &got));
    ExpectSameEnvelope(info, sample.info);
    EXPECT_EQ(got, chunks);
  }
}

TEST(CommitCodecTest, HugeChunkCountFailsWithoutAllocating) {
  std::string enc = EncodeEnvelope(SampleInfo());
  PutVarint(&enc, kU64Max >> 1);
  MessageInfo info;
  std::vector<log::Location> chunks;
  EXPECT_EQ(DecodeCommit(enc, &info, &chunks).code(), Code::kCorruption);
}

// ---- Index entry ------------------------------------------------------------------------

TEST(IndexEntryCodecTest, RoundTripsChunked) {
  const IndexEntry e = SampleEntry();
  IndexEntry got;
  ASSERT_OK(DecodeIndexEntry(EncodeIndexEntry(e), &got));
  ExpectSameEnvelope(got.info, e.info);
  ExpectSameState(got.info, e.info);
  EXPECT_EQ(got.main, e.main);
  EXPECT_EQ(got.body_offset, e.body_offset);
  EXPECT_EQ(got.chunks, e.chunks);
  EXPECT_EQ(got.state, e.state);
  EXPECT_TRUE(got.chunked());
}

TEST(IndexEntryCodecTest, RoundTripsWholeMessageWithoutStateRecord) {
  IndexEntry e = SampleEntry();
  e.chunks.clear();
  e.body_offset = 321;
  e.state = {};
  IndexEntry got;
  got.chunks = {{1, 2, 3}};  // replaced
  ASSERT_OK(DecodeIndexEntry(EncodeIndexEntry(e), &got));
  EXPECT_EQ(got.body_offset, 321u);
  EXPECT_EQ(got.state, log::Location{});
  EXPECT_FALSE(got.chunked());
}

TEST(IndexEntryCodecTest, RoundTripsMaxima) {
  IndexEntry e = SampleEntry();
  e.info.size = kU64Max;
  e.info.arrival_ms = kI64Min;
  e.info.next_attempt_ms = kI64Max;
  e.info.attempts = kU32Max;
  e.main = {kU64Max, kU64Max, kU32Max};
  e.state = {kU64Max, kU64Max, kU32Max};
  e.body_offset = kU32Max;
  IndexEntry got;
  ASSERT_OK(DecodeIndexEntry(EncodeIndexEntry(e), &got));
  ExpectSameEnvelope(got.info, e.info);
  ExpectSameState(got.info, e.info);
  EXPECT_EQ(got.main, e.main);
  EXPECT_EQ(got.state, e.state);
  EXPECT_EQ(got.body_offset, kU32Max);
}

TEST(IndexEntryCodecTest, DoesNotCarryTheId) {
  // The id is the entry's key: the value does not repeat it.
  IndexEntry e = SampleEntry();
  e.info.id = MessageId(1, 2);
  IndexEntry other = e;
  other.info.id = MessageId(3, 4);
  EXPECT_EQ(EncodeIndexEntry(e), EncodeIndexEntry(other));
}

TEST(IndexEntryCodecTest, FootprintCountsEveryRecord) {
  const IndexEntry e = SampleEntry();
  EXPECT_EQ(e.footprint(), 4096u + 4096 + 2 * (65536 + 4096) + 4096);
  IndexEntry bare;
  EXPECT_EQ(bare.footprint(), 0u);
}

TEST(IndexEntryCodecTest, HugeChunkCountFailsWithoutAllocating) {
  const IndexEntry e = SampleEntry();
  std::string enc = EncodeEnvelope(e.info) + EncodeState(e.info);
  PutLocation(&enc, e.main);
  PutVarint(&enc, 0);  // body offset
  PutLocation(&enc, e.state);
  PutVarint(&enc, kU64Max >> 1);
  IndexEntry got;
  EXPECT_EQ(DecodeIndexEntry(enc, &got).code(), Code::kCorruption);
}

// ---- Every decoder ----------------------------------------------------------------------

TEST(DecoderTest, EveryTruncationIsCorruption) {
  for (const Decoder& d : AllDecoders()) {
    ASSERT_OK(d.decode(d.valid));
    for (size_t n = 0; n < d.valid.size(); ++n) {
      const ExactBuffer buf(std::string_view(d.valid).substr(0, n));
      EXPECT_EQ(d.decode(buf.view()).code(), Code::kCorruption)
          << d.name << " cut to " << n << " of " << d.valid.size() << " bytes";
    }
  }
}

TEST(DecoderTest, WrongVersionIsCorruption) {
  for (const Decoder& d : AllDecoders()) {
    for (const uint8_t version : {uint8_t{0}, uint8_t{kCodecVersion + 1}, uint8_t{0xff}}) {
      std::string enc = d.valid;
      enc[0] = static_cast<char>(version);
      EXPECT_EQ(d.decode(enc).code(), Code::kCorruption) << d.name << " version " << int(version);
    }
  }
}

TEST(DecoderTest, WrongVersionOfTheStatePartOfAnEntryIsCorruption) {
  const IndexEntry e = SampleEntry();
  std::string enc = EncodeIndexEntry(e);
  enc[EncodeEnvelope(e.info).size()] = static_cast<char>(kStateWithMetadataVersion + 1);
  IndexEntry got;
  EXPECT_EQ(DecodeIndexEntry(enc, &got).code(), Code::kCorruption);
}

// Garbled inputs decode or fail; they never crash, hang or (in a sanitizer build) read
// outside the input.
TEST(DecoderTest, GarbledInputFailsOrDecodes) {
  const uint64_t seed = testing::TestSeed(42);
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  int failed = 0, decoded = 0;
  for (const Decoder& d : AllDecoders()) {
    for (int round = 0; round < 2000; ++round) {
      std::string enc = d.valid;
      const int flips = 1 + static_cast<int>(rng() % 4);
      for (int f = 0; f < flips; ++f) {
        enc[rng() % enc.size()] = static_cast<char>(rng());
      }
      enc.resize(rng() % (enc.size() + 1));
      const ExactBuffer buf(enc);
      (d.decode(buf.view()).ok() ? decoded : failed)++;
    }
    for (int round = 0; round < 500; ++round) {
      std::string junk = testing::RandomBytes(rng(), rng() % 64);
      if (!junk.empty() && round % 2 == 0) junk[0] = static_cast<char>(kCodecVersion);
      const ExactBuffer buf(junk);
      (d.decode(buf.view()).ok() ? decoded : failed)++;
    }
  }
  EXPECT_GT(failed, 0);
  std::cerr << decoded << " garbled inputs decoded, " << failed << " refused\n";
}

// ---- Keys -------------------------------------------------------------------------------

TEST(IdKeyTest, IsSixteenBigEndianBytesAndRoundTrips) {
  const MessageId id(0x0102030405060708, 0x090a0b0c0d0e0f10);
  const std::string key = IdKey(id);
  EXPECT_TRUE(SameBytes(key,
                        "\x01\x02\x03\x04\x05\x06\x07\x08"
                        "\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10"));
  EXPECT_EQ(IdFromKey(key), id);
  for (const MessageId& m : {MessageId(), MessageId(kU64Max, kU64Max), MessageId(1, 0)}) {
    EXPECT_EQ(IdFromKey(IdKey(m)), m);
  }
}

TEST(IdKeyTest, ShortKeyIsTheInvalidId) {
  EXPECT_FALSE(IdFromKey(std::string(15, '\x01')).valid());
  EXPECT_FALSE(IdFromKey("").valid());
}

TEST(IdKeyTest, SortsByTimeThenTag) {
  std::mt19937_64 rng(testing::TestSeed(7));
  std::vector<MessageId> ids;
  for (int i = 0; i < 1000; ++i) {
    // Small and large halves, so that byte order and little-endian order differ.
    const uint64_t time = i % 3 == 0 ? rng() % 300 : rng();
    ids.emplace_back(time, rng() >> (rng() % 64));
  }
  ids.emplace_back(5, kU64Max);
  ids.emplace_back(6, 0);
  std::vector<std::string> keys;
  for (const MessageId& id : ids) keys.push_back(IdKey(id));
  std::sort(ids.begin(), ids.end());
  std::sort(keys.begin(), keys.end());
  for (size_t i = 0; i < ids.size(); ++i) {
    ASSERT_EQ(IdFromKey(keys[i]), ids[i]) << "position " << i;
  }
}

}  // namespace
}  // namespace spool::internal
