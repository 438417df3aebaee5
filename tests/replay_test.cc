// How each log record changes its message's index entry (index/replay.h): the rules an
// open replays the log by and spool-fsck rebuilds the index by.

#include "index/replay.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "index/codec.h"
#include "test_util.h"

namespace spool::internal {
namespace {

using spool::testing::SameBytes;

constexpr log::RecordId kRecordId{0x0000018d2c3a4b5c, 0x0002000000abcdef};
const MessageId kId(kRecordId.hi, kRecordId.lo);

MessageInfo Info() {
  MessageInfo info;
  info.envelope.sender = "alice@example.org";
  info.envelope.recipients = {"bob@example.net", "carol@example.net", "dave@example.net"};
  info.envelope.queue = "slow";
  info.envelope.metadata = "helo=mx.example.org";
  info.size = 5;
  info.arrival_ms = 1767225600000;
  return info;
}

log::Record MakeRecord(log::RecordType type, std::string payload, log::Location location,
                       uint8_t flags = 0) {
  log::Record r;
  r.type = type;
  r.id = kRecordId;
  r.batch_seq = 9;
  r.flags = flags;
  r.location = location;
  r.payload = std::move(payload);
  return r;
}

log::Record MessageRecord(const std::string& body, log::Location location, uint8_t flags = 0) {
  return MakeRecord(log::RecordType::kMessage, EncodeEnvelope(Info()) + body, location, flags);
}

log::Record CommitRecord(const std::vector<log::Location>& chunks, log::Location location,
                         uint8_t flags = 0) {
  return MakeRecord(log::RecordType::kCommit, EncodeCommit(Info(), chunks), location, flags);
}

// The delivery state a state record carries.
MessageInfo Delivered() {
  MessageInfo info;
  info.state = MessageState::kHeld;
  info.attempts = 2;
  info.next_attempt_ms = 1767229200000;
  info.recipient_status = {RecipientStatus::kDelivered, RecipientStatus::kDeferred,
                           RecipientStatus::kFailed};
  return info;
}

log::Record StateRecord(const MessageInfo& state, log::Location location) {
  return MakeRecord(log::RecordType::kStateUpdate, EncodeState(state), location);
}

// The entry after `r` over `current`, or a test failure.
std::optional<IndexEntry> Replay(const log::Record& r, std::optional<IndexEntry> current) {
  StatusOr<std::optional<IndexEntry>> got = ReplayRecord(r, std::move(current));
  EXPECT_TRUE(got.ok()) << got.status().ToString();
  return got.ok() ? *got : std::nullopt;
}

void ExpectEnvelopeOfInfo(const IndexEntry& e) {
  const MessageInfo want = Info();
  EXPECT_EQ(e.info.id, kId);
  EXPECT_EQ(e.info.envelope.sender, want.envelope.sender);
  EXPECT_EQ(e.info.envelope.recipients, want.envelope.recipients);
  EXPECT_EQ(e.info.envelope.queue, want.envelope.queue);
  EXPECT_EQ(e.info.envelope.metadata, want.envelope.metadata);
  EXPECT_EQ(e.info.size, want.size);
  EXPECT_EQ(e.info.arrival_ms, want.arrival_ms);
}

void ExpectStateOf(const IndexEntry& e, const MessageInfo& state) {
  EXPECT_EQ(e.info.state, state.state);
  EXPECT_EQ(e.info.attempts, state.attempts);
  EXPECT_EQ(e.info.next_attempt_ms, state.next_attempt_ms);
  EXPECT_EQ(e.info.recipient_status, state.recipient_status);
}

void ExpectFreshState(const IndexEntry& e) {
  EXPECT_EQ(e.info.state, MessageState::kQueued);
  EXPECT_EQ(e.info.attempts, 0u);
  EXPECT_EQ(e.info.next_attempt_ms, Info().arrival_ms) << "due at arrival";
  EXPECT_EQ(e.info.recipient_status, std::vector<RecipientStatus>(Info().envelope.recipients.size(),
                                                                  RecipientStatus::kPending));
  EXPECT_EQ(e.state, log::Location{}) << "no state record yet";
}

TEST(ReplayTest, WhichRecordTypesChangeAnEntry) {
  EXPECT_TRUE(ChangesIndexEntry(log::RecordType::kMessage));
  EXPECT_TRUE(ChangesIndexEntry(log::RecordType::kCommit));
  EXPECT_TRUE(ChangesIndexEntry(log::RecordType::kStateUpdate));
  EXPECT_TRUE(ChangesIndexEntry(log::RecordType::kRemove));
  EXPECT_FALSE(ChangesIndexEntry(log::RecordType::kBodyChunk));
  EXPECT_FALSE(ChangesIndexEntry(log::RecordType::kPadding));
}

TEST(ReplayTest, OriginalMessagesAreUnrelocatedMessagesAndCommits) {
  const log::Location at{1, 0, 4096};
  EXPECT_TRUE(IsOriginalMessage(MessageRecord("body", at)));
  EXPECT_TRUE(IsOriginalMessage(CommitRecord({}, at)));
  EXPECT_TRUE(IsOriginalMessage(MessageRecord("body", at, log::kFlagBatchEnd)));
  EXPECT_FALSE(IsOriginalMessage(MessageRecord("body", at, log::kFlagRelocated)));
  EXPECT_FALSE(IsOriginalMessage(CommitRecord({}, at, log::kFlagRelocated | log::kFlagBatchEnd)));
  EXPECT_FALSE(IsOriginalMessage(StateRecord(Delivered(), at)));
  EXPECT_FALSE(IsOriginalMessage(MakeRecord(log::RecordType::kRemove, "", at)));
  EXPECT_FALSE(IsOriginalMessage(MakeRecord(log::RecordType::kBodyChunk, "x", at)));
}

TEST(ReplayTest, MessageRecordMakesANewQueuedEntry) {
  const std::string body = "Subject: hi\r\n\r\nhello\r\n";
  const log::Record r = MessageRecord(body, {4, 8192, 4096});
  const std::optional<IndexEntry> e = Replay(r, std::nullopt);
  ASSERT_TRUE(e.has_value());
  ExpectEnvelopeOfInfo(*e);
  ExpectFreshState(*e);
  EXPECT_EQ(e->main, (log::Location{4, 8192, 4096}));
  EXPECT_FALSE(e->chunked());
  // The body is what follows the envelope in the payload.
  ASSERT_EQ(e->body_offset, EncodeEnvelope(Info()).size());
  EXPECT_TRUE(SameBytes(std::string_view(r.payload).substr(e->body_offset), body));
}

TEST(ReplayTest, MessageRecordWithAnEmptyBody) {
  const log::Record r = MessageRecord("", {4, 0, 4096});
  const std::optional<IndexEntry> e = Replay(r, std::nullopt);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->body_offset, r.payload.size());
}

TEST(ReplayTest, CommitRecordMakesANewChunkedEntry) {
  const std::vector<log::Location> chunks = {{2, 0, 69632}, {2, 69632, 69632}, {3, 0, 8192}};
  const std::optional<IndexEntry> e = Replay(CommitRecord(chunks, {3, 8192, 4096}), std::nullopt);
  ASSERT_TRUE(e.has_value());
  ExpectEnvelopeOfInfo(*e);
  ExpectFreshState(*e);
  EXPECT_EQ(e->main, (log::Location{3, 8192, 4096}));
  EXPECT_EQ(e->chunks, chunks);
  EXPECT_EQ(e->body_offset, 0u);
  EXPECT_TRUE(e->chunked());
}

// An entry with a delivery state and a state record, as replay leaves it.
IndexEntry Delivering() {
  std::optional<IndexEntry> e = Replay(MessageRecord("body", {1, 0, 4096}), std::nullopt);
  e = Replay(StateRecord(Delivered(), {1, 4096, 4096}), std::move(e));
  EXPECT_TRUE(e.has_value());
  return e.value_or(IndexEntry());
}

TEST(ReplayTest, RelocatedMessageCopyKeepsStateAndStateRecord) {
  const std::optional<IndexEntry> e =
      Replay(MessageRecord("body", {9, 12288, 4096}, log::kFlagRelocated), Delivering());
  ASSERT_TRUE(e.has_value());
  ExpectEnvelopeOfInfo(*e);
  ExpectStateOf(*e, Delivered());
  EXPECT_EQ(e->main, (log::Location{9, 12288, 4096})) << "the copy's location";
  EXPECT_EQ(e->state, (log::Location{1, 4096, 4096})) << "the latest state record";
  EXPECT_EQ(e->body_offset, EncodeEnvelope(Info()).size());
}

TEST(ReplayTest, RelocatedCommitCopyKeepsStateAndTakesItsChunks) {
  const std::vector<log::Location> chunks = {{9, 0, 69632}, {9, 69632, 8192}};
  const std::optional<IndexEntry> e =
      Replay(CommitRecord(chunks, {9, 77824, 4096}, log::kFlagRelocated), Delivering());
  ASSERT_TRUE(e.has_value());
  ExpectStateOf(*e, Delivered());
  EXPECT_EQ(e->main, (log::Location{9, 77824, 4096}));
  EXPECT_EQ(e->chunks, chunks);
  EXPECT_EQ(e->body_offset, 0u);
  EXPECT_EQ(e->state, (log::Location{1, 4096, 4096}));
}

TEST(ReplayTest, StateUpdateSetsStateAndItsLocation) {
  std::optional<IndexEntry> e = Replay(MessageRecord("body", {1, 0, 4096}), std::nullopt);
  ASSERT_TRUE(e.has_value());
  e = Replay(StateRecord(Delivered(), {2, 4096, 512}), std::move(e));
  ASSERT_TRUE(e.has_value());
  ExpectEnvelopeOfInfo(*e);
  ExpectStateOf(*e, Delivered());
  EXPECT_EQ(e->state, (log::Location{2, 4096, 512}));
  EXPECT_EQ(e->main, (log::Location{1, 0, 4096})) << "the message stays where it is";
  // A later update wins.
  MessageInfo released = Delivered();
  released.state = MessageState::kQueued;
  released.attempts = 3;
  e = Replay(StateRecord(released, {2, 8192, 512}), std::move(e));
  ASSERT_TRUE(e.has_value());
  ExpectStateOf(*e, released);
  EXPECT_EQ(e->state, (log::Location{2, 8192, 512}));
}

TEST(ReplayTest, StateUpdateWithoutAnEntryLeavesNone) {
  // The message was removed later on, or its record reclaimed.
  EXPECT_FALSE(Replay(StateRecord(Delivered(), {2, 0, 512}), std::nullopt).has_value());
}

TEST(ReplayTest, RemoveLeavesNone) {
  const log::Record remove = MakeRecord(log::RecordType::kRemove, "", {2, 0, 512});
  EXPECT_FALSE(Replay(remove, Delivering()).has_value());
  EXPECT_FALSE(Replay(remove, std::nullopt).has_value());
}

TEST(ReplayTest, ChunksAndPaddingChangeNothing) {
  const IndexEntry before = Delivering();
  for (const log::RecordType type : {log::RecordType::kBodyChunk, log::RecordType::kPadding}) {
    const log::Record r = MakeRecord(type, std::string(100, '\0'), {5, 0, 4096});
    std::optional<IndexEntry> e = Replay(r, before);
    ASSERT_TRUE(e.has_value());
    EXPECT_EQ(EncodeIndexEntry(*e), EncodeIndexEntry(before));
    EXPECT_EQ(e->info.id, before.info.id);
    EXPECT_FALSE(Replay(r, std::nullopt).has_value());
  }
}

TEST(ReplayTest, UndecodablePayloadIsAnError) {
  const log::Location at{1, 0, 4096};
  const std::string envelope = EncodeEnvelope(Info());
  std::string wrong_version = envelope;
  wrong_version[0] = static_cast<char>(kCodecVersion + 1);
  std::string commit = EncodeCommit(Info(), {{1, 0, 100}});
  commit.pop_back();
  const std::vector<std::pair<log::Record, std::optional<IndexEntry>>> cases = {
      {MakeRecord(log::RecordType::kMessage, "", at), std::nullopt},
      {MakeRecord(log::RecordType::kMessage, envelope.substr(0, envelope.size() - 1), at),
       std::nullopt},
      {MakeRecord(log::RecordType::kMessage, wrong_version, at), std::nullopt},
      {MakeRecord(log::RecordType::kMessage, wrong_version, at, log::kFlagRelocated), Delivering()},
      {MakeRecord(log::RecordType::kCommit, commit, at), std::nullopt},
      {MakeRecord(log::RecordType::kCommit, envelope, at), std::nullopt},  // no chunk list
      {MakeRecord(log::RecordType::kStateUpdate, "\x01", at), Delivering()},
      {MakeRecord(log::RecordType::kStateUpdate, envelope, at), Delivering()},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const StatusOr<std::optional<IndexEntry>> got = ReplayRecord(cases[i].first, cases[i].second);
    EXPECT_EQ(got.status().code(), Code::kCorruption) << "case " << i;
  }
}

// A message's life in the log, replayed record by record.
TEST(ReplayTest, AWholeLife) {
  std::optional<IndexEntry> e;
  const std::vector<log::Location> chunks = {{1, 0, 69632}};
  e = Replay(MakeRecord(log::RecordType::kBodyChunk, "chunk", chunks[0]), std::move(e));
  EXPECT_FALSE(e.has_value()) << "a chunk is nothing until its commit";
  e = Replay(CommitRecord(chunks, {1, 69632, 4096}), std::move(e));
  e = Replay(StateRecord(Delivered(), {1, 73728, 4096}), std::move(e));
  e = Replay(MakeRecord(log::RecordType::kPadding, "", {1, 77824, 4096}), std::move(e));
  const std::vector<log::Location> moved = {{5, 0, 69632}};
  e = Replay(CommitRecord(moved, {5, 69632, 4096}, log::kFlagRelocated), std::move(e));
  ASSERT_TRUE(e.has_value());
  ExpectStateOf(*e, Delivered());
  EXPECT_EQ(e->chunks, moved);
  EXPECT_EQ(e->state, (log::Location{1, 73728, 4096}));
  e = Replay(MakeRecord(log::RecordType::kRemove, "", {6, 0, 4096}), std::move(e));
  EXPECT_FALSE(e.has_value());
  e = Replay(StateRecord(Delivered(), {6, 4096, 4096}), std::move(e));
  EXPECT_FALSE(e.has_value()) << "a state record after the remove brings nothing back";
}

}  // namespace
}  // namespace spool::internal
