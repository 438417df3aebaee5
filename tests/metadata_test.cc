// Spool::SetMetadata and its forms: durable and atomic, carried by the state records
// through later state changes, reclamation, a crash and an index rebuild; the size limit;
// the state encoding of both versions; spool-fsck's view; the C API.

#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "core/internal.h"
#include "fsck/fsck.h"
#include "index/codec.h"
#include "spool/c.h"
#include "spool/spool.h"
#include "spool_test_util.h"
#include "test_util.h"

namespace spool {
namespace {

using spool::testing::MakeEnvelope;
using spool::testing::RandomBytes;
using spool::testing::TempDir;

class MetadataTest : public ::testing::Test {
 protected:
  TempDir dir_;
  Options options_ = testing::SmallSpoolOptions({dir_.Sub("a")});

  std::string MetadataOf(Spool& spool, const MessageId& id) {
    StatusOr<MessageInfo> info = spool.Get(id);
    EXPECT_OK(info.status());
    return info.ok() ? info->envelope.metadata : std::string();
  }
};

// Binary bytes, NULs included.
std::string BinaryMetadata(int seed, size_t size) {
  std::string s = RandomBytes(seed, size);
  if (!s.empty()) s[0] = '\0';
  return s;
}

TEST_F(MetadataTest, ReplacedMetadataSurvivesStateChangesAndACrash) {
  const std::string replaced = BinaryMetadata(1, 3000);
  MessageId id, untouched;
  {
    ASSERT_OK_AND_ASSIGN(auto spool, Spool::Open(options_));
    ASSERT_OK_AND_ASSIGN(id, spool->Enqueue(MakeEnvelope(), "body"));
    ASSERT_OK_AND_ASSIGN(untouched, spool->Enqueue(MakeEnvelope(), "body"));
    ASSERT_OK(spool->SetMetadata(id, replaced));
    EXPECT_EQ(MetadataOf(*spool, id), replaced);
    // Later state changes rewrite the state record, and keep the metadata.
    ASSERT_OK(spool->RecordAttempt(id, {{{1, RecipientStatus::kDeferred}}, 12345, true}));
    ASSERT_OK(spool->Hold(id));
    ASSERT_OK(spool->RecordAttempt(untouched, {{}, 777, true}));
    EXPECT_EQ(MetadataOf(*spool, id), replaced);
    internal::CloseAsIfCrashed(std::move(spool));
  }
  ASSERT_OK_AND_ASSIGN(auto spool, Spool::Open(options_));
  ASSERT_OK_AND_ASSIGN(MessageInfo info, spool->Get(id));
  EXPECT_EQ(info.envelope.metadata, replaced);
  EXPECT_EQ(info.state, MessageState::kHeld);
  EXPECT_EQ(info.attempts, 1u);
  EXPECT_EQ(info.recipient_status[1], RecipientStatus::kDeferred);
  EXPECT_EQ(MetadataOf(*spool, untouched), MakeEnvelope().metadata);
  // Empty metadata is a value too.
  ASSERT_OK(spool->SetMetadata(id, ""));
  EXPECT_EQ(MetadataOf(*spool, id), "");
  ASSERT_OK(spool->Remove(id));
  EXPECT_EQ(spool->SetMetadata(id, "x").code(), Code::kNotFound);
}

TEST_F(MetadataTest, SizeLimitIsEnforcedAndAFailedUpdateKeepsTheOldBytes) {
  ASSERT_OK_AND_ASSIGN(auto spool, Spool::Open(options_));
  Envelope big = MakeEnvelope();
  big.metadata.assign(kMaxMetadataSize + 1, 'm');
  EXPECT_EQ(spool->Enqueue(big, "body").status().code(), Code::kInvalidArgument);
  big.metadata.pop_back();
  ASSERT_OK_AND_ASSIGN(MessageId id, spool->Enqueue(big, "body"));
  EXPECT_EQ(MetadataOf(*spool, id), big.metadata);
  EXPECT_EQ(spool->SetMetadata(id, std::string(kMaxMetadataSize + 1, 'n')).code(),
            Code::kInvalidArgument);
  EXPECT_EQ(MetadataOf(*spool, id), big.metadata);
  const std::string most(kMaxMetadataSize, 'o');
  ASSERT_OK(spool->SetMetadata(id, most));
  EXPECT_EQ(MetadataOf(*spool, id), most);
  EXPECT_EQ(spool->SetMetadata(MessageId(), "x").code(), Code::kInvalidArgument);
}

TEST_F(MetadataTest, AsyncFormCompletesInOrderAndIsDurable) {
  std::vector<MessageId> ids;
  {
    ASSERT_OK_AND_ASSIGN(auto spool, Spool::Open(options_));
    for (int i = 0; i < 20; ++i) {
      ASSERT_OK_AND_ASSIGN(MessageId id, spool->Enqueue(MakeEnvelope(), "body"));
      ids.push_back(id);
    }
    std::vector<absl::Notification> done(ids.size() * 2);
    std::vector<Status> results(ids.size() * 2);
    for (size_t i = 0; i < ids.size(); ++i) {
      for (size_t round = 0; round < 2; ++round) {
        const size_t k = i * 2 + round;
        spool->SetMetadataAsync(ids[i], "v" + std::to_string(round) + "-" + std::to_string(i),
                                [&, k](const Status& s) {
                                  results[k] = s;
                                  done[k].Notify();
                                });
      }
    }
    for (size_t k = 0; k < done.size(); ++k) {
      done[k].WaitForNotification();
      EXPECT_OK(results[k]);
    }
    // An early failure answers on the caller's thread.
    Status early;
    spool->SetMetadataAsync(ids[0], std::string(kMaxMetadataSize + 1, 'x'),
                            [&](const Status& s) { early = s; });
    EXPECT_EQ(early.code(), Code::kInvalidArgument);
    internal::CloseAsIfCrashed(std::move(spool));
  }
  ASSERT_OK_AND_ASSIGN(auto spool, Spool::Open(options_));
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_EQ(MetadataOf(*spool, ids[i]), "v1-" + std::to_string(i));
  }
  Options ro = options_;
  ro.read_only = true;
  spool.reset();
  ASSERT_OK_AND_ASSIGN(spool, Spool::Open(ro));
  EXPECT_EQ(spool->SetMetadata(ids[0], "x").code(), Code::kFailedPrecondition);
  Status early;
  spool->SetMetadataAsync(ids[0], "x", [&](const Status& s) { early = s; });
  EXPECT_EQ(early.code(), Code::kFailedPrecondition);
}

// Reclamation copies a message forward as its enqueue record (with the metadata of the
// enqueue) and its state record (with the replacement): the replacement wins, before and
// after a crash, after an index rebuild, and spool-fsck finds the log and index agreeing.
TEST_F(MetadataTest, ReclamationRebuildAndFsckKeepTheReplacement) {
  std::map<MessageId, std::string> live;
  {
    ASSERT_OK_AND_ASSIGN(auto spool, Spool::Open(options_));
    for (int i = 0; i < 1400; ++i) {
      ASSERT_OK_AND_ASSIGN(MessageId id, spool->Enqueue(MakeEnvelope(), RandomBytes(i, 5000)));
      if (i % 20 == 0) {
        const std::string md = BinaryMetadata(i, 100 + i);
        ASSERT_OK(spool->SetMetadata(id, md));
        live[id] = md;
      } else {
        ASSERT_OK(spool->Remove(id));
      }
    }
    for (int i = 0; i < 100 && spool->GetStats().segments_live > 5; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    EXPECT_GT(spool->GetStats().reclaimed_segments, 0u);
    for (auto& [id, md] : live) EXPECT_EQ(MetadataOf(*spool, id), md);
    internal::CloseAsIfCrashed(std::move(spool));
  }
  {
    ASSERT_OK_AND_ASSIGN(auto spool, Spool::Open(options_));
    for (auto& [id, md] : live) EXPECT_EQ(MetadataOf(*spool, id), md);
  }
  fsck::FsckOptions fo;
  fo.dirs = options_.dirs;
  fsck::Report report = fsck::Fsck(fo);
  for (const fsck::Problem& p : report.problems) {
    // The crash above leaves a torn tail, which no open since has written over.
    if (p.kind == "torn_tail") continue;
    EXPECT_NE(p.severity, fsck::Severity::kError) << p.kind << ": " << p.detail;
  }
  ASSERT_OK(RebuildIndex(options_));
  ASSERT_OK_AND_ASSIGN(auto spool, Spool::Open(options_));
  size_t count = 0;
  ASSERT_OK(spool->ForEach([&](const MessageInfo& info) {
    ++count;
    EXPECT_EQ(info.envelope.metadata, live[info.id]) << info.id.ToString();
    return true;
  }));
  EXPECT_EQ(count, live.size());
}

// A state of the first version (every spool before SetMetadata) decodes and leaves the
// envelope's metadata; a state carrying metadata replaces it.
TEST(MetadataCodecTest, BothStateVersionsDecode) {
  internal::IndexEntry entry;
  entry.info.envelope.metadata = "original";
  entry.info.attempts = 3;
  entry.info.recipient_status = {RecipientStatus::kDelivered};
  const std::string v1 = internal::EncodeState(entry);
  EXPECT_EQ(static_cast<uint8_t>(v1[0]), internal::kCodecVersion);
  EXPECT_EQ(v1.find("original"), std::string::npos);

  internal::IndexEntry decoded;
  decoded.info.envelope.metadata = "from the envelope";
  std::string_view in(v1);
  ASSERT_OK(internal::DecodeState(&in, &decoded));
  EXPECT_TRUE(in.empty());
  EXPECT_FALSE(decoded.metadata_in_state);
  EXPECT_EQ(decoded.info.envelope.metadata, "from the envelope");
  EXPECT_EQ(decoded.info.attempts, 3u);

  entry.metadata_in_state = true;
  entry.info.envelope.metadata = std::string("bin\0ary", 7);
  const std::string v2 = internal::EncodeState(entry);
  EXPECT_EQ(static_cast<uint8_t>(v2[0]), internal::kStateWithMetadataVersion);
  in = v2;
  ASSERT_OK(internal::DecodeState(&in, &decoded));
  EXPECT_TRUE(in.empty());
  EXPECT_TRUE(decoded.metadata_in_state);
  EXPECT_EQ(decoded.info.envelope.metadata, entry.info.envelope.metadata);

  // The index entry keeps the flag.
  internal::IndexEntry round;
  ASSERT_OK(internal::DecodeIndexEntry(internal::EncodeIndexEntry(entry), &round));
  EXPECT_TRUE(round.metadata_in_state);
  EXPECT_EQ(round.info.envelope.metadata, entry.info.envelope.metadata);

  // Truncated or over-long metadata is malformed.
  in = std::string_view(v2).substr(0, v2.size() - 1);
  EXPECT_EQ(internal::DecodeState(&in, &decoded).code(), Code::kCorruption);
  std::string bad = v2;
  bad[0] = 3;
  in = bad;
  EXPECT_EQ(internal::DecodeState(&in, &decoded).code(), Code::kCorruption);
}

TEST_F(MetadataTest, CApiSetsMetadata) {
  spool_reply_t err;
  spool_t* s = spool_open(options_.dirs[0].c_str(), &err);
  ASSERT_NE(s, nullptr) << err.text;
  char id[SPOOL_ID_SIZE];
  const char* rcpt[] = {"bob@example.net"};
  spool_envelope_t env = {"alice@example.org", rcpt, 1, nullptr, "old", 3};
  ASSERT_EQ(spool_enqueue_envelope(s, &env, "body", 4, id, sizeof(id), &err), 0) << err.text;
  const char bytes[] = {'n', '\0', 'w'};
  ASSERT_EQ(spool_set_metadata(s, id, bytes, sizeof(bytes), &err), 0) << err.text;
  EXPECT_EQ(spool_set_metadata(s, id, nullptr, 1, &err), -1);
  EXPECT_EQ(err.code, 501);
  std::string too_big(SPOOL_MAX_METADATA_SIZE + 1, 'x');
  EXPECT_EQ(spool_set_metadata(s, id, too_big.data(), too_big.size(), &err), -1);
  EXPECT_EQ(err.code, 501);
  EXPECT_EQ(spool_set_metadata(s, "not-an-id", bytes, 1, &err), -1);
  spool_close(s);
  ASSERT_OK_AND_ASSIGN(auto spool, Spool::Open(options_));
  ASSERT_OK_AND_ASSIGN(MessageId parsed, MessageId::Parse(id));
  EXPECT_EQ(MetadataOf(*spool, parsed), std::string(bytes, sizeof(bytes)));
}

}  // namespace
}  // namespace spool
