// Failure handling (docs/errors.md): latched faults re-probed and cleared without a restart, a
// failing index caught up from the log, faults on one shard leaving the others serving,
// damage found by reads reported with the message id, and by the scrubber quarantined. Real
// disk faults (tmpfs, ext4 remounted read-only, dropped privileges, FUSE) are in
// tests/faults/; the full fault matrix is in fault_matrix_test.cc.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

#include "absl/time/time.h"
#include "core/internal.h"
#include "index/index.h"
#include "io/fault_file_system.h"
#include "spool/logging.h"
#include "spool/smtp_reply.h"
#include "spool/spool.h"
#include "spool_test_util.h"
#include "test_util.h"
#include "util/sync_point.h"

namespace spool {
namespace {

using spool::testing::MakeEnvelope;
using spool::testing::RandomBytes;
using spool::testing::TempDir;

// Frequent re-probes: a cleared fault is noticed quickly.
Options TestOptions(const std::vector<std::string>& dirs) {
  Options o = testing::SmallSpoolOptions(dirs);
  o.reprobe_interval_ms = 50;
  return o;
}

// Bounds a wait for a background thread to reach a sync point: long enough for a loaded
// machine, not a timing assertion (a test that passes waits far less).
const absl::Duration kPatience = absl::Seconds(20);

// Polls `ok` for up to 20 s (a bound on a background action, not a timing assertion).
template <typename F>
bool Eventually(F ok) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    if (ok()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return ok();
}

void ExpectAllIntact(Spool& spool, const std::map<MessageId, std::string>& acked) {
  for (const auto& [id, body] : acked) {
    StatusOr<std::string> got = spool.ReadBody(id);
    ASSERT_TRUE(got.ok()) << id.ToString() << ": " << got.status().ToString();
    ASSERT_EQ(*got, body) << id.ToString();
  }
}

class FailureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(base_, io::NewFileSystem(io::Backend::kPosix));
    fs_ = std::make_unique<io::FaultFileSystem>(base_.get());
  }
  TempDir dir_;
  std::unique_ptr<io::FileSystem> base_;
  std::unique_ptr<io::FaultFileSystem> fs_;
};

TEST_F(FailureTest, LatchedDiskFaultClearsByItselfOnceTheProbePasses) {
  if (!SyncPoint::kCompiledIn) GTEST_SKIP() << "built without SPOOL_SYNC_POINTS";
  Options o = TestOptions({dir_.Sub("a")});
  std::unique_ptr<Spool> spool;
  ScopedSyncPoints sync_points;  // counts the re-probes
  ASSERT_OK_AND_ASSIGN(spool, internal::OpenWithFileSystem(o, fs_.get()));
  std::map<MessageId, std::string> acked;
  for (int i = 0; i < 20; ++i) {
    std::string body = RandomBytes(i, 3000 + i);
    ASSERT_OK_AND_ASSIGN(MessageId id, spool->Enqueue(MakeEnvelope(), body));
    acked[id] = body;
  }
  // Every write fails from now on, the probe's too: the disk is broken.
  fs_->FailNth(io::OpKind::kWrite, 1, EIO, /*sticky=*/true);
  StatusOr<MessageId> failed = spool->Enqueue(MakeEnvelope(), "lost");
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(SmtpReplyFor(failed.status()).ToString(), "451 4.3.0 Local error in processing");
  // Latched after an I/O error: not serving until a re-probe passes.
  Status admission = spool->Admission(100);
  ASSERT_FALSE(admission.ok());
  EXPECT_EQ(SmtpReplyFor(admission).ToString(), "421 4.3.2 Service not available");
  StatusOr<MessageId> refused = spool->Enqueue(MakeEnvelope(), "refused");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(SmtpReplyFor(refused.status()).code, 421);
  Health h = spool->GetHealth();
  EXPECT_EQ(h.state, HealthState::kRefusing);
  ASSERT_EQ(h.shards.size(), 1u);
  EXPECT_FALSE(h.shards[0].status.ok());
  // While the cause stays, re-probes fail and the shard keeps refusing. The second probe
  // runs after the first one's outcome took effect (the shard's maintenance thread runs
  // both).
  ASSERT_TRUE(Eventually([&] { return spool->GetStats().faults >= 1; }));
  ASSERT_TRUE(SyncPoint::GetInstance()->WaitUntilPassed("SpoolImpl::Reprobe:Probed", 2, kPatience));
  EXPECT_FALSE(spool->Admission(100).ok());
  EXPECT_EQ(spool->GetStats().recoveries, 0u);
  // Acknowledged mail stays readable on the broken disk.
  ExpectAllIntact(*spool, acked);

  fs_->ClearFaults();
  ASSERT_TRUE(Eventually([&] { return spool->Admission(100).ok(); }))
      << spool->Admission(100).ToString();
  EXPECT_EQ(spool->GetHealth().state, HealthState::kHealthy);
  Stats st = spool->GetStats();
  EXPECT_GE(st.faults, 1u);
  EXPECT_GE(st.recoveries, 1u);
  for (int i = 0; i < 20; ++i) {
    std::string body = RandomBytes(100 + i, 5000);
    ASSERT_OK_AND_ASSIGN(MessageId id, spool->Enqueue(MakeEnvelope(), body));
    acked[id] = body;
  }
  ExpectAllIntact(*spool, acked);
  spool.reset();
  ASSERT_OK_AND_ASSIGN(spool, Spool::Open(o));
  ExpectAllIntact(*spool, acked);
}

TEST_F(FailureTest, AFaultyShardLeavesTheOthersServing) {
  Options o = TestOptions({dir_.Sub("a"), dir_.Sub("b")});
  ASSERT_OK_AND_ASSIGN(auto spool, internal::OpenWithFileSystem(o, fs_.get()));
  fs_->SetFailPathFilter(dir_.Sub("a") + "/");
  fs_->FailNth(io::OpKind::kSync, 1, EIO, /*sticky=*/true);
  std::map<MessageId, std::string> acked;
  int failures = 0;
  for (int i = 0; i < 40; ++i) {
    std::string body = RandomBytes(i, 2000);
    StatusOr<MessageId> id = spool->Enqueue(MakeEnvelope(), body);
    if (id.ok()) {
      acked[*id] = body;
      EXPECT_EQ(id->shard(), 1u) << "a failed sync acknowledged on the faulty shard";
    } else {
      ++failures;
      EXPECT_EQ(SmtpReplyFor(id.status()).ToString(), "451 4.3.0 Local error in processing");
    }
  }
  // Shard a failed at most its first sync and its one rewrite; then b took everything.
  EXPECT_LE(failures, 2);
  EXPECT_GE(acked.size(), 38u);
  Health h = spool->GetHealth();
  EXPECT_EQ(h.state, HealthState::kDegraded);
  EXPECT_TRUE(h.status.ok());
  EXPECT_OK(spool->Admission(100));
  fs_->ClearFaults();
  ASSERT_TRUE(Eventually([&] { return spool->GetHealth().state == HealthState::kHealthy; }));
  spool.reset();
  ASSERT_OK_AND_ASSIGN(spool, Spool::Open(o));
  ExpectAllIntact(*spool, acked);
}

TEST_F(FailureTest, FailingIndexCatchesUpFromTheLogWithoutARestart) {
  Options o = TestOptions({dir_.Sub("a")});
  o.reprobe_interval_ms = 20;
  ASSERT_OK_AND_ASSIGN(auto spool, Spool::Open(o));
  std::mutex mu;
  std::map<MessageId, std::string> acked;
  std::atomic<int> failures{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> producers;
  for (int t = 0; t < 6; ++t) {
    producers.emplace_back([&, t] {
      for (int i = 0; !stop.load(); ++i) {
        std::string body = RandomBytes(t * 100000 + i, 1000 + i % 3000);
        StatusOr<MessageId> id = spool->Enqueue(MakeEnvelope(), body);
        if (id.ok()) {
          std::lock_guard<std::mutex> l(mu);
          acked[*id] = body;
        } else {
          failures.fetch_add(1);
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
      }
    });
  }
  ASSERT_TRUE(Eventually([&] {
    std::lock_guard<std::mutex> l(mu);
    return acked.size() >= 200;
  }));
  internal::FailIndexWritesForTest(spool.get(), 0, IoError("injected index write failure"));
  ASSERT_TRUE(Eventually([&] { return failures.load() >= 20; }));
  stop.store(true);
  for (std::thread& t : producers) t.join();
  // Messages acknowledged while the index failed are in the log: a lookup says the index
  // is failing, never "no such message".
  size_t behind = 0;
  for (const auto& [id, body] : acked) {
    StatusOr<MessageInfo> info = spool->Get(id);
    if (!info.ok()) {
      EXPECT_NE(info.status().code(), Code::kNotFound) << id.ToString();
      ++behind;
    }
  }
  std::cerr << acked.size() << " acknowledged, " << behind << " of them after the index failed, "
            << failures.load() << " refused\n";
  // The batch whose index write failed was acknowledged (its records are durable): the
  // catch-up below has at least that to replay.
  EXPECT_GT(behind, 0u);
  EXPECT_FALSE(spool->Admission(100).ok());

  internal::FailIndexWritesForTest(spool.get(), 0, Status::Ok());
  ASSERT_TRUE(Eventually([&] { return spool->Admission(100).ok(); }));
  for (const auto& [id, body] : acked) ASSERT_OK(spool->Get(id).status());
  ExpectAllIntact(*spool, acked);
  std::string body = RandomBytes(7, 7777);
  ASSERT_OK_AND_ASSIGN(MessageId id, spool->Enqueue(MakeEnvelope(), body));
  acked[id] = body;
  internal::CloseAsIfCrashed(std::move(spool));
  ASSERT_OK_AND_ASSIGN(spool, Spool::Open(o));
  ExpectAllIntact(*spool, acked);
}

// Index::Reopen (the last resort after a RocksDB error that Resume cannot clear) swaps the
// open database while other threads read and write it: readers and writers must either
// work on a database or get an error, never touch a closed one, and a batch built for the
// old database must not be written into the new one.
TEST(IndexReopenTest, ReopenWhileReadersAndWritersRun) {
  TempDir dir;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<index::Index> idx,
                       index::Index::Open(dir.Sub("index"), /*read_only=*/false));
  auto entry_for = [](uint64_t n) {
    internal::IndexEntry e;
    e.info.id = MessageId(1000 + n, (uint64_t{0} << 48) | 7);
    e.info.envelope = MakeEnvelope();
    e.info.size = n;
    e.info.arrival_ms = static_cast<int64_t>(n);
    e.info.next_attempt_ms = static_cast<int64_t>(n);
    e.info.recipient_status = {RecipientStatus::kPending};
    e.main = {1, n * 4096, 100};
    return e;
  };
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> written{0}, refused{0}, reads{0};
  std::vector<std::thread> threads;
  threads.emplace_back([&] {
    for (uint64_t n = 1; !stop.load(); ++n) {
      index::Index::Batch batch(*idx);
      batch.Put(entry_for(n), nullptr);
      batch.SetCheckpoint({1, n * 4096 + 100, 0});
      if (idx->Write(batch).ok()) {
        written.fetch_add(1);
      } else {
        refused.fetch_add(1);
      }
    }
  });
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      for (uint64_t n = 1; !stop.load(); ++n) {
        switch ((n + t) % 4) {
          case 0:
            idx->Get(entry_for(n).info.id).status().IgnoreError();
            break;
          case 1:
            idx->ScanDue("default", INT64_MAX, 10).status().IgnoreError();
            break;
          case 2:
            idx->ForEach([](const MessageId&, const internal::IndexEntry&) { return true; })
                .IgnoreError();
            break;
          case 3:
            idx->Checkpoint().status().IgnoreError();
            idx->BackgroundError().IgnoreError();
            break;
        }
        reads.fetch_add(1);
      }
    });
  }
  int reopened = 0;
  for (int i = 0; i < 20; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    Status s = i % 2 == 0 ? idx->Flush() : Status::Ok();
    if (s.ok()) s = idx->Reopen();
    EXPECT_OK(s);
    if (s.ok()) ++reopened;
  }
  stop.store(true);
  for (std::thread& t : threads) t.join();
  std::cerr << reopened << " reopens; " << written.load() << " writes, " << refused.load()
            << " refused; " << reads.load() << " reads\n";
  EXPECT_EQ(reopened, 20);
  // The database works after the reopens, and what it holds after a flush survives one.
  internal::IndexEntry last = entry_for(1u << 30);
  {
    // Scoped: a live batch holds the database and would keep Reopen waiting.
    index::Index::Batch batch(*idx);
    batch.Put(last, nullptr);
    batch.SetCheckpoint({2, 4096, 0});
    ASSERT_OK(idx->Write(batch));
  }
  ASSERT_OK(idx->Flush());
  ASSERT_OK(idx->Reopen());
  ASSERT_OK_AND_ASSIGN(std::optional<internal::IndexEntry> got, idx->Get(last.info.id));
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->info.size, last.info.size);
  ASSERT_OK_AND_ASSIGN(log::Location checkpoint, idx->Checkpoint());
  EXPECT_EQ(checkpoint.segment, 2u);
}

// A batch built before a reopen delays it until the batch is gone, is refused while the
// reopen waits for it, and the next batch works.
TEST(IndexReopenTest, BatchBuiltBeforeAReopenIsRefused) {
  if (!SyncPoint::kCompiledIn) GTEST_SKIP() << "built without SPOOL_SYNC_POINTS";
  TempDir dir;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<index::Index> idx,
                       index::Index::Open(dir.Sub("index"), /*read_only=*/false));
  internal::IndexEntry e;
  e.info.id = MessageId(12345, 7);
  e.info.envelope = MakeEnvelope();
  e.info.recipient_status = {RecipientStatus::kPending};
  e.main = {1, 0, 100};
  std::optional<index::Index::Batch> stale;
  stale.emplace(*idx);
  stale->Put(e, nullptr);
  ScopedSyncPoints sync_points;
  // The stale batch holds the old database: Reopen waits for it (at most 10 s). Written
  // meanwhile, it is refused (there is no open database), then let go.
  std::thread release([&] {
    EXPECT_TRUE(
        SyncPoint::GetInstance()->WaitUntilPassed("Index::Reopen:WaitForUsers", 1, kPatience));
    EXPECT_FALSE(idx->Write(*stale).ok());
    stale.reset();
  });
  const Status reopened = idx->Reopen();
  release.join();
  ASSERT_OK(reopened);
  index::Index::Batch fresh(*idx);
  fresh.Put(e, nullptr);
  ASSERT_OK(idx->Write(fresh));
  ASSERT_OK_AND_ASSIGN(std::optional<internal::IndexEntry> got, idx->Get(e.info.id));
  EXPECT_TRUE(got.has_value());
}

// RocksDB's diagnostics reach spool's log (index.cc): opening a new index is not one.
TEST(IndexLogTest, NewIndexLogsNoWarning) {
  TempDir dir;
  std::mutex mu;
  std::vector<std::string> lines;
  SetLogSink([&](LogLevel level, std::string_view message) {
    if (level < LogLevel::kWarning) return;
    std::lock_guard<std::mutex> l(mu);
    lines.emplace_back(message);
  });
  StatusOr<std::unique_ptr<index::Index>> idx = index::Index::Open(dir.Sub("index"), false);
  if (idx.ok()) idx->reset();
  SetLogSink(nullptr);
  ASSERT_OK(idx.status());
  EXPECT_TRUE(lines.empty()) << ::testing::PrintToString(lines);
}

// Flips one byte of `needle`'s first occurrence in the shard's segment files.
void FlipByteOf(const std::string& shard_dir, const std::string& needle) {
  for (const auto& entry : std::filesystem::directory_iterator(shard_dir + "/log")) {
    std::string data;
    {
      std::FILE* f = std::fopen(entry.path().c_str(), "rb");
      ASSERT_NE(f, nullptr);
      data.resize(std::filesystem::file_size(entry.path()));
      ASSERT_EQ(std::fread(data.data(), 1, data.size(), f), data.size());
      std::fclose(f);
    }
    const size_t at = data.find(needle);
    if (at == std::string::npos) continue;
    const int fd = ::open(entry.path().c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    const char flipped = static_cast<char>(data[at + needle.size() / 2] ^ 0x10);
    ASSERT_EQ(::pwrite(fd, &flipped, 1, static_cast<off_t>(at + needle.size() / 2)), 1);
    ASSERT_EQ(::fsync(fd), 0);
    ::close(fd);
    return;
  }
  FAIL() << "body not found in " << shard_dir;
}

TEST_F(FailureTest, ScrubberQuarantinesDamageInColdSegments) {
  Options o = TestOptions({dir_.Sub("a")});
  o.reclaim = false;
  o.scrub_bytes_per_sec = 1ull << 30;
  ASSERT_OK_AND_ASSIGN(auto spool, Spool::Open(o));
  std::map<MessageId, std::string> acked;
  std::vector<MessageId> order;
  for (int i = 0; i < 60; ++i) {
    std::string body = "unique-body-" + std::to_string(i) + "-" + RandomBytes(i, 60000);
    ASSERT_OK_AND_ASSIGN(MessageId id, spool->Enqueue(MakeEnvelope(), body));
    acked[id] = body;
    order.push_back(id);
  }
  const MessageId victim = order[3];  // in the first segment, sealed long ago
  FlipByteOf(dir_.Sub("a"), acked[victim]);
  // The state is visible (indexed) a moment before the scrubber counts the quarantine.
  ASSERT_TRUE(Eventually([&] {
    StatusOr<MessageInfo> info = spool->Get(victim);
    return info.ok() && info->state == MessageState::kCorrupt && spool->GetStats().quarantined > 0;
  }));
  Stats st = spool->GetStats();
  EXPECT_GE(st.corrupt_found, 1u);
  EXPECT_EQ(st.quarantined, 1u);
  EXPECT_GT(st.scrubbed_bytes, 0u);
  StatusOr<std::string> read = spool->ReadBody(victim);
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.status().code(), Code::kCorruption);
  EXPECT_NE(read.status().message().find(victim.ToString()), std::string::npos);
  ASSERT_OK_AND_ASSIGN(auto due, spool->ScanDue("default", INT64_MAX, 1000));
  EXPECT_EQ(std::count(due.begin(), due.end(), victim), 0);
  acked.erase(victim);
  ExpectAllIntact(*spool, acked);
  spool.reset();
  // The quarantine is durable.
  ASSERT_OK_AND_ASSIGN(spool, Spool::Open(o));
  ASSERT_OK_AND_ASSIGN(MessageInfo info, spool->Get(victim));
  EXPECT_EQ(info.state, MessageState::kCorrupt);
  ExpectAllIntact(*spool, acked);
}

TEST_F(FailureTest, ReadOfADamagedBodyReportsTheIdNeverTheBytes) {
  Options o = TestOptions({dir_.Sub("a")});
  o.scrub_bytes_per_sec = 0;
  ASSERT_OK_AND_ASSIGN(auto spool, Spool::Open(o));
  const std::string body = "needle-" + RandomBytes(1, 20000);
  ASSERT_OK_AND_ASSIGN(MessageId id, spool->Enqueue(MakeEnvelope(), body));
  ASSERT_OK_AND_ASSIGN(MessageId other, spool->Enqueue(MakeEnvelope(), "another message"));
  FlipByteOf(dir_.Sub("a"), body);
  StatusOr<std::string> read = spool->ReadBody(id);
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.status().code(), Code::kCorruption);
  EXPECT_NE(read.status().message().find(id.ToString()), std::string::npos);
  EXPECT_EQ(SmtpReplyFor(read.status()).code, 451);
  // Reported, not quarantined: a read path that flips bits must not condemn intact mail
  // (the scrubber reads twice before it quarantines).
  ASSERT_OK_AND_ASSIGN(MessageInfo info, spool->Get(id));
  EXPECT_EQ(info.state, MessageState::kQueued);
  EXPECT_EQ(spool->GetStats().quarantined, 0u);
  EXPECT_GE(spool->GetStats().corrupt_found, 1u);
  ASSERT_OK_AND_ASSIGN(std::string again, spool->ReadBody(other));
  EXPECT_EQ(again, "another message");
  // An operator may still delete it.
  ASSERT_OK(spool->Remove(id));
  EXPECT_EQ(spool->Get(id).status().code(), Code::kNotFound);
}

}  // namespace
}  // namespace spool
