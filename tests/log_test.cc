#include "log/log.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "io/fault_file_system.h"
#include "io/file_system.h"
#include "test_util.h"
#include "util/futex.h"

namespace spool::log {
namespace {

using spool::testing::RandomBytes;
using spool::testing::TempDir;

LogOptions SmallOptions() {
  LogOptions o;
  o.segment_size = 256 << 10;
  o.batch_capacity = 64 << 10;
  o.ready_segments = 2;
  o.max_wait_ms = 20000;
  o.spool_id = 7;
  return o;
}

std::span<const std::byte> Bytes(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

AppendRecord MakeRecord(RecordType type, uint64_t id, const std::string& payload) {
  AppendRecord r;
  r.type = type;
  r.id = {id, ~id};
  r.parts[0] = Bytes(payload);
  r.part_count = 1;
  return r;
}
// The record points into `payload`, which must outlive the append: a temporary would not.
AppendRecord MakeRecord(RecordType type, uint64_t id, std::string&& payload) = delete;

// What a test expects to find after reopening: id -> payload.
using Expected = std::map<uint64_t, std::string>;

struct Replayed {
  std::map<uint64_t, std::string> payloads;
  std::vector<uint64_t> order;
  RecoveryReport report;
};

StatusOr<std::unique_ptr<Log>> Reopen(io::FileSystem* fs, const std::string& dir,
                                      const LogOptions& o, Replayed* out) {
  return Log::Open(
      fs, dir, o,
      [out](const Record& r) {
        if (r.id.lo != ~r.id.hi) return CorruptionError("id halves disagree");
        out->payloads[r.id.hi] = r.payload;
        out->order.push_back(r.id.hi);
        return Status::Ok();
      },
      &out->report);
}

class LogBackendTest : public ::testing::TestWithParam<io::Backend> {
 protected:
  void SetUp() override {
    if (GetParam() == io::Backend::kUring) {
      Status probe = io::ProbeUring();
      if (!probe.ok()) GTEST_SKIP() << "io_uring unavailable: " << probe.ToString();
    }
    auto fs = io::NewFileSystem(GetParam());
    ASSERT_TRUE(fs.ok()) << fs.status().ToString();
    fs_ = std::move(fs).value();
  }
  std::unique_ptr<io::FileSystem> fs_;
  TempDir dir_;
};

TEST_P(LogBackendTest, RoundTripEveryTypeAndSize) {
  LogOptions o = SmallOptions();
  Replayed none;
  ASSERT_OK_AND_ASSIGN(auto log, Reopen(fs_.get(), dir_.path(), o, &none));
  EXPECT_TRUE(none.payloads.empty());
  Expected expected;
  std::map<uint64_t, Location> where;
  uint64_t id = 1;
  const size_t max_payload = o.batch_capacity - 2 * sizeof(RecordHeader);
  for (uint8_t t = 1; t < static_cast<uint8_t>(RecordType::kPadding); ++t) {
    for (size_t size :
         {size_t{0}, size_t{1}, size_t{100}, size_t{4096}, size_t{20000}, max_payload}) {
      std::string payload = RandomBytes(id, size);
      AppendRecord r = MakeRecord(static_cast<RecordType>(t), id, payload);
      std::vector<Location> locs;
      ASSERT_OK(log->Append({&r, 1}, &locs));
      ASSERT_EQ(locs.size(), 1u);
      where[id] = locs[0];
      expected[id++] = payload;
    }
  }
  for (auto& [i, loc] : where) {
    RecordId rid{i, ~i};
    ASSERT_OK_AND_ASSIGN(Record rec, log->Read(loc, &rid));
    EXPECT_EQ(rec.payload, expected[i]) << "id " << i;
  }
  // Too large for one batch: a clear error, nothing written.
  std::string huge(o.batch_capacity, 'x');
  AppendRecord big = MakeRecord(RecordType::kMessage, 999, huge);
  EXPECT_EQ(log->Append({&big, 1}, nullptr).code(), Code::kInvalidArgument);
  EXPECT_GT(log->LiveSegments().size(), 1u);  // the sizes above span several segments
  log.reset();

  Replayed replay;
  ASSERT_OK_AND_ASSIGN(log, Reopen(fs_.get(), dir_.path(), o, &replay));
  EXPECT_EQ(replay.payloads, expected);
  EXPECT_TRUE(std::is_sorted(replay.order.begin(), replay.order.end()));
  EXPECT_TRUE(replay.report.damage.empty());
  EXPECT_EQ(replay.report.torn_tail_bytes, 0u);
}

// Room for many producers: 1 MiB segments (still many switches) and 128 KiB batches.
LogOptions ConcurrentOptions() {
  LogOptions o = SmallOptions();
  o.segment_size = 1 << 20;
  o.batch_capacity = 128 << 10;
  return o;
}

TEST_P(LogBackendTest, ConcurrentProducersAllAcknowledgedRecordsSurvive) {
  LogOptions o = ConcurrentOptions();
  Replayed none;
  ASSERT_OK_AND_ASSIGN(auto log, Reopen(fs_.get(), dir_.path(), o, &none));
  constexpr int kThreads = 16;
  constexpr int kPerThread = 150;
  std::mutex mu;
  Expected acked;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const uint64_t id = static_cast<uint64_t>(t) * 100000 + i + 1;
        std::string payload = RandomBytes(id, (id * 7919) % 9000);
        AppendRecord r = MakeRecord(RecordType::kMessage, id, payload);
        if (log->Append({&r, 1}, nullptr).ok()) {
          std::lock_guard<std::mutex> l(mu);
          acked[id] = payload;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(acked.size(), size_t{kThreads * kPerThread});
  LogStats stats = log->Stats();
  EXPECT_EQ(stats.records, acked.size());
  EXPECT_LE(stats.batches, stats.records);
  log.reset();
  Replayed replay;
  ASSERT_OK_AND_ASSIGN(log, Reopen(fs_.get(), dir_.path(), o, &replay));
  EXPECT_EQ(replay.payloads, acked);
  EXPECT_TRUE(replay.report.damage.empty());
}

// AppendLeading on an idle log: the caller writes its batch itself and is answered on its
// own thread before the call returns, with the hook run first.
TEST_P(LogBackendTest, LeadingAppendOnAnIdleLogAnswersOnTheCallersThread) {
  LogOptions o = SmallOptions();
  Replayed none;
  ASSERT_OK_AND_ASSIGN(auto log, Reopen(fs_.get(), dir_.path(), o, &none));
  std::atomic<int> hooked{0};
  log->SetDurableHook([&](std::span<const CommittedRecord> recs) {
    hooked.fetch_add(static_cast<int>(recs.size()));
  });
  Expected expected;
  for (uint64_t id = 1; id <= 20; ++id) {
    expected[id] = RandomBytes(id, id * 331);
    AppendRecord r = MakeRecord(RecordType::kMessage, id, expected[id]);
    std::thread::id answered_on;
    bool answered = false;
    int hooked_before = -1;
    log->AppendLeading({&r, 1}, [&](const Status& s, std::span<const Location> locs) {
      EXPECT_OK(s);
      EXPECT_EQ(locs.size(), 1u);
      answered_on = std::this_thread::get_id();
      hooked_before = hooked.load();
      answered = true;
    });
    ASSERT_TRUE(answered) << "record " << id << " was not answered before the call returned";
    EXPECT_EQ(answered_on, std::this_thread::get_id());
    EXPECT_EQ(hooked_before, static_cast<int>(id)) << "the hook runs before the callback";
  }
  EXPECT_EQ(log->Stats().batches, 20u);
  log.reset();
  Replayed replay;
  ASSERT_OK_AND_ASSIGN(log, Reopen(fs_.get(), dir_.path(), o, &replay));
  EXPECT_EQ(replay.payloads, expected);
}

// Leading and asynchronous producers together: every record is acknowledged once and
// survives, and no callback of another producer ever runs on a leading caller's thread
// (a caller may hold locks of its own that those callbacks take).
TEST_P(LogBackendTest, LeadersNeverRunOtherProducersCallbacks) {
  LogOptions o = ConcurrentOptions();
  Replayed none;
  ASSERT_OK_AND_ASSIGN(auto log, Reopen(fs_.get(), dir_.path(), o, &none));
  constexpr int kLeaders = 8;
  constexpr int kAsync = 8;
  constexpr int kPerThread = 250;
  std::mutex mu;
  Expected acked;
  std::set<std::thread::id> leader_threads;
  std::vector<std::thread::id> async_answered_on;
  std::atomic<int> answers{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kLeaders + kAsync; ++t) {
    threads.emplace_back([&, t] {
      const bool leader = t < kLeaders;
      if (leader) {
        std::lock_guard<std::mutex> l(mu);
        leader_threads.insert(std::this_thread::get_id());
      }
      std::atomic<int> outstanding{0};
      for (int i = 0; i < kPerThread; ++i) {
        const uint64_t id = static_cast<uint64_t>(t) * 100000 + i + 1;
        auto payload = std::make_shared<std::string>(RandomBytes(id, (id * 7919) % 6000));
        AppendRecord r = MakeRecord(RecordType::kMessage, id, *payload);
        auto done = [&, id, payload, leader](const Status& s, std::span<const Location>) {
          answers.fetch_add(1);
          std::lock_guard<std::mutex> l(mu);
          if (s.ok()) acked[id] = *payload;
          if (!leader) async_answered_on.push_back(std::this_thread::get_id());
          if (!leader) outstanding.fetch_sub(1);
        };
        if (leader) {
          Completion c;
          log->AppendLeading({&r, 1}, [&](const Status& s, std::span<const Location> l) {
            done(s, l);
            c.Notify();
          });
          c.Wait();
        } else {
          outstanding.fetch_add(1);
          log->AppendAsync({&r, 1}, done);
        }
      }
      while (outstanding.load() > 0) std::this_thread::yield();
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(answers.load(), (kLeaders + kAsync) * kPerThread);
  EXPECT_EQ(acked.size(), size_t{(kLeaders + kAsync) * kPerThread});
  for (const std::thread::id& id : async_answered_on) {
    EXPECT_EQ(leader_threads.count(id), 0u) << "an asynchronous callback ran on a leader";
  }
  log.reset();
  Replayed replay;
  ASSERT_OK_AND_ASSIGN(log, Reopen(fs_.get(), dir_.path(), o, &replay));
  EXPECT_EQ(replay.payloads, acked);
  EXPECT_TRUE(replay.report.damage.empty());
}

TEST_P(LogBackendTest, DirectIoRoundTrip) {
  LogOptions o = SmallOptions();
  o.direct_io = true;
  o.direct_io_piece = 8192;
  Replayed none;
  auto opened = Reopen(fs_.get(), dir_.path(), o, &none);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  auto log = std::move(opened).value();
  Expected expected;
  for (uint64_t id = 1; id <= 40; ++id) {
    expected[id] = RandomBytes(id, id * 997);
    AppendRecord r = MakeRecord(RecordType::kMessage, id, expected[id]);
    Status s = log->Append({&r, 1}, nullptr);
    if (s.sys_errno() == EINVAL) GTEST_SKIP() << "O_DIRECT unsupported here: " << s.ToString();
    ASSERT_OK(s);
  }
  log.reset();
  Replayed replay;
  ASSERT_OK_AND_ASSIGN(log, Reopen(fs_.get(), dir_.path(), o, &replay));
  EXPECT_EQ(replay.payloads, expected);
}

INSTANTIATE_TEST_SUITE_P(Backends, LogBackendTest,
                         ::testing::Values(io::Backend::kPosix, io::Backend::kUring),
                         [](const auto& info) {
                           return std::string(info.param == io::Backend::kPosix ? "posix"
                                                                                : "uring");
                         });

// ---- Fault-injected tests ------------------------------------------------------------------

class LogFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto base = io::NewFileSystem(io::Backend::kPosix);
    ASSERT_TRUE(base.ok());
    base_ = std::move(base).value();
    fs_ = std::make_unique<io::FaultFileSystem>(base_.get());
  }
  std::unique_ptr<io::FileSystem> base_;
  std::unique_ptr<io::FaultFileSystem> fs_;
  TempDir dir_;
};

// Appends `count` acknowledged records, one batch each, then an append whose write reaches
// the page cache but whose syncs all fail, then a simulated power loss. Every acknowledged
// record must come back byte for byte; the failed one may be absent or intact; no damage.
TEST_F(LogFaultTest, CrashAtEveryBatchBoundaryKeepsAcknowledgedRecords) {
  const uint64_t seed = spool::testing::TestSeed(1234);
  for (io::CrashMode mode : {io::CrashMode::kDropUnsynced, io::CrashMode::kTearUnsynced}) {
    for (int count = 0; count < 12; ++count) {
      SCOPED_TRACE("mode " + std::to_string(static_cast<int>(mode)) + " count " +
                   std::to_string(count) + " seed " + std::to_string(seed));
      TempDir dir;
      LogOptions o = SmallOptions();
      o.segment_size = 64 << 10;
      o.batch_capacity = 16 << 10;
      Expected acked;
      {
        Replayed none;
        ASSERT_OK_AND_ASSIGN(auto log, Reopen(fs_.get(), dir.path(), o, &none));
        for (int i = 1; i <= count; ++i) {
          std::string payload = RandomBytes(seed + i, 3000 + 1000 * i % 7000);
          AppendRecord r = MakeRecord(RecordType::kMessage, i, payload);
          ASSERT_OK(log->Append({&r, 1}, nullptr));
          acked[i] = payload;
        }
        fs_->FailNth(io::OpKind::kSync, 1, EIO, /*sticky=*/true);
        std::string doomed = RandomBytes(seed, 5000);
        AppendRecord r = MakeRecord(RecordType::kMessage, 1000, doomed);
        Status s = log->Append({&r, 1}, nullptr);
        EXPECT_EQ(s.code(), Code::kIoError) << s.ToString();
        EXPECT_EQ(log->health().code(), Code::kIoError);
        // Latched: later appends fail with the same fault, nothing is acknowledged.
        EXPECT_FALSE(log->Append({&r, 1}, nullptr).ok());
        ASSERT_OK(fs_->SimulateCrash(mode, seed + count));
      }
      fs_->ResetAfterCrash();
      Replayed replay;
      ASSERT_OK_AND_ASSIGN(auto log, Reopen(fs_.get(), dir.path(), o, &replay));
      for (auto& [id, payload] : acked) {
        ASSERT_EQ(replay.payloads.count(id), 1u) << "lost acknowledged record " << id;
        EXPECT_EQ(replay.payloads[id], payload) << "altered record " << id;
      }
      for (auto& [id, payload] : replay.payloads) {
        if (id == 1000) {
          EXPECT_EQ(payload, RandomBytes(seed, 5000)) << "partial unacknowledged record";
        } else {
          EXPECT_EQ(acked.count(id), 1u) << "unknown record " << id;
        }
      }
      for (const Damage& d : replay.report.damage) ADD_FAILURE() << d.kind << ": " << d.detail;
      // The reopened log accepts and keeps new records.
      const std::string after = "after";
      AppendRecord r = MakeRecord(RecordType::kMessage, 2000, after);
      ASSERT_OK(log->Append({&r, 1}, nullptr));
    }
  }
}

// docs/durability.md, contract item 4: a single failed sync is survived by rewriting the
// batch in a fresh segment.
TEST_F(LogFaultTest, SyncFailureAtEveryPointIsRewrittenNeverAcknowledgedEarly) {
  for (uint64_t n = 1; n <= 8; ++n) {
    SCOPED_TRACE("sync failure number " + std::to_string(n));
    TempDir dir;
    LogOptions o = SmallOptions();
    Expected acked;
    {
      Replayed none;
      ASSERT_OK_AND_ASSIGN(auto log, Reopen(fs_.get(), dir.path(), o, &none));
      fs_->FailNth(io::OpKind::kSync, n, EIO);
      for (uint64_t i = 1; i <= 10; ++i) {
        std::string payload = RandomBytes(i * n, 2000);
        AppendRecord r = MakeRecord(RecordType::kMessage, i, payload);
        ASSERT_OK(log->Append({&r, 1}, nullptr));
        acked[i] = payload;
      }
      EXPECT_OK(log->health());
      fs_->ClearFaults();
      // Power loss right after: only synced data remains.
      ASSERT_OK(fs_->SimulateCrash(io::CrashMode::kDropUnsynced, n));
    }
    fs_->ResetAfterCrash();
    Replayed replay;
    ASSERT_OK_AND_ASSIGN(auto log, Reopen(fs_.get(), dir.path(), o, &replay));
    EXPECT_EQ(replay.payloads, acked);
  }
}

TEST_F(LogFaultTest, WriteFailureLatchesAfterOneRewrite) {
  LogOptions o = SmallOptions();
  Replayed none;
  ASSERT_OK_AND_ASSIGN(auto log, Reopen(fs_.get(), dir_.path(), o, &none));
  const std::string first = "first";
  AppendRecord ok = MakeRecord(RecordType::kMessage, 1, first);
  ASSERT_OK(log->Append({&ok, 1}, nullptr));
  fs_->FailNth(io::OpKind::kWrite, 1, ENOSPC, /*sticky=*/true);
  const std::string second = "second";
  AppendRecord r = MakeRecord(RecordType::kMessage, 2, second);
  Status s = log->Append({&r, 1}, nullptr);
  EXPECT_EQ(s.code(), Code::kStorageFull) << s.ToString();
  EXPECT_EQ(log->Stats().failed_batches, 2u);
  fs_->ClearFaults();
  EXPECT_EQ(log->Append({&r, 1}, nullptr).code(), Code::kStorageFull);  // latched
  log->ClearFault();
  ASSERT_OK(log->Append({&r, 1}, nullptr));
  log.reset();
  Replayed replay;
  ASSERT_OK_AND_ASSIGN(log, Reopen(fs_.get(), dir_.path(), o, &replay));
  EXPECT_EQ(replay.payloads.size(), 2u);
  EXPECT_TRUE(replay.report.damage.empty());
}

// ---- Damage on disk ------------------------------------------------------------------------

void FlipByte(const std::string& path, uint64_t offset) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(offset);
  char c;
  f.read(&c, 1);
  c ^= 0x20;
  f.seekp(offset);
  f.write(&c, 1);
}

std::string SegmentPathOf(const std::string& dir, const Location& loc, io::FileSystem* fs) {
  // Finds the file whose header carries the location's sequence number.
  auto names = fs->ListDir(dir);
  for (const std::string& n : *names) {
    uint32_t slot;
    if (!ParseSegmentFileName(n, &slot)) continue;
    std::ifstream f(dir + "/" + n, std::ios::binary);
    SegmentHeader h{};
    f.read(reinterpret_cast<char*>(&h), sizeof(h));
    if (h.magic == kSegmentMagic && h.seq == loc.segment) return dir + "/" + n;
  }
  return "";
}

TEST_F(LogFaultTest, BitFlipInEveryHeaderFieldIsCorruptionNotTornTail) {
  LogOptions o = SmallOptions();
  // Offsets of one byte in each header field.
  const size_t fields[] = {offsetof(RecordHeader, magic),
                           offsetof(RecordHeader, type),
                           offsetof(RecordHeader, flags),
                           offsetof(RecordHeader, header_size),
                           offsetof(RecordHeader, payload_size),
                           offsetof(RecordHeader, acked_lag),
                           offsetof(RecordHeader, epoch),
                           offsetof(RecordHeader, batch_seq),
                           offsetof(RecordHeader, id_hi),
                           offsetof(RecordHeader, id_lo),
                           offsetof(RecordHeader, payload_hash),
                           offsetof(RecordHeader, header_hash),
                           sizeof(RecordHeader) + 10 /* payload */};
  for (size_t field : fields) {
    SCOPED_TRACE("byte " + std::to_string(field));
    TempDir dir;
    std::vector<Location> locs(3);
    {
      Replayed none;
      ASSERT_OK_AND_ASSIGN(auto log, Reopen(base_.get(), dir.path(), o, &none));
      for (uint64_t i = 1; i <= 3; ++i) {
        const std::string payload = RandomBytes(i, 1000);
        AppendRecord r = MakeRecord(RecordType::kMessage, i, payload);
        std::vector<Location> l;
        ASSERT_OK(log->Append({&r, 1}, &l));
        locs[i - 1] = l[0];
      }
    }
    // Damage the middle record: a later batch follows it, so it was durable.
    const std::string path = SegmentPathOf(dir.path(), locs[1], base_.get());
    ASSERT_FALSE(path.empty());
    FlipByte(path, locs[1].offset + field);
    Replayed replay;
    ASSERT_OK_AND_ASSIGN(auto log, Reopen(base_.get(), dir.path(), o, &replay));
    EXPECT_EQ(replay.payloads.count(1), 1u);
    EXPECT_EQ(replay.payloads.count(2), 0u);
    EXPECT_EQ(replay.payloads.count(3), 1u);
    ASSERT_EQ(replay.report.damage.size(), 1u);
    EXPECT_EQ(replay.report.damage[0].offset, locs[1].offset);
    EXPECT_EQ(replay.report.damage[0].segment, locs[1].segment);
    RecordId id2{2, ~uint64_t{2}};
    auto read = log->Read(locs[1], &id2);
    EXPECT_EQ(read.status().code(), Code::kCorruption) << read.status().ToString();
  }
}

// Batches in flight together: batch 3 was placed before batch 2 was acknowledged, then a
// crash tore batch 2. The log ends at the tear, but record 3 (which may have been
// acknowledged had the damage been bit rot rather than a tear) is rewritten, not dropped.
TEST_F(LogFaultTest, IntactRecordsAfterATornInFlightBatchAreRewrittenNotDropped) {
  LogOptions o = SmallOptions();
  std::vector<Location> locs(3);
  Expected written;
  {
    Replayed none;
    ASSERT_OK_AND_ASSIGN(auto log, Reopen(base_.get(), dir_.path(), o, &none));
    for (uint64_t i = 1; i <= 3; ++i) {
      written[i] = RandomBytes(i, 1500);
      AppendRecord r = MakeRecord(RecordType::kMessage, i, written[i]);
      std::vector<Location> l;
      ASSERT_OK(log->Append({&r, 1}, &l));
      locs[i - 1] = l[0];
    }
  }
  const std::string path = SegmentPathOf(dir_.path(), locs[2], base_.get());
  ASSERT_FALSE(path.empty());
  {
    // Re-stamp record 3 (and its batch's padding) as placed while batch 2 was in flight.
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    for (uint64_t off = locs[2].offset; off < AlignUp(locs[2].offset + 1, kBlockSize);) {
      RecordHeader h;
      f.seekg(off);
      f.read(reinterpret_cast<char*>(&h), sizeof(h));
      std::vector<std::byte> rec(sizeof(h));
      std::memcpy(rec.data(), &h, sizeof(h));
      FinalizeRecord(rec.data(), h.epoch, h.batch_seq, h.batch_seq - 2, 0);
      f.seekp(off);
      f.write(reinterpret_cast<const char*>(rec.data()), rec.size());
      off += RecordFootprint(h.payload_size);
    }
  }
  FlipByte(path, locs[1].offset + 100);  // tear batch 2
  for (int round = 0; round < 2; ++round) {
    SCOPED_TRACE("open " + std::to_string(round));
    Replayed replay;
    ASSERT_OK_AND_ASSIGN(auto log, Reopen(base_.get(), dir_.path(), o, &replay));
    EXPECT_EQ(replay.payloads[1], written[1]);
    EXPECT_EQ(replay.payloads.count(2), 0u);
    EXPECT_EQ(replay.payloads[3], written[3]);
    EXPECT_EQ(std::count(replay.order.begin(), replay.order.end(), 3), 1);
    EXPECT_TRUE(replay.report.damage.empty());
    EXPECT_EQ(replay.report.tail_records_rewritten, round == 0 ? 1u : 0u);
    if (round == 0) {
      EXPECT_GT(replay.report.torn_tail_bytes, 0u);
    }
  }
}

TEST_F(LogFaultTest, RecycledSegmentsHoldingStaleRecordsReadAsEndOfData) {
  LogOptions o = SmallOptions();
  o.segment_size = 64 << 10;
  o.batch_capacity = 16 << 10;
  o.ready_segments = 1;
  Expected live;
  {
    Replayed none;
    ASSERT_OK_AND_ASSIGN(auto log, Reopen(base_.get(), dir_.path(), o, &none));
    // Fill several segments, then recycle all but the active one and keep writing so that
    // recycled segments are reused over their stale records.
    uint64_t id = 1;
    for (int round = 0; round < 4; ++round) {
      for (int i = 0; i < 30; ++i, ++id) {
        const std::string payload = RandomBytes(id, 5000);
        AppendRecord r = MakeRecord(RecordType::kMessage, id, payload);
        ASSERT_OK(log->Append({&r, 1}, nullptr));
      }
      for (uint64_t seq : log->LiveSegments()) {
        if (seq != log->ActiveSegment()) ASSERT_OK(log->Recycle(seq));
      }
    }
    // Only the records of the active segment and what follows are live now.
    const uint64_t active = log->ActiveSegment();
    for (int i = 0; i < 5; ++i, ++id) {
      std::string p = RandomBytes(id, 5000);
      AppendRecord r = MakeRecord(RecordType::kMessage, id, p);
      std::vector<Location> l;
      ASSERT_OK(log->Append({&r, 1}, &l));
      if (l[0].segment == active) live[id] = p;
    }
  }
  Replayed replay;
  ASSERT_OK_AND_ASSIGN(auto log, Reopen(base_.get(), dir_.path(), o, &replay));
  for (auto& [id, p] : live) EXPECT_EQ(replay.payloads[id], p);
  EXPECT_TRUE(replay.report.damage.empty());
  for (const Damage& d : replay.report.damage) ADD_FAILURE() << d.detail;
  EXPECT_EQ(replay.report.torn_tail_bytes, 0u);
}

// Regression (found by the kill -9 torture): recovery kept pointers into a vector it then
// sorted, so with slots reused out of sequence order a segment was bounded by another
// segment's prev_end: false corruption, wrong ends, and reclamation of live data.
TEST_F(LogFaultTest, ReusedSlotsOutOfSequenceOrderRecoverExactly) {
  LogOptions o = SmallOptions();
  o.segment_size = 64 << 10;
  o.batch_capacity = 16 << 10;
  o.ready_segments = 1;
  std::map<uint64_t, std::pair<Location, std::string>> written;
  {
    Replayed none;
    ASSERT_OK_AND_ASSIGN(auto log, Reopen(base_.get(), dir_.path(), o, &none));
    uint64_t id = 1;
    for (int round = 0; round < 3; ++round) {
      for (int i = 0; i < 60; ++i, ++id) {
        std::string p = RandomBytes(id, 3000 + (id * 37) % 4000);
        AppendRecord r = MakeRecord(RecordType::kMessage, id, p);
        std::vector<Location> l;
        ASSERT_OK(log->Append({&r, 1}, &l));
        written[id] = {l[0], p};
      }
      // Recycle the older half of the sealed segments: their slots are reused next round.
      std::vector<uint64_t> live = log->LiveSegments();
      for (size_t i = 0; i + 1 < live.size() / 2; ++i) ASSERT_OK(log->Recycle(live[i]));
    }
  }
  for (int open = 0; open < 2; ++open) {
    Replayed replay;
    ASSERT_OK_AND_ASSIGN(auto log, Reopen(base_.get(), dir_.path(), o, &replay));
    for (const Damage& d : replay.report.damage) ADD_FAILURE() << d.kind << ": " << d.detail;
    const std::vector<uint64_t> live = log->LiveSegments();
    for (auto& [id, w] : written) {
      if (!std::binary_search(live.begin(), live.end(), w.first.segment)) continue;
      ASSERT_EQ(replay.payloads.count(id), 1u) << "record " << id << " lost";
      EXPECT_EQ(replay.payloads[id], w.second);
      RecordId rid{id, ~id};
      ASSERT_OK_AND_ASSIGN(Record r, log->Read(w.first, &rid));
      EXPECT_EQ(r.payload, w.second);
    }
  }
}

TEST_F(LogFaultTest, NewerFormatVersionIsRefused) {
  LogOptions o = SmallOptions();
  {
    Replayed none;
    ASSERT_OK_AND_ASSIGN(auto log, Reopen(base_.get(), dir_.path(), o, &none));
    const std::string x = "x";
    AppendRecord r = MakeRecord(RecordType::kMessage, 1, x);
    ASSERT_OK(log->Append({&r, 1}, nullptr));
  }
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> names, base_->ListDir(dir_.path()));
  for (const std::string& n : names) {
    std::fstream f(dir_.path() + "/" + n, std::ios::in | std::ios::out | std::ios::binary);
    SegmentHeader h{};
    f.read(reinterpret_cast<char*>(&h), sizeof(h));
    if (h.magic != kSegmentMagic) continue;
    std::vector<std::byte> block(kBlockSize);
    h.format_version = kFormatVersion + 1;
    EncodeSegmentHeader(h, block.data());
    f.seekp(0);
    f.write(reinterpret_cast<const char*>(block.data()), block.size());
  }
  Replayed replay;
  auto log = Reopen(base_.get(), dir_.path(), o, &replay);
  ASSERT_FALSE(log.ok());
  EXPECT_EQ(log.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(log.status().message().find("newer"), std::string_view::npos);
}

}  // namespace
}  // namespace spool::log
