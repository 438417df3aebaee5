// The index of one shard (index/index.h): entries through batches, the checkpoint, the
// schedule behind ScanDue, ordered scans, what survives a close, the read-only overlay,
// injected write failures and reopening. Concurrent reopens are in failure_test.cc.

#include "index/index.h"

#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <rocksdb/options.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "index/codec.h"
#include "test_util.h"

namespace spool::index {
namespace {

using internal::IdKey;
using testing::TempDir;

constexpr int64_t kI64Min = std::numeric_limits<int64_t>::min();
constexpr int64_t kI64Max = std::numeric_limits<int64_t>::max();
constexpr int64_t kFarFuture = 4102444800000;  // 2100
// Larger than any number of entries a test writes.
constexpr size_t kNoLimit = 1000000;

// A queued entry of `queue`, due at `next_ms`, whose id has time `time`.
IndexEntry Entry(uint64_t time, std::string queue = "default", int64_t next_ms = 0) {
  IndexEntry e;
  e.info.id = MessageId(time, 0x0001000000000007);
  e.info.envelope.sender = "alice@example.org";
  e.info.envelope.recipients = {"bob@example.net", "carol@example.net"};
  e.info.envelope.queue = std::move(queue);
  e.info.envelope.metadata = "m" + std::to_string(time);
  e.info.size = time * 10;
  e.info.arrival_ms = static_cast<int64_t>(time);
  e.info.next_attempt_ms = next_ms;
  e.info.recipient_status = {RecipientStatus::kPending, RecipientStatus::kPending};
  e.main = {1, time * 4096, 4096};
  return e;
}

IndexEntry WithState(IndexEntry e, MessageState state) {
  e.info.state = state;
  return e;
}

void ExpectSameEntry(const IndexEntry& got, const IndexEntry& want) {
  EXPECT_EQ(got.info.id, want.info.id);
  EXPECT_EQ(got.info.envelope.sender, want.info.envelope.sender);
  EXPECT_EQ(got.info.envelope.recipients, want.info.envelope.recipients);
  EXPECT_EQ(got.info.envelope.queue, want.info.envelope.queue);
  EXPECT_EQ(got.info.envelope.metadata, want.info.envelope.metadata);
  EXPECT_EQ(got.info.state, want.info.state);
  EXPECT_EQ(got.info.size, want.info.size);
  EXPECT_EQ(got.info.arrival_ms, want.info.arrival_ms);
  EXPECT_EQ(got.info.next_attempt_ms, want.info.next_attempt_ms);
  EXPECT_EQ(got.info.attempts, want.info.attempts);
  EXPECT_EQ(got.info.recipient_status, want.info.recipient_status);
  EXPECT_EQ(got.main, want.main);
  EXPECT_EQ(got.body_offset, want.body_offset);
  EXPECT_EQ(got.chunks, want.chunks);
  EXPECT_EQ(got.state, want.state);
}

class IndexTest : public ::testing::Test {
 protected:
  std::string path() const { return dir_.Sub("index"); }

  std::unique_ptr<Index> Open(bool read_only = false) {
    StatusOr<std::unique_ptr<Index>> index = Index::Open(path(), read_only);
    EXPECT_TRUE(index.ok()) << index.status().ToString();
    return index.ok() ? std::move(index).value() : nullptr;
  }

  // Writes `entries` (new ones) in one batch, with `checkpoint` if given.
  static Status PutAll(Index& index, const std::vector<IndexEntry>& entries,
                       std::optional<log::Location> checkpoint = std::nullopt) {
    Index::Batch batch(index);
    for (const IndexEntry& e : entries) batch.Put(e, nullptr);
    if (checkpoint) batch.SetCheckpoint(*checkpoint);
    return index.Write(batch);
  }

  static std::optional<IndexEntry> Get(Index& index, const MessageId& id) {
    StatusOr<std::optional<IndexEntry>> got = index.Get(id);
    EXPECT_TRUE(got.ok()) << got.status().ToString();
    return got.ok() ? *got : std::nullopt;
  }

  static std::vector<MessageId> Due(Index& index, std::string_view queue, int64_t now_ms,
                                    size_t limit = kNoLimit) {
    StatusOr<std::vector<std::pair<int64_t, MessageId>>> due = index.ScanDue(queue, now_ms, limit);
    EXPECT_TRUE(due.ok()) << due.status().ToString();
    std::vector<MessageId> ids;
    if (due.ok()) {
      for (const auto& [time, id] : *due) ids.push_back(id);
    }
    return ids;
  }

  static std::vector<MessageId> All(Index& index, const MessageId* from = nullptr) {
    std::vector<MessageId> ids;
    EXPECT_OK(index.ForEach(
        [&](const MessageId& id, const IndexEntry& e) {
          EXPECT_EQ(e.info.id, id);
          ids.push_back(id);
          return true;
        },
        from));
    return ids;
  }

  TempDir dir_;
};

// ---- Open -------------------------------------------------------------------------------

TEST_F(IndexTest, OpenCreatesAnEmptyIndex) {
  std::unique_ptr<Index> index = Open();
  ASSERT_NE(index, nullptr);
  EXPECT_TRUE(std::filesystem::is_directory(path()));
  EXPECT_FALSE(index->read_only());
  ASSERT_OK_AND_ASSIGN(log::Location checkpoint, index->Checkpoint());
  EXPECT_EQ(checkpoint, log::Location{});
  EXPECT_TRUE(All(*index).empty());
  EXPECT_FALSE(Get(*index, MessageId(1, 1)).has_value());
  EXPECT_OK(index->BackgroundError());
}

TEST_F(IndexTest, ReadOnlyOpenOfAMissingIndexFailsAndCreatesNothing) {
  EXPECT_FALSE(Index::Open(path(), /*read_only=*/true).ok());
  EXPECT_FALSE(std::filesystem::exists(path()));
}

TEST_F(IndexTest, OpenUnderAFileFails) {
  testing::WriteFile(path(), "not a directory");
  EXPECT_FALSE(Index::Open(path(), /*read_only=*/false).ok());
}

// ---- Batches ----------------------------------------------------------------------------

TEST_F(IndexTest, PutGetDelete) {
  std::unique_ptr<Index> index = Open();
  IndexEntry a = Entry(100);
  a.chunks = {{2, 0, 70000}, {2, 73728, 100}};
  a.state = {3, 4096, 512};
  a.info.attempts = 3;
  const IndexEntry b = Entry(200);
  {
    Index::Batch batch(*index);
    EXPECT_TRUE(batch.empty());
    batch.Put(a, nullptr);
    batch.Put(b, nullptr);
    EXPECT_FALSE(batch.empty());
    ASSERT_OK(index->Write(batch));
  }
  std::optional<IndexEntry> got = Get(*index, a.info.id);
  ASSERT_TRUE(got.has_value());
  ExpectSameEntry(*got, a);
  {
    Index::Batch batch(*index);
    batch.Delete(a);
    EXPECT_FALSE(batch.empty());
    ASSERT_OK(index->Write(batch));
  }
  EXPECT_FALSE(Get(*index, a.info.id).has_value());
  EXPECT_TRUE(Get(*index, b.info.id).has_value());
  EXPECT_EQ(All(*index), std::vector<MessageId>{b.info.id});
}

TEST_F(IndexTest, NothingOfABatchIsVisibleBeforeItsWrite) {
  std::unique_ptr<Index> index = Open();
  Index::Batch batch(*index);
  batch.Put(Entry(100), nullptr);
  batch.SetCheckpoint({1, 8192, 0});
  EXPECT_FALSE(Get(*index, MessageId(100, 0x0001000000000007)).has_value());
  ASSERT_OK_AND_ASSIGN(log::Location checkpoint, index->Checkpoint());
  EXPECT_EQ(checkpoint, log::Location{});
  ASSERT_OK(index->Write(batch));
  EXPECT_TRUE(Get(*index, MessageId(100, 0x0001000000000007)).has_value());
}

TEST_F(IndexTest, PutReplacesAnEntry) {
  std::unique_ptr<Index> index = Open();
  const IndexEntry old = Entry(100);
  ASSERT_OK(PutAll(*index, {old}));
  IndexEntry updated = old;
  updated.info.attempts = 1;
  updated.info.recipient_status = {RecipientStatus::kDelivered, RecipientStatus::kDeferred};
  updated.state = {5, 0, 4096};
  Index::Batch batch(*index);
  batch.Put(updated, &old);
  ASSERT_OK(index->Write(batch));
  std::optional<IndexEntry> got = Get(*index, old.info.id);
  ASSERT_TRUE(got.has_value());
  ExpectSameEntry(*got, updated);
  EXPECT_EQ(All(*index).size(), 1u);
}

TEST_F(IndexTest, CheckpointIsTheLastWritten) {
  std::unique_ptr<Index> index = Open();
  ASSERT_OK(PutAll(*index, {Entry(1)}, log::Location{1, 4096, 0}));
  {
    Index::Batch batch(*index);
    batch.SetCheckpoint({7, 1 << 20, 0});
    EXPECT_TRUE(batch.empty()) << "a checkpoint alone changes no entry";
    ASSERT_OK(index->Write(batch));
  }
  ASSERT_OK_AND_ASSIGN(log::Location checkpoint, index->Checkpoint());
  EXPECT_EQ(checkpoint.segment, 7u);
  EXPECT_EQ(checkpoint.offset, uint64_t{1} << 20);
  // A batch without a checkpoint leaves it.
  ASSERT_OK(PutAll(*index, {Entry(2)}));
  ASSERT_OK_AND_ASSIGN(checkpoint, index->Checkpoint());
  EXPECT_EQ(checkpoint.segment, 7u);
}

// ---- The schedule -----------------------------------------------------------------------

TEST_F(IndexTest, ScheduleKeyOnlyForQueuedEntries) {
  const IndexEntry e = Entry(100, "slow", 5000);
  const std::string key = ScheduleKey(e, e.info.id);
  EXPECT_EQ(key.size(), std::string("slow").size() + 1 + 8 + 16);
  EXPECT_TRUE(key.starts_with(std::string("slow\0", 5)));
  EXPECT_TRUE(key.ends_with(IdKey(e.info.id)));
  EXPECT_EQ(ScheduleKey(WithState(e, MessageState::kHeld), e.info.id), "");
  EXPECT_EQ(ScheduleKey(WithState(e, MessageState::kCorrupt), e.info.id), "");
}

TEST_F(IndexTest, ScheduleKeysSortByTimeIncludingNegativeOnes) {
  std::vector<int64_t> times = {kI64Min, -5000, -1, 0, 1, 5000, kI64Max};
  std::vector<std::string> keys;
  for (const int64_t t : times) {
    const IndexEntry e = Entry(1, "q", t);
    keys.push_back(ScheduleKey(e, e.info.id));
  }
  EXPECT_TRUE(std::is_sorted(keys.begin(), keys.end()));
}

TEST_F(IndexTest, ScanDueReturnsDueQueuedEntriesOfTheQueueEarliestFirst) {
  std::unique_ptr<Index> index = Open();
  // Written out of order; ids and due times in different orders.
  const std::vector<IndexEntry> entries = {
      Entry(1, "a", 300),
      Entry(2, "a", -20),
      Entry(3, "a", 100),
      Entry(4, "a", 100),
      Entry(5, "a", 1000),  // not yet due
      Entry(6, "b", 50),    // another queue
      Entry(7, "ab", 50),   // a queue whose name starts like "a"
      WithState(Entry(8, "a", 10), MessageState::kHeld),
      WithState(Entry(9, "a", 10), MessageState::kCorrupt),
      Entry(10, "a", 500),  // due exactly now
  };
  ASSERT_OK(PutAll(*index, entries));
  auto id = [&](size_t i) { return entries[i].info.id; };
  StatusOr<std::vector<std::pair<int64_t, MessageId>>> due = index->ScanDue("a", 500, kNoLimit);
  ASSERT_OK(due.status());
  const std::vector<std::pair<int64_t, MessageId>> want = {
      {-20, id(1)}, {100, id(2)}, {100, id(3)}, {300, id(0)}, {500, id(9)}};
  EXPECT_EQ(*due, want);
  EXPECT_EQ(Due(*index, "a", 500, 2), (std::vector<MessageId>{id(1), id(2)}));
  EXPECT_TRUE(Due(*index, "a", 500, 0).empty());
  EXPECT_TRUE(Due(*index, "a", -21).empty());
  EXPECT_EQ(Due(*index, "b", 500), std::vector<MessageId>{id(5)});
  EXPECT_EQ(Due(*index, "ab", 500), std::vector<MessageId>{id(6)});
  EXPECT_TRUE(Due(*index, "", 500).empty());
  EXPECT_TRUE(Due(*index, "none", 500).empty());
}

TEST_F(IndexTest, ScanDueAtTheEndsOfTime) {
  std::unique_ptr<Index> index = Open();
  const std::vector<IndexEntry> entries = {Entry(1, "q", kI64Min), Entry(2, "q", 0),
                                           Entry(3, "q", kI64Max)};
  ASSERT_OK(PutAll(*index, entries));
  EXPECT_EQ(Due(*index, "q", kI64Min), std::vector<MessageId>{entries[0].info.id});
  EXPECT_EQ(Due(*index, "q", kI64Max),
            (std::vector<MessageId>{entries[0].info.id, entries[1].info.id, entries[2].info.id}));
}

TEST_F(IndexTest, ScheduleFollowsStateChangesAndRemoval) {
  std::unique_ptr<Index> index = Open();
  const IndexEntry queued = Entry(1, "q", 100);
  ASSERT_OK(PutAll(*index, {queued}));
  // Retried later: the old schedule key goes with `old`.
  IndexEntry later = queued;
  later.info.next_attempt_ms = 900;
  {
    Index::Batch batch(*index);
    batch.Put(later, &queued);
    ASSERT_OK(index->Write(batch));
  }
  EXPECT_TRUE(Due(*index, "q", 500).empty());
  EXPECT_EQ(Due(*index, "q", 900), std::vector<MessageId>{queued.info.id});
  // Held: not scheduled at all.
  const IndexEntry held = WithState(later, MessageState::kHeld);
  {
    Index::Batch batch(*index);
    batch.Put(held, &later);
    ASSERT_OK(index->Write(batch));
  }
  EXPECT_TRUE(Due(*index, "q", kFarFuture).empty());
  // Released: scheduled again.
  {
    Index::Batch batch(*index);
    batch.Put(later, &held);
    ASSERT_OK(index->Write(batch));
  }
  EXPECT_EQ(Due(*index, "q", kFarFuture), std::vector<MessageId>{queued.info.id});
  // Removed: gone from the schedule too.
  {
    Index::Batch batch(*index);
    batch.Delete(later);
    ASSERT_OK(index->Write(batch));
  }
  EXPECT_TRUE(Due(*index, "q", kFarFuture).empty());
}

// ---- ForEach ----------------------------------------------------------------------------

TEST_F(IndexTest, ForEachVisitsInIdOrderFromAPosition) {
  std::unique_ptr<Index> index = Open();
  std::vector<IndexEntry> entries;
  for (const uint64_t t : {50, 10, 40, 20, 30}) entries.push_back(Entry(t));
  ASSERT_OK(PutAll(*index, entries));
  auto ids_from = [](std::vector<uint64_t> times) {
    std::vector<MessageId> ids;
    for (const uint64_t t : times) ids.push_back(Entry(t).info.id);
    return ids;
  };
  EXPECT_EQ(All(*index), ids_from({10, 20, 30, 40, 50}));
  const MessageId at = Entry(30).info.id;
  EXPECT_EQ(All(*index, &at), ids_from({30, 40, 50})) << "from is inclusive";
  const MessageId between(25, 0);
  EXPECT_EQ(All(*index, &between), ids_from({30, 40, 50}));
  const MessageId past(51, 0);
  EXPECT_TRUE(All(*index, &past).empty());
  // The visitor stops the scan.
  int visits = 0;
  ASSERT_OK(index->ForEach([&](const MessageId&, const IndexEntry&) { return ++visits < 2; }));
  EXPECT_EQ(visits, 2);
}

// ---- Durability -------------------------------------------------------------------------

// Writes go without RocksDB's write-ahead log: a close keeps what was flushed and nothing
// after it, so that the checkpoint always matches the entries.
TEST_F(IndexTest, CloseKeepsWhatWasFlushedWithItsCheckpoint) {
  const IndexEntry flushed = Entry(1), unflushed = Entry(2);
  {
    std::unique_ptr<Index> index = Open();
    ASSERT_OK(PutAll(*index, {flushed}, log::Location{1, 4096, 0}));
    ASSERT_OK(index->Flush());
    ASSERT_OK(PutAll(*index, {unflushed}, log::Location{1, 8192, 0}));
  }
  std::unique_ptr<Index> index = Open();
  ASSERT_NE(index, nullptr);
  std::optional<IndexEntry> got = Get(*index, flushed.info.id);
  ASSERT_TRUE(got.has_value());
  ExpectSameEntry(*got, flushed);
  ASSERT_OK_AND_ASSIGN(log::Location checkpoint, index->Checkpoint());
  EXPECT_EQ(Due(*index, "default", 0), std::vector<MessageId>{flushed.info.id});
  if (std::getenv("SPOOL_INDEX_WAL") != nullptr) {
    GTEST_SKIP() << "SPOOL_INDEX_WAL keeps unflushed writes";
  }
  EXPECT_EQ(checkpoint, (log::Location{1, 4096, 0}));
  EXPECT_FALSE(Get(*index, unflushed.info.id).has_value());
}

TEST_F(IndexTest, ReopenKeepsWhatWasFlushed) {
  std::unique_ptr<Index> index = Open();
  const IndexEntry flushed = Entry(1), unflushed = Entry(2);
  ASSERT_OK(PutAll(*index, {flushed}, log::Location{2, 0, 0}));
  ASSERT_OK(index->Flush());
  ASSERT_OK(PutAll(*index, {unflushed}, log::Location{2, 4096, 0}));
  ASSERT_OK(index->Reopen());
  EXPECT_OK(index->BackgroundError());
  EXPECT_TRUE(Get(*index, flushed.info.id).has_value());
  // The reopened database takes writes.
  ASSERT_OK(PutAll(*index, {Entry(3)}, log::Location{2, 8192, 0}));
  EXPECT_TRUE(Get(*index, Entry(3).info.id).has_value());
  if (std::getenv("SPOOL_INDEX_WAL") != nullptr) {
    GTEST_SKIP() << "SPOOL_INDEX_WAL keeps unflushed writes";
  }
  EXPECT_FALSE(Get(*index, unflushed.info.id).has_value());
}

// ---- Injected failures ------------------------------------------------------------------

TEST_F(IndexTest, FailWritesForTestFailsEveryWriteUntilCleared) {
  std::unique_ptr<Index> index = Open();
  ASSERT_OK(PutAll(*index, {Entry(1)}, log::Location{1, 0, 0}));
  index->FailWritesForTest(IoError("injected"));
  for (int i = 0; i < 2; ++i) {
    const Status s = PutAll(*index, {Entry(2)}, log::Location{1, 4096, 0});
    EXPECT_EQ(s.code(), Code::kIoError);
    EXPECT_EQ(s.message(), "injected");
  }
  EXPECT_FALSE(Get(*index, Entry(2).info.id).has_value());
  ASSERT_OK_AND_ASSIGN(log::Location checkpoint, index->Checkpoint());
  EXPECT_EQ(checkpoint.offset, 0u);
  EXPECT_TRUE(Get(*index, Entry(1).info.id).has_value()) << "reads still work";
  index->FailWritesForTest(Status::Ok());
  ASSERT_OK(PutAll(*index, {Entry(2)}, log::Location{1, 4096, 0}));
  EXPECT_TRUE(Get(*index, Entry(2).info.id).has_value());
}

// An entry whose value does not decode (written behind the index's back) is reported,
// with its id, by the reads that meet it.
TEST_F(IndexTest, UndecodableEntryIsCorruption) {
  const IndexEntry good = Entry(1), bad = Entry(2);
  {
    std::unique_ptr<Index> index = Open();
    ASSERT_OK(PutAll(*index, {good, bad}));
    ASSERT_OK(index->Flush());
  }
  {
    rocksdb::DBOptions options;
    std::vector<rocksdb::ColumnFamilyDescriptor> families;
    for (const char* name : {"default", "messages", "schedule", "meta"}) {
      families.emplace_back(name, rocksdb::ColumnFamilyOptions());
    }
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(options, path(), families, &handles, &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    ASSERT_TRUE(
        db->Put(rocksdb::WriteOptions(), handles[1], IdKey(bad.info.id), "\x01garbage").ok());
    for (rocksdb::ColumnFamilyHandle* h : handles)
      ASSERT_TRUE(db->DestroyColumnFamilyHandle(h).ok());
    ASSERT_TRUE(db->Close().ok());
  }
  std::unique_ptr<Index> index = Open();
  ASSERT_NE(index, nullptr);
  EXPECT_TRUE(Get(*index, good.info.id).has_value());
  const StatusOr<std::optional<IndexEntry>> got = index->Get(bad.info.id);
  EXPECT_EQ(got.status().code(), Code::kCorruption);
  EXPECT_NE(got.status().message().find(bad.info.id.ToString()), std::string::npos)
      << got.status().ToString();
  EXPECT_EQ(index->ForEach([](const MessageId&, const IndexEntry&) { return true; }).code(),
            Code::kCorruption);
}

// ---- Read-only --------------------------------------------------------------------------

// A read-only index takes the replay of the log after its checkpoint in memory: reads see
// the database with the overlay over it, and the database on disk stays as it was.
TEST_F(IndexTest, ReadOnlyWritesGoToTheOverlay) {
  const IndexEntry kept = Entry(10, "q", 100), changed = Entry(20, "q", 200),
                   removed = Entry(30, "q", 300), added = Entry(25, "q", 50);
  {
    std::unique_ptr<Index> index = Open();
    ASSERT_OK(PutAll(*index, {kept, changed, removed}, log::Location{1, 4096, 0}));
    ASSERT_OK(index->Flush());
  }
  IndexEntry held = WithState(changed, MessageState::kHeld);
  held.info.attempts = 4;
  {
    std::unique_ptr<Index> index = Open(/*read_only=*/true);
    ASSERT_NE(index, nullptr);
    EXPECT_TRUE(index->read_only());
    Index::Batch batch(*index);
    batch.Put(added, nullptr);
    batch.Put(held, &changed);
    batch.Delete(removed);
    batch.SetCheckpoint({1, 8192, 0});
    EXPECT_FALSE(batch.empty());
    ASSERT_OK(index->Write(batch));

    std::optional<IndexEntry> got = Get(*index, changed.info.id);
    ASSERT_TRUE(got.has_value());
    ExpectSameEntry(*got, held);
    EXPECT_FALSE(Get(*index, removed.info.id).has_value());
    got = Get(*index, added.info.id);
    ASSERT_TRUE(got.has_value());
    ExpectSameEntry(*got, added);
    EXPECT_TRUE(Get(*index, kept.info.id).has_value());
    EXPECT_EQ(All(*index), (std::vector<MessageId>{kept.info.id, changed.info.id, added.info.id}));
    const MessageId from(21, 0);
    EXPECT_EQ(All(*index, &from), std::vector<MessageId>{added.info.id});
    // The schedule of the merged view: the held entry is not due, the added one is.
    StatusOr<std::vector<std::pair<int64_t, MessageId>>> due = index->ScanDue("q", 1000, 10);
    ASSERT_OK(due.status());
    const std::vector<std::pair<int64_t, MessageId>> want = {{50, added.info.id},
                                                             {100, kept.info.id}};
    EXPECT_EQ(*due, want);
    EXPECT_EQ(Due(*index, "q", 1000, 1), std::vector<MessageId>{added.info.id});
    ASSERT_OK_AND_ASSIGN(log::Location checkpoint, index->Checkpoint());
    EXPECT_EQ(checkpoint, (log::Location{1, 8192, 0}));
    EXPECT_OK(index->Flush());
    EXPECT_OK(index->Resume());
    // Removing an entry the overlay added, and adding back one it removed.
    Index::Batch again(*index);
    again.Delete(added);
    again.Put(removed, nullptr);
    ASSERT_OK(index->Write(again));
    EXPECT_EQ(All(*index),
              (std::vector<MessageId>{kept.info.id, changed.info.id, removed.info.id}));
  }
  // The database itself is untouched.
  std::unique_ptr<Index> index = Open();
  ASSERT_NE(index, nullptr);
  EXPECT_EQ(All(*index), (std::vector<MessageId>{kept.info.id, changed.info.id, removed.info.id}));
  std::optional<IndexEntry> got = Get(*index, changed.info.id);
  ASSERT_TRUE(got.has_value());
  ExpectSameEntry(*got, changed);
  ASSERT_OK_AND_ASSIGN(log::Location checkpoint, index->Checkpoint());
  EXPECT_EQ(checkpoint, (log::Location{1, 4096, 0}));
}

TEST_F(IndexTest, ReadOnlyCheckpointIsTheDatabasesUntilOneIsWritten) {
  {
    std::unique_ptr<Index> index = Open();
    ASSERT_OK(PutAll(*index, {}, log::Location{3, 4096, 0}));
    ASSERT_OK(index->Flush());
  }
  std::unique_ptr<Index> index = Open(/*read_only=*/true);
  ASSERT_NE(index, nullptr);
  ASSERT_OK_AND_ASSIGN(log::Location checkpoint, index->Checkpoint());
  EXPECT_EQ(checkpoint, (log::Location{3, 4096, 0}));
  ASSERT_OK(PutAll(*index, {Entry(1)}));  // no checkpoint in this batch
  ASSERT_OK_AND_ASSIGN(checkpoint, index->Checkpoint());
  EXPECT_EQ(checkpoint, (log::Location{3, 4096, 0}));
}

}  // namespace
}  // namespace spool::index
