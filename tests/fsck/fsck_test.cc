// spool-fsck on deliberately damaged spools, run as a subprocess: for each kind of damage
// the expected exit code and report, then --repair, then a clean check, and every intact
// message still byte for byte through Spool::Open + ReadBody.

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "format_test_util.h"
#include "index/codec.h"
#include "index/index.h"
#include "log/log.h"
#include "log/record.h"
#include "spool/spool.h"
#include "test_util.h"
#include "tools/fsck/fsck_tool.h"

#ifndef SPOOL_FSCK_PATH
#error "SPOOL_FSCK_PATH must name the spool-fsck binary"
#endif

namespace spool {
namespace {

namespace fs = std::filesystem;
using testing::Json;
using testing::JsonParser;
using testing::ReadFile;
using testing::TempDir;
using testing::WriteFile;

constexpr uint64_t kSegmentSize = 1 << 20;  // small segments: many of them, quickly

// Overwrites `data.size()` bytes of `path` at `offset`.
void Patch(const std::string& path, uint64_t offset, const std::string& data) {
  const int fd = ::open(path.c_str(), O_WRONLY);
  ASSERT_GE(fd, 0) << path;
  ASSERT_EQ(::pwrite(fd, data.data(), data.size(), static_cast<off_t>(offset)),
            static_cast<ssize_t>(data.size()));
  ::close(fd);
}

std::string ReadAt(const std::string& path, uint64_t offset, size_t size) {
  std::string data = ReadFile(path);
  return data.substr(offset, size);
}

void FlipBit(const std::string& path, uint64_t offset) {
  std::string b = ReadAt(path, offset, 1);
  b[0] = static_cast<char>(b[0] ^ 0x10);
  Patch(path, offset, b);
}

// A subprocess's result and, for spool-fsck, its JSON report.
struct RunResult : testing::ProcessResult {
  Json json;
};

class FsckTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dirs_ = {dir_.Sub("s0"), dir_.Sub("s1")};
    Fill();
  }

  Options SpoolOptions(bool read_only = false) const {
    Options o;
    o.dirs = dirs_;
    o.segment_size = kSegmentSize;
    o.reclaim = false;
    o.read_only = read_only;
    o.create_if_missing = !read_only;
    return o;
  }

  // 96 messages over both shards (three segments each): small, 60 KB, and streamed
  // (chunked) ones; one held, one with a recorded attempt, one removed.
  void Fill() {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Spool> spool, Spool::Open(SpoolOptions()));
    for (int i = 0; i < 96; ++i) {
      Envelope env;
      env.sender = "sender" + std::to_string(i) + "@example.com";
      env.recipients = {"rcpt" + std::to_string(i) + "@example.net", "other@example.org"};
      env.queue = i % 3 == 0 ? "bulk" : "default";
      // Shards take turns: sizes by i / 2 give both shards every kind.
      const int k = i / 2;
      const size_t size = k % 8 == 7 ? 150000 + i : (k % 2 ? 60000 + i * 20 : 500 + i);
      std::string body = testing::RandomBytes(1000 + i, size);
      ASSERT_OK_AND_ASSIGN(MessageId id, spool->Enqueue(env, body));
      bodies_[id.ToString()] = body;
      ids_.push_back(id);
    }
    ASSERT_OK(spool->Hold(ids_[5]));
    AttemptResult a;
    a.recipients = {{0, RecipientStatus::kDelivered}};
    a.next_attempt_ms = 4102444800000;
    ASSERT_OK(spool->RecordAttempt(ids_[6], a));
    ASSERT_OK(spool->Remove(ids_[8]));
    bodies_.erase(ids_[8].ToString());
    for (const MessageId& id : ids_) {
      StatusOr<MessageInfo> m = spool->Get(id);
      if (m.ok()) infos_[id.ToString()] = *m;
    }
  }

  RunResult Fsck(std::vector<std::string> args, bool json = true) {
    std::string list;
    for (const std::string& d : dirs_) list += (list.empty() ? "" : ",") + d;
    args.insert(args.begin(), {"--spool", list});
    if (json) args.push_back("--json");
    return Run(SPOOL_FSCK_PATH, args);
  }

  RunResult Run(const std::string& binary, const std::vector<std::string>& args) {
    const std::string base = dir_.Sub("run" + std::to_string(runs_++));
    RunResult r;
    static_cast<testing::ProcessResult&>(r) = testing::RunProcess(binary, args, "/dev/null", base);
    std::string error;
    if (binary == SPOOL_FSCK_PATH && r.out.starts_with("{")) {
      EXPECT_TRUE(JsonParser::Parse(r.out, &r.json, &error)) << error << "\n" << r.out;
    }
    return r;
  }

  // The kinds of the report's problems of `severity` ("error", ...).
  static std::multiset<std::string> Kinds(const RunResult& r, const std::string& severity) {
    std::multiset<std::string> out;
    for (const Json& p : r.json["problems"].array) {
      if (p["severity"].str == severity) out.insert(p["kind"].str);
    }
    return out;
  }
  // The message ids of the report's problems of `kind`.
  static std::set<std::string> IdsWith(const RunResult& r, const std::string& kind) {
    std::set<std::string> out;
    for (const Json& p : r.json["problems"].array) {
      if (p["kind"].str == kind) out.insert(p["id"].str);
    }
    return out;
  }
  static const Json* FindProblem(const RunResult& r, const std::string& kind,
                                 const std::string& id = "") {
    for (const Json& p : r.json["problems"].array) {
      if (p["kind"].str == kind && (id.empty() || p["id"].str == id)) return &p;
    }
    return nullptr;
  }

  // Where the index of `id`'s shard keeps it.
  internal::IndexEntry EntryOf(const MessageId& id) {
    internal::IndexEntry e;
    StatusOr<std::unique_ptr<index::Index>> index =
        index::Index::Open(ShardDir(id) + "/index", /*read_only=*/true);
    EXPECT_TRUE(index.ok()) << index.status().ToString();
    if (!index.ok()) return e;
    StatusOr<std::optional<internal::IndexEntry>> got = (*index)->Get(id);
    EXPECT_TRUE(got.ok() && got->has_value());
    if (got.ok() && got->has_value()) e = **got;
    return e;
  }

  std::string ShardDir(const MessageId& id) const { return dirs_[id.shard()]; }

  // The segment file of sequence `seq` in shard directory `dir`.
  static std::string SegmentPath(const std::string& dir, uint64_t seq) {
    for (const auto& f : fs::directory_iterator(dir + "/log")) {
      const std::string header = ReadAt(f.path(), 0, log::kBlockSize);
      log::SegmentHeader h;
      if (header.size() == log::kBlockSize &&
          log::DecodeSegmentHeader(reinterpret_cast<const std::byte*>(header.data()), &h) ==
              log::SegmentHeaderState::kValid &&
          h.seq == seq) {
        return f.path();
      }
    }
    ADD_FAILURE() << "no segment " << seq << " in " << dir;
    return "";
  }

  // A non-chunked message of at least `min_size` bytes in a sealed (not the newest)
  // segment of shard 0.
  MessageId PickMessage(size_t min_size, bool chunked = false, uint64_t min_segment = 0) {
    uint64_t newest = 0;
    for (const MessageId& id : ids_) {
      if (id.shard() == 0 && bodies_.count(id.ToString()) != 0) {
        newest = std::max(newest, EntryOf(id).main.segment);
      }
    }
    for (const MessageId& id : ids_) {
      if (id.shard() != 0 || bodies_.count(id.ToString()) == 0 || id == ids_[5] || id == ids_[6])
        continue;
      const internal::IndexEntry e = EntryOf(id);
      if (e.chunked() == chunked && e.info.size >= min_size && e.main.segment < newest &&
          e.main.segment >= min_segment) {
        return id;
      }
    }
    ADD_FAILURE() << "no message to damage";
    return ids_[0];
  }

  // Every message not in `damaged` reads back byte for byte with its state; the damaged
  // ones are quarantined with their envelope.
  void ExpectIntact(const std::set<std::string>& damaged) {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Spool> spool, Spool::Open(SpoolOptions()));
    for (const auto& [text, body] : bodies_) {
      ASSERT_OK_AND_ASSIGN(MessageId id, MessageId::Parse(text));
      StatusOr<MessageInfo> m = spool->Get(id);
      ASSERT_TRUE(m.ok()) << text << ": " << m.status().ToString();
      if (damaged.count(text) != 0) {
        EXPECT_EQ(m->state, MessageState::kCorrupt) << text;
        EXPECT_EQ(m->envelope.sender, infos_[text].envelope.sender) << text;
        EXPECT_EQ(m->envelope.recipients, infos_[text].envelope.recipients) << text;
        StatusOr<std::string> b = spool->ReadBody(id);
        EXPECT_FALSE(b.ok()) << text;
        continue;
      }
      StatusOr<std::string> b = spool->ReadBody(id);
      ASSERT_TRUE(b.ok()) << text << ": " << b.status().ToString();
      EXPECT_TRUE(*b == body) << text << ": body differs";
      EXPECT_EQ(m->state, infos_[text].state) << text;
      EXPECT_EQ(m->attempts, infos_[text].attempts) << text;
      EXPECT_EQ(m->recipient_status, infos_[text].recipient_status) << text;
    }
    EXPECT_FALSE(spool->Get(ids_[8]).ok()) << "the removed message came back";
  }

  // Damage found (exit 4) → repair (exit 1) → clean (exit 0) → messages checked: the
  // ones in `damaged` (by default: those the repair quarantined) are quarantined, every
  // other one is intact. Returns the ids the repair quarantined.
  std::set<std::string> RepairAndVerify(std::optional<std::set<std::string>> expected = {}) {
    RunResult repair = Fsck({"--repair"});
    std::set<std::string> quarantined;
    for (const Json& p : repair.json["problems"].array) {
      if (p["action"].str == "quarantined") quarantined.insert(p["id"].str);
    }
    const std::set<std::string> damaged = expected.value_or(quarantined);
    EXPECT_EQ(quarantined, damaged) << repair.out;
    EXPECT_EQ(repair.code, fsck::kExitCorrected) << repair.out << repair.err;
    EXPECT_EQ(repair.json["uncorrected"].Uint(), 0u) << repair.out;
    RunResult again = Fsck({});
    EXPECT_EQ(again.code, fsck::kExitClean) << again.out << again.err;
    EXPECT_TRUE(Kinds(again, "error").empty()) << again.out;
    ExpectIntact(damaged);
    // A repaired spool stays clean after a writer opened and closed it.
    RunResult after_open = Fsck({});
    EXPECT_EQ(after_open.code, fsck::kExitClean) << after_open.out;
    return quarantined;
  }

  TempDir dir_;
  std::vector<std::string> dirs_;
  std::vector<MessageId> ids_;
  std::map<std::string, std::string> bodies_;
  std::map<std::string, MessageInfo> infos_;
  int runs_ = 0;
};

TEST_F(FsckTest, CleanSpoolExitsZeroWithAValidReport) {
  RunResult r = Fsck({});
  EXPECT_EQ(r.code, fsck::kExitClean) << r.out << r.err;
  EXPECT_EQ(r.json["mode"].str, "check");
  EXPECT_EQ(r.json["exit_code"].Int(), 0);
  ASSERT_EQ(r.json["shards"].array.size(), 2u);
  uint64_t messages = 0;
  for (const Json& s : r.json["shards"].array) {
    EXPECT_EQ(s["checked"].boolean, true);
    EXPECT_GT(s["records"].Uint(), 0u);
    messages += s["messages"].Uint();
  }
  EXPECT_EQ(messages, bodies_.size());
  EXPECT_TRUE(Kinds(r, "error").empty()) << r.out;
  // The text form too.
  RunResult text = Fsck({}, /*json=*/false);
  EXPECT_EQ(text.code, 0);
  EXPECT_NE(text.out.find("0 errors"), std::string::npos) << text.out;
}

TEST_F(FsckTest, BitFlipInABodyQuarantinesThatMessageOnly) {
  const MessageId victim = PickMessage(20000);
  const internal::IndexEntry e = EntryOf(victim);
  FlipBit(SegmentPath(ShardDir(victim), e.main.segment),
          e.main.offset + sizeof(log::RecordHeader) + e.body_offset + 1234);
  RunResult r = Fsck({});
  EXPECT_EQ(r.code, fsck::kExitUncorrected) << r.out;
  const Json* p = FindProblem(r, "checksum", victim.ToString());
  ASSERT_NE(p, nullptr) << r.out;
  EXPECT_EQ((*p)["segment"].Uint(), e.main.segment);
  EXPECT_EQ((*p)["offset"].Uint(), e.main.offset);
  EXPECT_EQ((*p)["shard"].Uint(), 0u);
  EXPECT_NE(FindProblem(r, "corrupt_message", victim.ToString()), nullptr) << r.out;
  RepairAndVerify(std::set<std::string>{victim.ToString()});
  // spool-ctl shows it as corrupt.
  RunResult list = Run(SPOOL_CTL_PATH, {"--spool", dirs_[0] + "," + dirs_[1], "list", "--json"});
  EXPECT_EQ(list.code, 0) << list.err;
  bool seen = false;
  std::istringstream lines(list.out);
  for (std::string line; std::getline(lines, line);) {
    Json j;
    std::string error;
    ASSERT_TRUE(JsonParser::Parse(line, &j, &error)) << error;
    if (j["id"].str == victim.ToString()) {
      seen = true;
      EXPECT_EQ(j["state"].str, "corrupt");
      EXPECT_EQ(j["sender"].str, infos_[victim.ToString()].envelope.sender);
    }
  }
  EXPECT_TRUE(seen) << list.out;
}

TEST_F(FsckTest, BitFlipInARecordHeader) {
  const MessageId victim = PickMessage(20000);
  const internal::IndexEntry e = EntryOf(victim);
  FlipBit(SegmentPath(ShardDir(victim), e.main.segment), e.main.offset + 20);  // the epoch
  RunResult r = Fsck({});
  EXPECT_EQ(r.code, fsck::kExitUncorrected) << r.out;
  EXPECT_NE(FindProblem(r, "damaged"), nullptr) << r.out;
  EXPECT_NE(FindProblem(r, "corrupt_message", victim.ToString()), nullptr) << r.out;
  RepairAndVerify(std::set<std::string>{victim.ToString()});
}

TEST_F(FsckTest, BitFlipInAStreamedBodyChunk) {
  const MessageId victim = PickMessage(100000, /*chunked=*/true);
  const internal::IndexEntry e = EntryOf(victim);
  ASSERT_GE(e.chunks.size(), 2u);
  const log::Location c = e.chunks[1];
  FlipBit(SegmentPath(ShardDir(victim), c.segment), c.offset + sizeof(log::RecordHeader) + 99);
  RunResult r = Fsck({});
  EXPECT_EQ(r.code, fsck::kExitUncorrected) << r.out;
  EXPECT_NE(FindProblem(r, "checksum", victim.ToString()), nullptr) << r.out;
  EXPECT_NE(FindProblem(r, "corrupt_message", victim.ToString()), nullptr) << r.out;
  RepairAndVerify(std::set<std::string>{victim.ToString()});
}

TEST_F(FsckTest, ZeroedBlocksInASealedSegment) {
  const MessageId victim = PickMessage(20000);
  const internal::IndexEntry e = EntryOf(victim);
  const uint64_t block = log::AlignUp(e.main.offset + 1, log::kBlockSize);
  Patch(SegmentPath(ShardDir(victim), e.main.segment), block,
        std::string(2 * log::kBlockSize, '\0'));
  RunResult r = Fsck({});
  EXPECT_EQ(r.code, fsck::kExitUncorrected) << r.out;
  EXPECT_NE(FindProblem(r, "corrupt_message", victim.ToString()), nullptr) << r.out;
  const std::set<std::string> damaged = IdsWith(r, "corrupt_message");
  RepairAndVerify(damaged);
}

TEST_F(FsckTest, TruncatedSegment) {
  const MessageId victim = PickMessage(20000);
  const internal::IndexEntry e = EntryOf(victim);
  const std::string path = SegmentPath(ShardDir(victim), e.main.segment);
  fs::resize_file(path, e.main.offset + 100);
  RunResult r = Fsck({});
  EXPECT_EQ(r.code, fsck::kExitUncorrected) << r.out;
  EXPECT_NE(FindProblem(r, "truncated_segment"), nullptr) << r.out;
  EXPECT_NE(FindProblem(r, "corrupt_message", victim.ToString()), nullptr) << r.out;
  // The check cannot read a file this short at all; the repair restores its size first
  // and quarantines only what the cut really lost.
  const std::set<std::string> lost = RepairAndVerify();
  EXPECT_EQ(lost.count(victim.ToString()), 1u);
  EXPECT_EQ(fs::file_size(path), kSegmentSize);
}

TEST_F(FsckTest, MissingSegment) {
  const MessageId victim = PickMessage(20000);
  const internal::IndexEntry e = EntryOf(victim);
  fs::remove(SegmentPath(ShardDir(victim), e.main.segment));
  RunResult r = Fsck({});
  EXPECT_EQ(r.code, fsck::kExitUncorrected) << r.out;
  const Json* missing = FindProblem(r, "missing_segment");
  ASSERT_NE(missing, nullptr) << r.out;
  EXPECT_EQ((*missing)["segment"].Uint(), e.main.segment);
  const std::set<std::string> damaged = IdsWith(r, "corrupt_message");
  EXPECT_EQ(damaged.count(victim.ToString()), 1u) << r.out;
  RepairAndVerify(damaged);
}

TEST_F(FsckTest, IndexDirectoryRemoved) {
  fs::remove_all(dirs_[1] + "/index");
  RunResult r = Fsck({});
  EXPECT_EQ(r.code, fsck::kExitUncorrected) << r.out;
  const Json* p = FindProblem(r, "index_unreadable");
  ASSERT_NE(p, nullptr) << r.out;
  EXPECT_EQ((*p)["shard"].Uint(), 1u);
  RepairAndVerify(std::set<std::string>{});
}

TEST_F(FsckTest, IndexFileDeletedOrDamaged) {
  int ssts = 0;
  for (const auto& f : fs::directory_iterator(dirs_[0] + "/index")) {
    if (f.path().extension() == ".sst") {
      fs::remove(f.path());
      ++ssts;
    }
  }
  ASSERT_GT(ssts, 0);
  for (const auto& f : fs::directory_iterator(dirs_[1] + "/index")) {
    if (f.path().filename().string().starts_with("MANIFEST-")) WriteFile(f.path(), "garbage");
  }
  RunResult r = Fsck({});
  EXPECT_EQ(r.code, fsck::kExitUncorrected) << r.out;
  EXPECT_EQ(Kinds(r, "error").count("index_unreadable"), 2u) << r.out;
  RepairAndVerify(std::set<std::string>{});
}

TEST_F(FsckTest, RebuildIndexKeepsStatesAndQuarantine) {
  const MessageId victim = PickMessage(20000);
  const internal::IndexEntry e = EntryOf(victim);
  FlipBit(SegmentPath(ShardDir(victim), e.main.segment),
          e.main.offset + sizeof(log::RecordHeader) + e.body_offset + 7);
  RunResult r = Fsck({"--rebuild-index"});
  EXPECT_EQ(r.code, fsck::kExitCorrected) << r.out;
  EXPECT_EQ(r.json["mode"].str, "rebuild-index");
  int old = 0;
  for (const auto& f : fs::directory_iterator(dirs_[0])) {
    old += f.path().filename().string().starts_with("index.old-");
  }
  EXPECT_EQ(old, 1);
  RunResult again = Fsck({});
  EXPECT_EQ(again.code, fsck::kExitClean) << again.out;
  ExpectIntact({victim.ToString()});
}

TEST_F(FsckTest, StaleEpochBytesInAFreeSegmentAreNotDamage) {
  // A free (pre-formatted or recycled) segment holding another segment's old records, as
  // a recycled segment does: they read as stale, which is end of data, not corruption.
  const MessageId m = PickMessage(20000);
  const std::string live = SegmentPath(dirs_[0], EntryOf(m).main.segment);
  std::string free_path;
  for (const auto& f : fs::directory_iterator(dirs_[0] + "/log")) {
    if (ReadAt(f.path(), 0, log::kBlockSize) == std::string(log::kBlockSize, '\0')) {
      free_path = f.path();
    }
  }
  ASSERT_FALSE(free_path.empty());
  const std::string data = ReadFile(live);
  Patch(free_path, log::kBlockSize, data.substr(log::kBlockSize));
  RunResult r = Fsck({});
  EXPECT_EQ(r.code, fsck::kExitClean) << r.out;
  ExpectIntact({});
}

TEST_F(FsckTest, StaleEpochBytesOverLiveRecords) {
  // An older segment's records copied over live records of a newer one (a lost write of
  // a recycled segment): their epoch gives them away.
  const MessageId victim = PickMessage(20000, false, 2);
  const internal::IndexEntry e = EntryOf(victim);
  ASSERT_GT(e.main.segment, 1u);
  const std::string older = ReadFile(SegmentPath(ShardDir(victim), 1));
  const uint64_t block = e.main.offset / log::kBlockSize * log::kBlockSize;
  Patch(SegmentPath(ShardDir(victim), e.main.segment), block,
        older.substr(log::kBlockSize, 4 * log::kBlockSize));
  RunResult r = Fsck({});
  EXPECT_EQ(r.code, fsck::kExitUncorrected) << r.out;
  EXPECT_NE(FindProblem(r, "corrupt_message", victim.ToString()), nullptr) << r.out;
  const std::set<std::string> damaged = IdsWith(r, "corrupt_message");
  RepairAndVerify(damaged);
}

TEST_F(FsckTest, DanglingIndexEntryIsDropped) {
  const MessageId real = ids_[0];
  internal::IndexEntry e = EntryOf(real);
  const MessageId ghost(real.time() + 1, real.tag());
  e.info.id = ghost;
  e.main.offset = kSegmentSize - 8 * log::kBlockSize;  // nothing there
  {
    ASSERT_OK_AND_ASSIGN(auto index, index::Index::Open(ShardDir(real) + "/index", false));
    index::Index::Batch b(*index);
    b.Put(e, nullptr);
    ASSERT_OK(index->Write(b));
    ASSERT_OK(index->Flush());
  }
  RunResult r = Fsck({});
  EXPECT_EQ(r.code, fsck::kExitUncorrected) << r.out;
  EXPECT_NE(FindProblem(r, "dangling_entry", ghost.ToString()), nullptr) << r.out;
  RepairAndVerify(std::set<std::string>{});
  ASSERT_OK_AND_ASSIGN(auto spool, Spool::Open(SpoolOptions(true)));
  EXPECT_EQ(spool->Get(ghost).status().code(), Code::kNotFound);
}

TEST_F(FsckTest, UnindexedLogRecordIsIndexed) {
  const MessageId lost = ids_[3];
  const internal::IndexEntry e = EntryOf(lost);
  {
    ASSERT_OK_AND_ASSIGN(auto index, index::Index::Open(ShardDir(lost) + "/index", false));
    index::Index::Batch b(*index);
    internal::IndexEntry old = e;
    old.info.id = lost;
    b.Delete(old);
    ASSERT_OK(index->Write(b));
    ASSERT_OK(index->Flush());
  }
  RunResult r = Fsck({});
  EXPECT_EQ(r.code, fsck::kExitUncorrected) << r.out;
  EXPECT_NE(FindProblem(r, "unindexed", lost.ToString()), nullptr) << r.out;
  RepairAndVerify(std::set<std::string>{});
}

TEST_F(FsckTest, TornTailIsTruncated) {
  // Garbage where the next batch would go in the newest segment of shard 1: a write cut
  // short by a crash.
  uint64_t newest = 0;
  uint64_t end = 0;
  for (const MessageId& id : ids_) {
    if (id.shard() != 1 || bodies_.count(id.ToString()) == 0) continue;
    const internal::IndexEntry e = EntryOf(id);
    const log::Location last = e.chunked() ? e.main : e.main;
    if (last.segment > newest || (last.segment == newest && last.offset + last.size > end)) {
      newest = last.segment;
      end = last.offset + last.size;
    }
  }
  // State records (hold, attempt) may follow; skip well past everything written.
  const std::string path = SegmentPath(dirs_[1], newest);
  const std::string data = ReadFile(path);
  uint64_t tail = data.size();
  while (tail > end && data[tail - 1] == '\0') --tail;
  tail = log::AlignUp(tail, log::kBlockSize);
  ASSERT_LT(tail + 3000, kSegmentSize);
  Patch(path, tail, testing::RandomBytes(7, 3000));
  RunResult r = Fsck({});
  EXPECT_EQ(r.code, fsck::kExitUncorrected) << r.out;
  const Json* p = FindProblem(r, "torn_tail");
  ASSERT_NE(p, nullptr) << r.out;
  EXPECT_EQ((*p)["shard"].Uint(), 1u);
  RepairAndVerify(std::set<std::string>{});
}

TEST_F(FsckTest, StaleLockFileIsNotAnError) {
  // A writer that died leaves its LOCK file with its name in it; flock went with it.
  WriteFile(dirs_[0] + "/LOCK", "pid 999999999\n");
  RunResult r = Fsck({});
  EXPECT_EQ(r.code, fsck::kExitClean) << r.out;
  EXPECT_NE(FindProblem(r, "stale_lock"), nullptr) << r.out;
}

TEST_F(FsckTest, HeldSpoolChecksButRefusesRepair) {
  Options o = SpoolOptions();
  o.lock_holder = "test-mta (pid " + std::to_string(getpid()) + ")";
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Spool> spool, Spool::Open(o));
  RunResult check = Fsck({});
  EXPECT_EQ(check.code, fsck::kExitClean) << check.out << check.err;
  EXPECT_NE(FindProblem(check, "in_use"), nullptr) << check.out;
  RunResult repair = Fsck({"--repair"});
  EXPECT_EQ(repair.code, fsck::kExitOperational) << repair.out << repair.err;
  EXPECT_NE(repair.err.find("test-mta (pid"), std::string::npos) << repair.err;
  RunResult rebuild = Fsck({"--rebuild-index"});
  EXPECT_EQ(rebuild.code, fsck::kExitOperational) << rebuild.out << rebuild.err;
  spool.reset();
  EXPECT_EQ(Fsck({"--repair"}).code, fsck::kExitClean);
}

TEST_F(FsckTest, NewerFormatVersionIsAnOperationalError) {
  const std::string path = SegmentPath(dirs_[1], 1);
  std::string block = ReadAt(path, 0, log::kBlockSize);
  log::SegmentHeader h;
  ASSERT_EQ(log::DecodeSegmentHeader(reinterpret_cast<const std::byte*>(block.data()), &h),
            log::SegmentHeaderState::kValid);
  h.format_version = log::kFormatVersion + 1;
  log::EncodeSegmentHeader(h, reinterpret_cast<std::byte*>(block.data()));
  Patch(path, 0, block);
  RunResult r = Fsck({});
  EXPECT_EQ(r.code, fsck::kExitOperational) << r.out;
  EXPECT_NE(r.err.find("newer"), std::string::npos) << r.err;
  RunResult repair = Fsck({"--repair"});
  EXPECT_EQ(repair.code, fsck::kExitOperational) << repair.out;
  EXPECT_EQ(ReadAt(path, 0, log::kBlockSize), block) << "a newer segment was rewritten";
  // The marker's version too.
  WriteFile(dirs_[0] + "/SPOOL", "spool format 9\nspool id 1\nshard 0\n");
  EXPECT_EQ(Fsck({}).code, fsck::kExitOperational);
}

TEST_F(FsckTest, UsageAndOpenErrors) {
  EXPECT_EQ(Run(SPOOL_FSCK_PATH, {}).code, fsck::kExitUsage);
  EXPECT_EQ(Run(SPOOL_FSCK_PATH, {"--spool"}).code, fsck::kExitUsage);
  EXPECT_EQ(Run(SPOOL_FSCK_PATH, {"--spool", dirs_[0], "--frobnicate"}).code, fsck::kExitUsage);
  EXPECT_EQ(Run(SPOOL_FSCK_PATH, {"--spool", dirs_[0] + ","}).code, fsck::kExitUsage);
  RunResult help = Run(SPOOL_FSCK_PATH, {"--help"});
  EXPECT_EQ(help.code, 0);
  EXPECT_NE(help.out.find("--rebuild-index"), std::string::npos);
  RunResult missing = Run(SPOOL_FSCK_PATH, {"--spool", dir_.Sub("nope")});
  EXPECT_EQ(missing.code, fsck::kExitOperational);
  EXPECT_NE(missing.err.find("does not exist"), std::string::npos) << missing.err;
  fs::create_directories(dir_.Sub("empty"));
  RunResult not_spool = Run(SPOOL_FSCK_PATH, {"--spool", dir_.Sub("empty"), "--repair"});
  EXPECT_EQ(not_spool.code, fsck::kExitOperational);
  EXPECT_FALSE(fs::exists(dir_.Sub("empty/LOCK"))) << "fsck left a file in a non-spool";
}

}  // namespace
}  // namespace spool
