#include "log/record.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "test_util.h"

namespace spool::log {
namespace {

std::vector<std::byte> Encode(RecordType type, RecordId id, const std::string& payload,
                              uint64_t epoch, uint64_t batch) {
  std::vector<std::byte> buf(RecordFootprint(payload.size()));
  EncodeRecord(buf.data(), type, id,
               {reinterpret_cast<const std::byte*>(payload.data()), payload.size()});
  FinalizeRecord(buf.data(), epoch, batch, batch - 1, 0);
  return buf;
}

TEST(RecordTest, RoundTripEveryTypeAndSize) {
  for (uint8_t t = 1; t <= kMaxRecordType; ++t) {
    for (size_t size : {0, 1, 7, 8, 9, 63, 64, 4096, 100000}) {
      const std::string payload = testing::RandomBytes(size + t, size);
      auto buf = Encode(static_cast<RecordType>(t), {t, size}, payload, 5, 9);
      RecordHeader h;
      ASSERT_EQ(DecodeRecordHeader(buf.data(), 5, buf.size(), &h), HeaderState::kValid);
      EXPECT_EQ(h.type, t);
      EXPECT_EQ(h.payload_size, size);
      EXPECT_EQ(h.epoch, 5u);
      EXPECT_EQ(h.batch_seq, 9u);
      EXPECT_EQ(h.id_hi, t);
      EXPECT_EQ(h.id_lo, size);
      EXPECT_TRUE(PayloadIntact(h, {buf.data() + sizeof(RecordHeader), size}));
      EXPECT_EQ(buf.size() % kRecordAlignment, 0u);
    }
  }
}

TEST(RecordTest, EveryHeaderBitFlipIsDetected) {
  const std::string payload = testing::RandomBytes(1, 300);
  const auto good = Encode(RecordType::kMessage, {1, 2}, payload, 3, 4);
  for (size_t bit = 0; bit < sizeof(RecordHeader) * 8; ++bit) {
    auto buf = good;
    buf[bit / 8] ^= std::byte(1u << (bit % 8));
    RecordHeader h;
    HeaderState st = DecodeRecordHeader(buf.data(), 3, buf.size(), &h);
    EXPECT_NE(st, HeaderState::kValid) << "bit " << bit;
  }
}

TEST(RecordTest, EveryPayloadBitFlipIsDetected) {
  const std::string payload = testing::RandomBytes(2, 64);
  const auto good = Encode(RecordType::kMessage, {1, 2}, payload, 3, 4);
  for (size_t bit = 0; bit < payload.size() * 8; ++bit) {
    auto buf = good;
    buf[sizeof(RecordHeader) + bit / 8] ^= std::byte(1u << (bit % 8));
    RecordHeader h;
    ASSERT_EQ(DecodeRecordHeader(buf.data(), 3, buf.size(), &h), HeaderState::kValid);
    EXPECT_FALSE(PayloadIntact(h, {buf.data() + sizeof(RecordHeader), payload.size()}));
  }
}

TEST(RecordTest, ZeroStaleAndFutureEpochs) {
  std::vector<std::byte> zeros(sizeof(RecordHeader));
  RecordHeader h;
  EXPECT_EQ(DecodeRecordHeader(zeros.data(), 1, 4096, &h), HeaderState::kZero);
  auto buf = Encode(RecordType::kRemove, {1, 1}, "", 7, 1);
  EXPECT_EQ(DecodeRecordHeader(buf.data(), 8, buf.size(), &h), HeaderState::kStale);
  EXPECT_EQ(DecodeRecordHeader(buf.data(), 6, buf.size(), &h), HeaderState::kBad);
  // A footprint that does not fit the room left in the segment is damage.
  EXPECT_EQ(DecodeRecordHeader(buf.data(), 7, buf.size() - 8, &h), HeaderState::kBad);
}

TEST(RecordTest, PaddingIsAValidBatchEnd) {
  std::vector<std::byte> buf(4096 - 200);
  EncodePadding(buf.data(), buf.size(), 2, 3, 2);
  RecordHeader h;
  ASSERT_EQ(DecodeRecordHeader(buf.data(), 2, buf.size(), &h), HeaderState::kValid);
  EXPECT_EQ(h.type, static_cast<uint8_t>(RecordType::kPadding));
  EXPECT_TRUE(h.flags & kFlagBatchEnd);
  EXPECT_EQ(RecordFootprint(h.payload_size), buf.size());
}

TEST(SegmentHeaderTest, RoundTripAndDamage) {
  SegmentHeader in{};
  in.format_version = kFormatVersion;
  in.spool_id = 42;
  in.shard = 3;
  in.seq = 17;
  in.prev_seq = 16;
  in.prev_end = 8192;
  in.segment_size = 1 << 20;
  std::vector<std::byte> block(kBlockSize);
  EncodeSegmentHeader(in, block.data());
  SegmentHeader out;
  ASSERT_EQ(DecodeSegmentHeader(block.data(), &out), SegmentHeaderState::kValid);
  EXPECT_EQ(out.seq, 17u);
  EXPECT_EQ(out.prev_end, 8192u);
  for (size_t bit = 0; bit < sizeof(SegmentHeader) * 8; ++bit) {
    auto b = block;
    b[bit / 8] ^= std::byte(1u << (bit % 8));
    EXPECT_EQ(DecodeSegmentHeader(b.data(), &out), SegmentHeaderState::kBad) << bit;
  }
  std::vector<std::byte> zero(kBlockSize);
  EXPECT_EQ(DecodeSegmentHeader(zero.data(), &out), SegmentHeaderState::kFree);
  in.format_version = kFormatVersion + 1;
  EncodeSegmentHeader(in, block.data());
  EXPECT_EQ(DecodeSegmentHeader(block.data(), &out), SegmentHeaderState::kNewVersion);
}

}  // namespace
}  // namespace spool::log
