#include "spool/spool.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <span>
#include <thread>

#include "absl/time/time.h"
#include "core/internal.h"
#include "io/fault_file_system.h"
#include "spool/smtp_reply.h"
#include "spool_test_util.h"
#include "test_util.h"
#include "util/sync_point.h"

namespace spool {
namespace {

using spool::testing::MakeEnvelope;
using spool::testing::RandomBytes;
using spool::testing::TempDir;

// A small message size limit: the size checks are quick to reach.
Options TestOptions(const std::vector<std::string>& dirs) {
  Options o = testing::SmallSpoolOptions(dirs);
  o.max_message_size = 8 << 20;
  return o;
}

// Bounds a wait for a background thread to reach a sync point: long enough for a loaded
// machine, not a timing assertion (a test that passes waits far less).
const absl::Duration kPatience = absl::Seconds(20);

class SpoolTest : public ::testing::Test {
 protected:
  TempDir dir_;
  Options options_ = TestOptions({dir_.Sub("a")});
};

TEST_F(SpoolTest, EnqueueGetReadRoundTripEverySize) {
  ASSERT_OK_AND_ASSIGN(auto spool, Spool::Open(options_));
  std::map<MessageId, std::string> bodies;
  for (size_t size : {size_t{0}, size_t{1}, size_t{4096}, size_t{100000}, size_t{3} << 20}) {
    std::string body = RandomBytes(size + 1, size);
    ASSERT_OK_AND_ASSIGN(MessageId id, spool->Enqueue(MakeEnvelope(), body));
    EXPECT_EQ(id.ToString().size(), MessageId::kTextLength);
    ASSERT_OK_AND_ASSIGN(MessageId parsed, MessageId::Parse(id.ToString()));
    EXPECT_EQ(parsed, id);
    bodies[id] = body;
  }
  for (auto& [id, body] : bodies) {
    ASSERT_OK_AND_ASSIGN(std::string got, spool->ReadBody(id));
    EXPECT_EQ(got, body);
    ASSERT_OK_AND_ASSIGN(MessageInfo info, spool->Get(id));
    EXPECT_EQ(info.envelope.sender, "alice@example.org");
    EXPECT_EQ(info.envelope.recipients.size(), 2u);
    EXPECT_EQ(info.envelope.metadata, "helo=mx.example.org");
    EXPECT_EQ(info.size, body.size());
    EXPECT_EQ(info.state, MessageState::kQueued);
    EXPECT_EQ(info.recipient_status.size(), 2u);
  }
  // Ids are time-ordered.
  EXPECT_TRUE(std::is_sorted(bodies.begin(), bodies.end()));
  spool.reset();
  ASSERT_OK_AND_ASSIGN(spool, Spool::Open(options_));
  for (auto& [id, body] : bodies) {
    ASSERT_OK_AND_ASSIGN(std::string got, spool->ReadBody(id));
    EXPECT_EQ(got, body);
  }
}

TEST_F(SpoolTest, StreamedBodyCommitAndAbort) {
  ASSERT_OK_AND_ASSIGN(auto spool, Spool::Open(options_));
  const std::string body = RandomBytes(9, 700000);
  ASSERT_OK_AND_ASSIGN(auto writer, spool->BeginMessage(MakeEnvelope()));
  for (size_t off = 0; off < body.size(); off += 12345) {
    ASSERT_OK(writer->Append(std::string_view(body).substr(off, 12345)));
  }
  ASSERT_OK_AND_ASSIGN(MessageId id, writer->Commit());
  EXPECT_EQ(writer->Commit().status().code(), Code::kFailedPrecondition);
  ASSERT_OK_AND_ASSIGN(auto aborted, spool->BeginMessage(MakeEnvelope()));
  ASSERT_OK(aborted->Append(body));
  aborted->Abort();
  size_t count = 0;
  ASSERT_OK(spool->ForEach([&](const MessageInfo&) { return ++count, true; }));
  EXPECT_EQ(count, 1u);
  size_t pieces = 0;
  std::string streamed;
  ASSERT_OK(spool->ReadBodyStream(id, [&](std::string_view p) {
    ++pieces;
    streamed.append(p);
    return Status::Ok();
  }));
  EXPECT_EQ(streamed, body);
  EXPECT_GT(pieces, 1u);
  spool.reset();
  ASSERT_OK_AND_ASSIGN(spool, Spool::Open(options_));
  ASSERT_OK_AND_ASSIGN(std::string got, spool->ReadBody(id));
  EXPECT_EQ(got, body);
}

// With stream_write_through every piece is durable before Append returns: the pieces
// become the chunks (a short one too), and a crash before the commit leaves nothing.
TEST_F(SpoolTest, StreamWriteThroughStoresEachPieceAsAppended) {
  options_.stream_write_through = true;
  ASSERT_OK_AND_ASSIGN(auto spool, Spool::Open(options_));
  const std::string body = RandomBytes(11, 100000);
  constexpr size_t kPiece = 30000;
  ASSERT_OK_AND_ASSIGN(auto writer, spool->BeginMessage(MakeEnvelope()));
  for (size_t off = 0; off < body.size(); off += kPiece) {
    ASSERT_OK(writer->Append(std::string_view(body).substr(off, kPiece)));
  }
  ASSERT_OK_AND_ASSIGN(MessageId id, writer->Commit());
  std::vector<size_t> pieces;
  std::string streamed;
  ASSERT_OK(spool->ReadBodyStream(id, [&](std::string_view p) {
    pieces.push_back(p.size());
    streamed.append(p);
    return Status::Ok();
  }));
  EXPECT_EQ(streamed, body);
  EXPECT_EQ(pieces, (std::vector<size_t>{kPiece, kPiece, kPiece, body.size() - 3 * kPiece}));
  spool.reset();
  ASSERT_OK_AND_ASSIGN(spool, Spool::Open(options_));
  ASSERT_OK_AND_ASSIGN(std::string got, spool->ReadBody(id));
  EXPECT_EQ(got, body);
}

TEST_F(SpoolTest, BadInputGetsClearErrorsAndLosesNothing) {
  ASSERT_OK_AND_ASSIGN(auto spool, Spool::Open(options_));
  ASSERT_OK_AND_ASSIGN(MessageId keep, spool->Enqueue(MakeEnvelope(), "kept"));
  Envelope none = MakeEnvelope(0);
  EXPECT_EQ(spool->Enqueue(none, "x").status().code(), Code::kInvalidArgument);
  Envelope empty = MakeEnvelope(1);
  empty.recipients[0].clear();
  EXPECT_EQ(spool->Enqueue(empty, "x").status().code(), Code::kInvalidArgument);
  Envelope nul = MakeEnvelope(1, std::string("a\0b", 3));
  EXPECT_EQ(spool->Enqueue(nul, "x").status().code(), Code::kInvalidArgument);
  std::string big(options_.max_message_size + 1, 'x');
  Status too_big = spool->Enqueue(MakeEnvelope(), big).status();
  EXPECT_EQ(too_big.code(), Code::kTooBig);
  EXPECT_EQ(SmtpReplyFor(too_big).ToString(), "552 5.3.4 Message too big for system");
  EXPECT_EQ(spool->Admission(big.size()).code(), Code::kTooBig);
  ASSERT_OK_AND_ASSIGN(auto w, spool->BeginMessage(MakeEnvelope()));
  EXPECT_EQ(w->Append(big).code(), Code::kTooBig);

  const MessageId unknown(keep.time() + 12345, keep.tag());
  EXPECT_EQ(spool->Get(unknown).status().code(), Code::kNotFound);
  EXPECT_EQ(spool->ReadBody(unknown).status().code(), Code::kNotFound);
  EXPECT_EQ(spool->Remove(unknown).code(), Code::kNotFound);
  EXPECT_EQ(spool->Hold(unknown).code(), Code::kNotFound);
  EXPECT_EQ(spool->RecordAttempt(unknown, {}).code(), Code::kNotFound);
  const MessageId other_shard(keep.time(), keep.tag() | (uint64_t{7} << 48));
  EXPECT_EQ(spool->Get(other_shard).status().code(), Code::kNotFound);
  EXPECT_EQ(spool->Get(MessageId()).status().code(), Code::kInvalidArgument);
  EXPECT_FALSE(MessageId::Parse("not-an-id").ok());
  EXPECT_FALSE(MessageId::Parse("0000000000000000000000").ok());
  EXPECT_FALSE(MessageId::Parse(keep.ToString() + "x").ok());
  AttemptResult bad_index;
  bad_index.recipients = {{5, RecipientStatus::kDelivered}};
  EXPECT_EQ(spool->RecordAttempt(keep, bad_index).code(), Code::kInvalidArgument);
  // Nothing above disturbed the stored message.
  ASSERT_OK_AND_ASSIGN(std::string body, spool->ReadBody(keep));
  EXPECT_EQ(body, "kept");
  ASSERT_OK_AND_ASSIGN(MessageInfo info, spool->Get(keep));
  EXPECT_EQ(info.attempts, 0u);
}

TEST_F(SpoolTest, WrongDirectoriesAndSecondWriterAreRefused) {
  // A non-empty directory that is not a spool.
  const std::string junk = dir_.Sub("junk");
  std::filesystem::create_directories(junk);
  std::ofstream(junk + "/important.txt") << "do not touch";
  auto opened = Spool::Open(TestOptions({junk}));
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(opened.status().message().find("not a spool"), std::string_view::npos);
  EXPECT_TRUE(std::filesystem::exists(junk + "/important.txt"));

  // A second writer, in this process and in another.
  Options o = options_;
  o.lock_holder = "pid 1 test-holder";
  ASSERT_OK_AND_ASSIGN(auto spool, Spool::Open(o));
  auto second = Spool::Open(options_);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(second.status().message().find("test-holder"), std::string_view::npos)
      << second.status().ToString();
  pid_t pid = fork();
  if (pid == 0) {
    auto s = Spool::Open(options_);
    _exit(!s.ok() && s.status().code() == Code::kFailedPrecondition ? 0 : 1);
  }
  int wstatus = 0;
  waitpid(pid, &wstatus, 0);
  EXPECT_TRUE(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0);

  // Read-only beside the writer works; mutations through it fail clearly.
  ASSERT_OK_AND_ASSIGN(MessageId id, spool->Enqueue(MakeEnvelope(), "hello"));
  Options ro = options_;
  ro.read_only = true;
  ASSERT_OK_AND_ASSIGN(auto reader, Spool::Open(ro));
  ASSERT_OK_AND_ASSIGN(std::string body, reader->ReadBody(id));
  EXPECT_EQ(body, "hello");
  EXPECT_EQ(reader->Remove(id).code(), Code::kFailedPrecondition);
  EXPECT_EQ(reader->Enqueue(MakeEnvelope(), "x").status().code(), Code::kFailedPrecondition);
}

TEST_F(SpoolTest, NewerFormatIsRefused) {
  { ASSERT_OK_AND_ASSIGN(auto spool, Spool::Open(options_)); }
  const std::string marker = options_.dirs[0] + "/SPOOL";
  std::string text;
  {
    std::ifstream in(marker);
    std::getline(in, text, '\0');
  }
  text.replace(text.find("format 1"), 8, "format 9");
  std::ofstream(marker) << text;
  auto s = Spool::Open(options_);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(s.status().message().find("newer"), std::string_view::npos);
}

TEST_F(SpoolTest, SegmentSizeIsFixedAtCreation) {
  { ASSERT_OK_AND_ASSIGN(auto spool, Spool::Open(options_)); }
  Options other = options_;
  other.segment_size = 64 << 20;  // a tool opening with defaults must not change it
  {
    ASSERT_OK_AND_ASSIGN(auto spool, Spool::Open(other));
    ASSERT_OK_AND_ASSIGN(MessageId id, spool->Enqueue(MakeEnvelope(), "x"));
    (void)id;
  }
  for (const auto& entry : std::filesystem::directory_iterator(options_.dirs[0] + "/log")) {
    EXPECT_EQ(entry.file_size(), options_.segment_size) << entry.path();
  }
}

TEST_F(SpoolTest, StateChangesAreDurableAndRemovedMessagesStayGone) {
  MessageId a, b, c;
  const int64_t later = 4102444800000;  // 2100-01-01
  {
    ASSERT_OK_AND_ASSIGN(auto spool, Spool::Open(options_));
    ASSERT_OK_AND_ASSIGN(a, spool->Enqueue(MakeEnvelope(3), "a"));
    ASSERT_OK_AND_ASSIGN(b, spool->Enqueue(MakeEnvelope(), "b"));
    ASSERT_OK_AND_ASSIGN(c, spool->Enqueue(MakeEnvelope(), "c"));
    AttemptResult r;
    r.recipients = {{0, RecipientStatus::kDelivered}, {2, RecipientStatus::kFailed}};
    r.next_attempt_ms = later;
    ASSERT_OK(spool->RecordAttempt(a, r));
    ASSERT_OK(spool->RecordAttempt(a, AttemptResult{{{1, RecipientStatus::kDeferred}}, {}, true}));
    ASSERT_OK(spool->Hold(b));
    ASSERT_OK(spool->Remove(c));
    EXPECT_EQ(spool->Get(c).status().code(), Code::kNotFound);
    // Crash: nothing flushed since the last checkpoint; the log must carry it all.
    internal::CloseAsIfCrashed(std::move(spool));
  }
  for (int round = 0; round < 2; ++round) {
    ASSERT_OK_AND_ASSIGN(auto spool, Spool::Open(options_));
    ASSERT_OK_AND_ASSIGN(MessageInfo ia, spool->Get(a));
    EXPECT_EQ(ia.attempts, 2u);
    EXPECT_EQ(ia.next_attempt_ms, later);
    EXPECT_EQ(ia.recipient_status,
              (std::vector<RecipientStatus>{RecipientStatus::kDelivered, RecipientStatus::kDeferred,
                                            RecipientStatus::kFailed}));
    ASSERT_OK_AND_ASSIGN(MessageInfo ib, spool->Get(b));
    EXPECT_EQ(ib.state, MessageState::kHeld);
    EXPECT_EQ(spool->Get(c).status().code(), Code::kNotFound);
    EXPECT_EQ(spool->ReadBody(c).status().code(), Code::kNotFound);
    if (round == 0) {
      ASSERT_OK(spool->Release(b));
      ASSERT_OK_AND_ASSIGN(MessageInfo released, spool->Get(b));
      EXPECT_EQ(released.state, MessageState::kQueued);
      ASSERT_OK(spool->Hold(b));
      internal::CloseAsIfCrashed(std::move(spool));
    }
  }
}

TEST_F(SpoolTest, ScanDueByQueueAndTimeSkipsHeld) {
  ASSERT_OK_AND_ASSIGN(auto spool, Spool::Open(options_));
  const int64_t now = 2000000000000;
  std::vector<MessageId> ids;
  for (int i = 0; i < 6; ++i) {
    ASSERT_OK_AND_ASSIGN(MessageId id,
                         spool->Enqueue(MakeEnvelope(1, i % 2 ? "slow" : "fast"), "m"));
    ids.push_back(id);
  }
  // Fast queue: due times in reverse order of arrival; one held, one in the future.
  ASSERT_OK(spool->RecordAttempt(ids[0], {{}, now - 10, true}));
  ASSERT_OK(spool->RecordAttempt(ids[2], {{}, now - 20, true}));
  ASSERT_OK(spool->RecordAttempt(ids[4], {{}, now + 1000, true}));
  ASSERT_OK_AND_ASSIGN(auto due, spool->ScanDue("fast", now, 10));
  EXPECT_EQ(due, (std::vector<MessageId>{ids[2], ids[0]}));
  ASSERT_OK(spool->Hold(ids[2]));
  ASSERT_OK_AND_ASSIGN(due, spool->ScanDue("fast", now, 10));
  EXPECT_EQ(due, (std::vector<MessageId>{ids[0]}));
  ASSERT_OK_AND_ASSIGN(due, spool->ScanDue("slow", now, 2));
  EXPECT_EQ(due.size(), 2u);
  ASSERT_OK_AND_ASSIGN(due, spool->ScanDue("nonexistent", now, 10));
  EXPECT_TRUE(due.empty());
  ASSERT_OK(spool->Requeue(ids[4]));
  ASSERT_OK_AND_ASSIGN(due, spool->ScanDue("fast", now + 10000000000, 10));
  EXPECT_EQ(due.size(), 2u);
}

TEST_F(SpoolTest, SeveralShardsSpreadAndNameTheirShard) {
  Options o = TestOptions({dir_.Sub("s0"), dir_.Sub("s1"), dir_.Sub("s2")});
  std::map<MessageId, std::string> stored;
  {
    ASSERT_OK_AND_ASSIGN(auto spool, Spool::Open(o));
    std::set<uint32_t> shards;
    for (int i = 0; i < 30; ++i) {
      std::string body = RandomBytes(i, 1000 + i);
      ASSERT_OK_AND_ASSIGN(MessageId id, spool->Enqueue(MakeEnvelope(), body));
      shards.insert(id.shard());
      stored[id] = body;
    }
    EXPECT_EQ(shards.size(), 3u);
  }
  // The order of the directories does not matter: ids name shards, not positions.
  std::swap(o.dirs[0], o.dirs[2]);
  ASSERT_OK_AND_ASSIGN(auto spool, Spool::Open(o));
  for (auto& [id, body] : stored) {
    ASSERT_OK_AND_ASSIGN(std::string got, spool->ReadBody(id));
    EXPECT_EQ(got, body);
  }
  // A directory of another spool is refused.
  Options mixed = TestOptions({dir_.Sub("s0"), dir_.Sub("other")});
  { ASSERT_OK_AND_ASSIGN(auto other, Spool::Open(TestOptions({dir_.Sub("other")}))); }
  spool.reset();
  auto bad = Spool::Open(mixed);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Code::kFailedPrecondition);
}

TEST_F(SpoolTest, ConcurrentProducersDeliverersAndReaders) {
  ASSERT_OK_AND_ASSIGN(auto spool, Spool::Open(options_));
  std::mutex mu;
  std::map<MessageId, std::string> acked;
  std::set<MessageId> removed;
  std::atomic<bool> producing{true};
  std::vector<std::thread> threads;
  for (int p = 0; p < 6; ++p) {
    threads.emplace_back([&, p] {
      for (int i = 0; i < 80; ++i) {
        std::string body = RandomBytes(p * 1000 + i, 500 + i * 37);
        StatusOr<MessageId> id = spool->Enqueue(MakeEnvelope(1 + i % 3), body);
        ASSERT_TRUE(id.ok()) << id.status().ToString();
        std::lock_guard<std::mutex> l(mu);
        acked[*id] = body;
      }
    });
  }
  // Deliverers: take due messages, record an attempt, remove every other one.
  for (int d = 0; d < 2; ++d) {
    threads.emplace_back([&] {
      while (producing.load()) {
        StatusOr<std::vector<MessageId>> due = spool->ScanDue("default", INT64_MAX / 2, 20);
        ASSERT_TRUE(due.ok());
        for (const MessageId& id : *due) {
          StatusOr<std::string> body = spool->ReadBody(id);
          if (!body.ok()) {
            ASSERT_EQ(body.status().code(), Code::kNotFound) << body.status().ToString();
            continue;
          }
          Status s = (id.time() % 2) ? spool->Remove(id)
                                     : spool->RecordAttempt(id, {{}, INT64_MAX / 4, true});
          if (s.ok() && (id.time() % 2)) {
            std::lock_guard<std::mutex> l(mu);
            removed.insert(id);
          } else if (!s.ok()) {
            ASSERT_EQ(s.code(), Code::kNotFound) << s.ToString();
          }
        }
      }
    });
  }
  for (int p = 0; p < 6; ++p) threads[p].join();
  producing = false;
  for (size_t i = 6; i < threads.size(); ++i) threads[i].join();
  spool.reset();
  ASSERT_OK_AND_ASSIGN(spool, Spool::Open(options_));
  for (auto& [id, body] : acked) {
    if (removed.count(id)) {
      EXPECT_EQ(spool->Get(id).status().code(), Code::kNotFound);
    } else {
      ASSERT_OK_AND_ASSIGN(std::string got, spool->ReadBody(id));
      EXPECT_EQ(got, body);
    }
  }
}

TEST_F(SpoolTest, EnqueueAsyncCompletesEveryCallback) {
  ASSERT_OK_AND_ASSIGN(auto spool, Spool::Open(options_));
  std::atomic<int> done{0};
  std::mutex mu;
  std::vector<MessageId> ids;
  const std::string big = RandomBytes(5, 600000);  // over the inline limit: chunked
  for (int i = 0; i < 50; ++i) {
    spool->EnqueueAsync(MakeEnvelope(), i == 7 ? std::string_view(big) : std::string_view("async"),
                        [&](const StatusOr<MessageId>& id) {
                          ASSERT_TRUE(id.ok()) << id.status().ToString();
                          std::lock_guard<std::mutex> l(mu);
                          ids.push_back(*id);
                          done.fetch_add(1);
                        });
  }
  spool->EnqueueAsync(MakeEnvelope(0), "x", [&](const StatusOr<MessageId>& id) {
    EXPECT_EQ(id.status().code(), Code::kInvalidArgument);
    done.fetch_add(1);
  });
  while (done.load() < 51) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(ids.size(), 50u);
  size_t big_found = 0;
  for (const MessageId& id : ids) {
    ASSERT_OK_AND_ASSIGN(std::string body, spool->ReadBody(id));
    if (body.size() == big.size()) {
      EXPECT_EQ(body, big);
      ++big_found;
    }
  }
  EXPECT_EQ(big_found, 1u);
}

// With async_commit_wait_ms = 0 an event loop's EnqueueAsync never waits for room in the
// commit queue: each callback runs once, with an id or kOverload, and every id is durable.
TEST_F(SpoolTest, EnqueueAsyncThatNeverWaitsAnswersOverloadOrAnId) {
  options_.async_commit_wait_ms = 0;
  ASSERT_OK_AND_ASSIGN(auto spool, Spool::Open(options_));
  std::atomic<int> done{0}, overloaded{0};
  std::mutex mu;
  std::map<MessageId, std::string> ids;
  constexpr int kMessages = 3000;
  for (int i = 0; i < kMessages; ++i) {
    std::string body = RandomBytes(i, 20000);
    spool->EnqueueAsync(MakeEnvelope(), body, [&, body](const StatusOr<MessageId>& id) {
      if (id.ok()) {
        std::lock_guard<std::mutex> l(mu);
        ids[*id] = body;
      } else {
        EXPECT_EQ(id.status().code(), Code::kOverload) << id.status().ToString();
        EXPECT_EQ(SmtpReplyFor(id.status()).ToString(), "451 4.4.5 Mail system congestion");
        overloaded.fetch_add(1);
      }
      done.fetch_add(1);
    });
  }
  while (done.load() < kMessages) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::cerr << ids.size() << " stored, " << overloaded.load() << " refused as overload\n";
  EXPECT_EQ(ids.size() + overloaded.load(), static_cast<size_t>(kMessages));
  internal::CloseAsIfCrashed(std::move(spool));
  ASSERT_OK_AND_ASSIGN(spool, Spool::Open(options_));
  for (const auto& [id, body] : ids) {
    ASSERT_OK_AND_ASSIGN(std::string got, spool->ReadBody(id));
    EXPECT_EQ(got, body);
  }
}

TEST_F(SpoolTest, ReclamationKeepsLiveMessagesAndBoundsSpace) {
  Options o = options_;
  std::map<MessageId, std::string> live;
  {
    ASSERT_OK_AND_ASSIGN(auto spool, Spool::Open(o));
    // About 7 MiB through 1 MiB segments; 5% of the messages stay.
    for (int i = 0; i < 1400; ++i) {
      std::string body = RandomBytes(i, 5000);
      ASSERT_OK_AND_ASSIGN(MessageId id, spool->Enqueue(MakeEnvelope(), body));
      if (i % 20 == 0) {
        ASSERT_OK(spool->RecordAttempt(id, {{}, INT64_MAX / 4, true}));
        live[id] = body;
      } else {
        ASSERT_OK(spool->Remove(id));
      }
    }
    // Let the background reclamation catch up.
    for (int i = 0; i < 100 && spool->GetStats().segments_live > 5; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    Stats st = spool->GetStats();
    EXPECT_GT(st.reclaimed_segments, 0u);
    EXPECT_LE(st.segments_live, 5u) << "live bytes " << st.live_bytes;
    EXPECT_EQ(st.messages, live.size());
    for (auto& [id, body] : live) {
      ASSERT_OK_AND_ASSIGN(std::string got, spool->ReadBody(id));
      EXPECT_EQ(got, body);
      ASSERT_OK_AND_ASSIGN(MessageInfo info, spool->Get(id));
      EXPECT_EQ(info.attempts, 1u);
    }
    internal::CloseAsIfCrashed(std::move(spool));
  }
  ASSERT_OK_AND_ASSIGN(auto spool, Spool::Open(o));
  size_t count = 0;
  ASSERT_OK(spool->ForEach([&](const MessageInfo& info) {
    ++count;
    EXPECT_EQ(live.count(info.id), 1u) << "a removed message came back: " << info.id.ToString();
    EXPECT_EQ(info.attempts, 1u);
    return true;
  }));
  EXPECT_EQ(count, live.size());
  for (auto& [id, body] : live) {
    ASSERT_OK_AND_ASSIGN(std::string got, spool->ReadBody(id));
    EXPECT_EQ(got, body);
  }
}

// Reclamation copies live messages forward a group at a time while producers change and
// remove those same messages: every change acknowledged before, during or after a copy
// holds, no removed message returns, before and after a crash.
TEST_F(SpoolTest, ReclamationRacesStateChangesAndRemovals) {
  ASSERT_OK_AND_ASSIGN(auto spool, Spool::Open(options_));
  std::mutex mu;
  std::map<MessageId, std::string> live;   // guarded by mu
  std::map<MessageId, uint32_t> attempts;  // guarded by mu
  std::set<MessageId> removed;             // guarded by mu
  // Half of ~4 MiB stays: the older segments are half live when reclamation takes them.
  for (int i = 0; i < 1200; ++i) {
    std::string body = RandomBytes(i, 1500 + i % 3000);
    ASSERT_OK_AND_ASSIGN(MessageId id, spool->Enqueue(MakeEnvelope(), body));
    if (i % 2 == 0) {
      live[id] = body;
      attempts[id] = 0;
    } else {
      ASSERT_OK(spool->Remove(id));
    }
  }
  std::vector<MessageId> ids;
  for (const auto& [id, body] : live) ids.push_back(id);
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  // Changers: each owns a quarter of the ids; attempts and removals race the copies.
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      std::vector<MessageId> mine;
      for (size_t i = t; i < ids.size(); i += 4) mine.push_back(ids[i]);
      while (!stop.load() && !mine.empty()) {
        const size_t k = rng() % mine.size();
        const MessageId id = mine[k];
        if (rng() % 8 == 0) {
          ASSERT_OK(spool->Remove(id));
          std::lock_guard<std::mutex> l(mu);
          live.erase(id);
          attempts.erase(id);
          removed.insert(id);
          mine.erase(mine.begin() + static_cast<long>(k));
        } else {
          ASSERT_OK(spool->RecordAttempt(id, {{}, INT64_MAX / 4, true}));
          std::lock_guard<std::mutex> l(mu);
          ++attempts[id];
        }
      }
    });
  }
  // Garbage that moves the log on, so that the older segments become the oldest. Each is
  // removed from its enqueue's callback, on an I/O worker, as an event loop would: when
  // its stripe is held by reclamation, which waits for callbacks of that worker, the
  // removal must not block there.
  std::atomic<int> garbage_pending{0};
  std::atomic<int> garbage_failed{0};
  threads.emplace_back([&] {
    for (int i = 0; !stop.load(); ++i) {
      while (garbage_pending.load() > 32) std::this_thread::yield();
      garbage_pending.fetch_add(1);
      spool->EnqueueAsync(MakeEnvelope(), RandomBytes(i, 4000), [&](const StatusOr<MessageId>& id) {
        if (!id.ok()) {
          garbage_failed.fetch_add(1);
          garbage_pending.fetch_sub(1);
          return;
        }
        spool->RemoveAsync(*id, [&](const Status& st) {
          if (!st.ok()) garbage_failed.fetch_add(1);
          garbage_pending.fetch_sub(1);
        });
      });
    }
    while (garbage_pending.load() > 0) std::this_thread::yield();
  });
  for (int i = 0; i < 100 && spool->GetStats().reclaimed_segments < 6; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  stop = true;
  for (auto& t : threads) t.join();
  EXPECT_EQ(garbage_failed.load(), 0);
  const Stats st = spool->GetStats();
  EXPECT_GE(st.reclaimed_segments, 6u);
  EXPECT_GT(st.relocated_bytes, 0u);
  std::cerr << live.size() << " live, " << removed.size() << " removed during the run, "
            << st.reclaimed_segments << " segments reclaimed, " << st.relocated_bytes
            << " bytes relocated\n";
  auto check = [&](Spool& s) {
    size_t count = 0;
    ASSERT_OK(s.ForEach([&](const MessageInfo& info) {
      ++count;
      EXPECT_EQ(removed.count(info.id), 0u) << "removed message back: " << info.id.ToString();
      return true;
    }));
    EXPECT_EQ(count, live.size());
    for (const auto& [id, body] : live) {
      ASSERT_OK_AND_ASSIGN(std::string got, s.ReadBody(id));
      EXPECT_EQ(got, body);
      ASSERT_OK_AND_ASSIGN(MessageInfo info, s.Get(id));
      EXPECT_EQ(info.attempts, attempts[id]) << id.ToString();
    }
  };
  check(*spool);
  internal::CloseAsIfCrashed(std::move(spool));
  ASSERT_OK_AND_ASSIGN(spool, Spool::Open(options_));
  check(*spool);
}

// The ordering that the garbage removals of the test above meet by chance, forced: a
// RemoveAsync of a message whose stripe reclamation holds (copying its group forward) must
// not wait for the stripe on the caller's thread, which may be an I/O worker that
// reclamation itself waits for. It returns at once with the message hidden, the removal
// waits on the spool's worker thread, and it holds once answered.
TEST_F(SpoolTest, RemoveAsyncNeverWaitsForAStripeThatReclamationHolds) {
  if (!SyncPoint::kCompiledIn) GTEST_SKIP() << "built without SPOOL_SYNC_POINTS";
  std::unique_ptr<Spool> spool;
  ScopedSyncPoints sync_points;
  SyncPoint* sync = SyncPoint::GetInstance();
  // Reclamation starts once the messages are written (a removal of the test's own would
  // otherwise meet a held stripe too), and holds the stripes of the first group it copies
  // until the test's RemoveAsync has returned.
  sync->LoadDependency(
      {{"SpoolTest::RemoveAsyncBusyStripe:Written", "SpoolImpl::MaintenanceLoop:BeforeReclaim"}});
  std::mutex mu;
  std::vector<MessageId> group;  // guarded by mu
  sync->SetCallBack("SpoolImpl::RelocateGroup:StripesLocked", [&](void* arg) {
    {
      std::lock_guard<std::mutex> l(mu);
      if (!group.empty()) return;
      const auto* ids = static_cast<std::span<const MessageId>*>(arg);
      group.assign(ids->begin(), ids->end());
    }
    SPOOL_SYNC_POINT("SpoolTest::RemoveAsyncBusyStripe:StripesHeld");
    EXPECT_TRUE(
        sync->WaitUntilPassed("SpoolTest::RemoveAsyncBusyStripe:RemoveReturned", 1, kPatience));
  });
  ASSERT_OK_AND_ASSIGN(spool, Spool::Open(options_));
  // A quarter of about 4 MiB stays: the oldest segments are mostly garbage, with messages
  // to copy.
  std::map<MessageId, std::string> live;
  for (int i = 0; i < 1000; ++i) {
    std::string body = RandomBytes(i, 4000);
    ASSERT_OK_AND_ASSIGN(MessageId id, spool->Enqueue(MakeEnvelope(), body));
    if (i % 4 == 0) {
      live[id] = body;
    } else {
      ASSERT_OK(spool->Remove(id));
    }
  }
  SPOOL_SYNC_POINT("SpoolTest::RemoveAsyncBusyStripe:Written");
  ASSERT_TRUE(sync->WaitUntilPassed("SpoolTest::RemoveAsyncBusyStripe:StripesHeld", 1, kPatience));
  MessageId victim;
  {
    std::lock_guard<std::mutex> l(mu);
    victim = group.front();
  }
  ASSERT_EQ(live.count(victim), 1u);
  Status removal = InternalError("not answered");
  std::thread remover([&] {
    spool->RemoveAsync(victim, [&](const Status& s) {
      removal = s;
      SPOOL_SYNC_POINT("SpoolTest::RemoveAsyncBusyStripe:Answered");
    });
    SPOOL_SYNC_POINT("SpoolTest::RemoveAsyncBusyStripe:RemoveReturned");
  });
  // Had RemoveAsync waited for the stripe, it would not return until reclamation gave up
  // waiting for it.
  EXPECT_TRUE(sync->WaitUntilPassed("SpoolTest::RemoveAsyncBusyStripe:RemoveReturned", 1,
                                    absl::Seconds(10)));
  EXPECT_EQ(spool->Get(victim).status().code(), Code::kNotFound);
  remover.join();
  ASSERT_TRUE(sync->WaitUntilPassed("SpoolTest::RemoveAsyncBusyStripe:Answered", 1, kPatience));
  ASSERT_OK(removal);
  live.erase(victim);
  internal::CloseAsIfCrashed(std::move(spool));
  ASSERT_OK_AND_ASSIGN(spool, Spool::Open(options_));
  EXPECT_EQ(spool->Get(victim).status().code(), Code::kNotFound);
  size_t count = 0;
  ASSERT_OK(spool->ForEach([&](const MessageInfo&) { return ++count, true; }));
  EXPECT_EQ(count, live.size());
  for (const auto& [id, body] : live) {
    ASSERT_OK_AND_ASSIGN(std::string got, spool->ReadBody(id));
    EXPECT_EQ(got, body);
  }
}

// Regression (found by the kill -9 torture): reclamation recycled a segment holding the
// chunks of a streamed message not yet committed, since the index did not know them.
TEST_F(SpoolTest, ReclamationLeavesChunksOfUncommittedMessagesAlone) {
  if (!SyncPoint::kCompiledIn) GTEST_SKIP() << "built without SPOOL_SYNC_POINTS";
  std::unique_ptr<Spool> spool;
  ScopedSyncPoints sync_points;
  SyncPoint* sync = SyncPoint::GetInstance();
  // Reclamation waits until the garbage is written: its first round then finds the chunks'
  // segment the oldest, sealed and all garbage for the index.
  sync->LoadDependency({{"SpoolTest::UncommittedChunks:GarbageWritten",
                         "SpoolImpl::MaintenanceLoop:BeforeReclaim"}});
  ASSERT_OK_AND_ASSIGN(spool, Spool::Open(options_));
  const std::string body = RandomBytes(3, 600000);  // chunked with 1 MiB segments
  ASSERT_OK_AND_ASSIGN(auto writer, spool->BeginMessage(MakeEnvelope()));
  ASSERT_OK(writer->Append(std::string_view(body).substr(0, 500000)));
  // Fill several segments with garbage so that the chunks' segment becomes the oldest.
  for (int i = 0; i < 900; ++i) {
    ASSERT_OK_AND_ASSIGN(MessageId id, spool->Enqueue(MakeEnvelope(), RandomBytes(i, 5000)));
    ASSERT_OK(spool->Remove(id));
  }
  SPOOL_SYNC_POINT("SpoolTest::UncommittedChunks:GarbageWritten");
  // A round of reclamation has judged the chunks' segment before the message goes on.
  ASSERT_TRUE(sync->WaitUntilPassed("SpoolImpl::MaintenanceLoop:AfterReclaim", 1, kPatience));
  ASSERT_OK(writer->Append(std::string_view(body).substr(500000)));
  ASSERT_OK_AND_ASSIGN(MessageId id, writer->Commit());
  ASSERT_OK_AND_ASSIGN(std::string got, spool->ReadBody(id));
  EXPECT_EQ(got, body);
  // Once committed, the message is ordinary live data: reclamation moves it, intact.
  for (int i = 0; i < 100 && spool->GetStats().segments_live > 5; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_OK_AND_ASSIGN(got, spool->ReadBody(id));
  EXPECT_EQ(got, body);
  EXPECT_GT(spool->GetStats().reclaimed_segments, 0u);
}

TEST_F(SpoolTest, RebuiltIndexEqualsTheLiveOne) {
  auto dump = [](Spool& s) {
    std::vector<std::string> rows;
    EXPECT_OK(s.ForEach([&](const MessageInfo& m) {
      std::string row = m.id.ToString() + " " + std::string(MessageStateName(m.state)) + " " +
                        std::to_string(m.attempts) + " " + std::to_string(m.next_attempt_ms) + " " +
                        m.envelope.sender + " " + m.envelope.queue + " " + std::to_string(m.size);
      for (RecipientStatus r : m.recipient_status) row += " " + std::string(RecipientStatusName(r));
      rows.push_back(row);
      return true;
    }));
    return rows;
  };
  std::vector<std::string> before;
  {
    ASSERT_OK_AND_ASSIGN(auto spool, Spool::Open(options_));
    for (int i = 0; i < 400; ++i) {
      ASSERT_OK_AND_ASSIGN(MessageId id,
                           spool->Enqueue(MakeEnvelope(1 + i % 3), RandomBytes(i, 3000)));
      if (i % 3 == 0) ASSERT_OK(spool->Remove(id));
      if (i % 3 == 1)
        ASSERT_OK(spool->RecordAttempt(id, {{{0, RecipientStatus::kDeferred}}, 5000 + i, true}));
      if (i % 7 == 0 && i % 3 != 0) ASSERT_OK(spool->Hold(id));
    }
    before = dump(*spool);
  }
  ASSERT_OK(RebuildIndex(options_));
  ASSERT_OK_AND_ASSIGN(auto spool, Spool::Open(options_));
  EXPECT_EQ(dump(*spool), before);
  EXPECT_FALSE(before.empty());
}

// Power loss at every point of enqueue, update and remove: the fault file system drops
// (or tears) what was not synced, and the index is left as a crash leaves it.
TEST_F(SpoolTest, SimulatedPowerLossAtEveryWriteKeepsAcknowledgedState) {
  auto posix = io::NewFileSystem(io::Backend::kPosix);
  ASSERT_TRUE(posix.ok());
  io::FaultFileSystem fs(posix->get());
  const uint64_t seed = spool::testing::TestSeed(77);
  int cases = 0;
  for (io::CrashMode mode : {io::CrashMode::kDropUnsynced, io::CrashMode::kTearUnsynced}) {
    for (int crash_at = 1; crash_at <= 24; ++crash_at) {
      SCOPED_TRACE("mode " + std::to_string(static_cast<int>(mode)) + " crash at write " +
                   std::to_string(crash_at));
      TempDir dir;
      Options o = TestOptions({dir.Sub("s")});
      o.direct_io = false;
      o.reclaim = false;
      std::map<MessageId, std::pair<std::string, uint32_t>> acked;  // body, attempts
      std::set<MessageId> removed;
      {
        ASSERT_OK_AND_ASSIGN(auto spool, internal::OpenWithFileSystem(o, &fs));
        // Each operation's write is the crash_at-th write from here: fail that sync and
        // all after it, then lose power.
        fs.FailNth(io::OpKind::kSync, crash_at, EIO, /*sticky=*/true);
        for (int i = 0; i < 12; ++i) {
          std::string body = RandomBytes(seed + i, 700 * i);
          StatusOr<MessageId> id = spool->Enqueue(MakeEnvelope(), body);
          if (!id.ok()) break;
          acked[*id] = {body, 0};
          if (i % 3 == 1) {
            if (!spool->RecordAttempt(*id, {{}, 123456, true}).ok()) break;
            acked[*id].second = 1;
          }
          if (i % 4 == 2) {
            if (!spool->Remove(*id).ok()) break;
            acked.erase(*id);
            removed.insert(*id);
          }
        }
        ASSERT_OK(fs.SimulateCrash(mode, seed + crash_at));
        internal::CloseAsIfCrashed(std::move(spool));
      }
      fs.ResetAfterCrash();
      ASSERT_OK_AND_ASSIGN(auto spool, internal::OpenWithFileSystem(o, &fs));
      for (auto& [id, want] : acked) {
        ASSERT_OK_AND_ASSIGN(std::string body, spool->ReadBody(id));
        EXPECT_EQ(body, want.first);
        ASSERT_OK_AND_ASSIGN(MessageInfo info, spool->Get(id));
        EXPECT_GE(info.attempts, want.second);  // an unacknowledged update may have landed
      }
      for (const MessageId& id : removed) {
        EXPECT_EQ(spool->Get(id).status().code(), Code::kNotFound) << "removed message is back";
      }
      ASSERT_OK(spool->ForEach([&](const MessageInfo& info) {
        StatusOr<std::string> body = spool->ReadBody(info.id);
        EXPECT_TRUE(body.ok()) << "partial message " << info.id.ToString();
        return true;
      }));
      ++cases;
    }
  }
  RecordProperty("cases", cases);
}

// Power loss at every point of reclamation: relocation appends, the segment recycle, the
// pre-formatting of new segments. Nothing live may be lost and nothing removed may return.
TEST_F(SpoolTest, SimulatedPowerLossDuringReclamation) {
  auto posix = io::NewFileSystem(io::Backend::kPosix);
  ASSERT_TRUE(posix.ok());
  io::FaultFileSystem fs(posix->get());
  const uint64_t seed = spool::testing::TestSeed(99);
  int crashes_during_reclaim = 0;
  for (int crash_at = 1; crash_at <= 16; ++crash_at) {
    const io::CrashMode mode =
        crash_at % 2 ? io::CrashMode::kDropUnsynced : io::CrashMode::kTearUnsynced;
    SCOPED_TRACE("crash at sync " + std::to_string(crash_at));
    TempDir dir;
    Options o = TestOptions({dir.Sub("s")});
    o.direct_io = false;
    o.reclaim = false;
    std::map<MessageId, std::string> live;
    std::set<MessageId> removed;
    {
      ASSERT_OK_AND_ASSIGN(auto spool, internal::OpenWithFileSystem(o, &fs));
      for (int i = 0; i < 700; ++i) {
        std::string body = RandomBytes(seed + i, 6000);
        ASSERT_OK_AND_ASSIGN(MessageId id, spool->Enqueue(MakeEnvelope(), body));
        if (i % 10 == 0) {
          live[id] = body;
        } else {
          ASSERT_OK(spool->Remove(id));
          removed.insert(id);
        }
      }
    }
    o.reclaim = true;
    {
      fs.FailNth(io::OpKind::kSync, crash_at, EIO, /*sticky=*/true);
      const uint64_t syncs = fs.Count(io::OpKind::kSync);
      ASSERT_OK_AND_ASSIGN(auto spool, internal::OpenWithFileSystem(o, &fs));
      for (int i = 0; i < 300 && fs.Count(io::OpKind::kSync) < syncs + crash_at; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      if (spool->GetStats().reclaimed_segments > 0 || spool->GetStats().relocated_bytes > 0) {
        ++crashes_during_reclaim;
      }
      ASSERT_OK(fs.SimulateCrash(mode, seed + crash_at));
      internal::CloseAsIfCrashed(std::move(spool));
    }
    fs.ResetAfterCrash();
    o.reclaim = false;
    ASSERT_OK_AND_ASSIGN(auto spool, internal::OpenWithFileSystem(o, &fs));
    for (auto& [id, body] : live) {
      ASSERT_OK_AND_ASSIGN(std::string got, spool->ReadBody(id));
      EXPECT_EQ(got, body);
    }
    size_t count = 0;
    ASSERT_OK(spool->ForEach([&](const MessageInfo& info) {
      EXPECT_EQ(removed.count(info.id), 0u) << "removed message back: " << info.id.ToString();
      return ++count, true;
    }));
    EXPECT_EQ(count, live.size());
  }
  EXPECT_GT(crashes_during_reclaim, 0);
}

TEST_F(SpoolTest, RemoveAsyncHidesAtOnceAndIsDurableWhenDone) {
  options_.segment_size = 1 << 20;
  ASSERT_OK_AND_ASSIGN(auto spool, Spool::Open(options_));
  std::vector<MessageId> ids;
  std::map<MessageId, std::string> kept;
  for (int i = 0; i < 400; ++i) {
    std::string body = RandomBytes(i, 5000);
    ASSERT_OK_AND_ASSIGN(MessageId id, spool->Enqueue(MakeEnvelope(), body));
    ids.push_back(id);
    if (i % 4 == 0) kept[id] = body;
  }
  std::atomic<int> pending{0}, failed{0};
  for (const MessageId& id : ids) {
    if (kept.count(id)) continue;
    pending.fetch_add(1);
    spool->RemoveAsync(id, [&](const Status& s) {
      if (!s.ok()) failed.fetch_add(1);
      pending.fetch_sub(1);
    });
    // Gone at once for every reader, and for a second removal.
    EXPECT_EQ(spool->Get(id).status().code(), Code::kNotFound);
    EXPECT_EQ(spool->ReadBody(id).status().code(), Code::kNotFound);
    EXPECT_EQ(spool->Hold(id).code(), Code::kNotFound);
  }
  spool->RemoveAsync(MessageId(), nullptr);  // bad input: no callback, no crash
  bool called = false;
  spool->RemoveAsync(ids[1], [&](const Status& s) {
    called = true;
    EXPECT_EQ(s.code(), Code::kNotFound);
  });
  EXPECT_TRUE(called);
  while (pending.load() != 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(failed.load(), 0);
  // Durable once done: a crash does not bring them back, and the rest is intact.
  internal::CloseAsIfCrashed(std::move(spool));
  ASSERT_OK_AND_ASSIGN(spool, Spool::Open(options_));
  for (const MessageId& id : ids) {
    if (kept.count(id)) {
      ASSERT_OK_AND_ASSIGN(std::string body, spool->ReadBody(id));
      EXPECT_EQ(body, kept[id]);
    } else {
      EXPECT_EQ(spool->Get(id).status().code(), Code::kNotFound) << id.ToString();
    }
  }
}

}  // namespace
}  // namespace spool
