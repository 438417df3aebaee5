// The fault matrix (docs/durability.md, "Which test proves what"): for every kind of
// file-system operation, failing the 1st, 2nd, 3rd, 5th or 8th operation of that kind
// (once, and from then on), with EIO, ENOSPC, EACCES and EROFS, a workload of opens,
// enqueues (inline and streamed), state changes, removals and reads ends in success or the
// reply of docs/errors.md for that errno, and after a reopen on the real file system every
// acknowledged message is there byte for byte with its last acknowledged state; nothing
// acknowledged as removed comes back.

#include <gtest/gtest.h>

#include <cerrno>
#include <map>
#include <optional>
#include <set>

#include "core/internal.h"
#include "io/fault_file_system.h"
#include "spool/smtp_reply.h"
#include "spool/spool.h"
#include "spool_test_util.h"
#include "test_util.h"

namespace spool {
namespace {

using spool::testing::RandomBytes;
using spool::testing::SameBytes;
using spool::testing::TempDir;

// Frequent checkpoints and re-probes: more of both happen within each cell's workload.
Options MatrixOptions(const std::string& dir) {
  Options o = testing::SmallSpoolOptions({dir});
  o.checkpoint_interval_ms = 50;
  o.reprobe_interval_ms = 20;
  return o;
}

// What the reopened spool may hold for one message.
struct Expected {
  std::string body;
  bool enqueue_acked = false;
  bool enqueue_tried = false;
  bool remove_acked = false;
  bool remove_tried = false;
  std::set<MessageState> states{MessageState::kQueued};  // possible states
  std::set<uint32_t> attempts{0};                        // possible attempt counts
};

// The replies a failure with `err` may give: its own class, or 421 once the shard has
// latched after an I/O error (or is closing).
bool ReplyFits(const Status& s, int err) {
  const std::string reply = SmtpReplyFor(s).ToString();
  if (reply == "421 4.3.2 Service not available") return true;
  switch (err) {
    case ENOSPC:
      return reply == "452 4.3.1 Insufficient system storage";
    case EACCES:
    case EROFS:
      return reply == "451 4.3.5 System incorrectly configured";
    default:
      return reply == "451 4.3.0 Local error in processing";
  }
}

class FaultMatrixTest : public ::testing::TestWithParam<io::OpKind> {};

// One cell: returns the number of calls that failed (for the summary).
void RunCell(io::OpKind kind, uint64_t n, int err, bool sticky, int* failed_calls) {
  SCOPED_TRACE(std::string(io::OpKindName(kind)) + " #" + std::to_string(n) + " " +
               strerrorname_np(err) + (sticky ? " sticky" : " once"));
  TempDir dir;
  const Options o = MatrixOptions(dir.Sub("spool"));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<io::FileSystem> base,
                       io::NewFileSystem(io::Backend::kPosix));
  io::FaultFileSystem fs(base.get());
  std::map<int, Expected> expected;
  std::map<int, MessageId> ids;
  auto check = [&](const Status& s) {
    if (s.ok()) return true;
    ++*failed_calls;
    EXPECT_TRUE(ReplyFits(s, err)) << s.ToString() << " -> " << SmtpReplyFor(s).ToString();
    return false;
  };
  {
    // A first message before the fault is armed, so that reads and state changes have
    // something durable to work on.
    ASSERT_OK_AND_ASSIGN(auto spool, internal::OpenWithFileSystem(o, &fs));
    Envelope env{"a@example.org", {"b@example.net", "c@example.net"}, "default", "m"};
    expected[0].body = RandomBytes(1, 3000);
    ASSERT_OK_AND_ASSIGN(ids[0], spool->Enqueue(env, expected[0].body));
    expected[0].enqueue_acked = expected[0].enqueue_tried = true;
  }
  fs.FailNth(kind, n, err, sticky);
  {
    StatusOr<std::unique_ptr<Spool>> opened = internal::OpenWithFileSystem(o, &fs);
    if (check(opened.status())) {
      Spool& spool = **opened;
      const Envelope env{"a@example.org", {"b@example.net", "c@example.net"}, "default", "m"};
      const size_t sizes[] = {0, 100, 5000, 200000, 70000, 1};
      for (int i = 1; i <= 6; ++i) {
        Expected& e = expected[i];
        e.body = RandomBytes(i, sizes[i - 1]);
        e.enqueue_tried = true;
        StatusOr<MessageId> id = InternalError("not run");
        if (i == 5) {  // streamed by hand
          StatusOr<std::unique_ptr<BodyWriter>> w = spool.BeginMessage(env);
          id = w.status();
          if (w.ok()) {
            Status a = (*w)->Append(std::string_view(e.body).substr(0, 30000));
            if (a.ok()) a = (*w)->Append(std::string_view(e.body).substr(30000));
            id = a.ok() ? (*w)->Commit() : StatusOr<MessageId>(a);
          }
        } else {
          id = spool.Enqueue(env, e.body);
        }
        if (check(id.status())) {
          e.enqueue_acked = true;
          ids[i] = *id;
        }
      }
      // State changes on every message that has an id; each may fail.
      for (auto& [i, id] : ids) {
        Expected& e = expected[i];
        AttemptResult r;
        r.recipients = {{0, RecipientStatus::kDelivered}};
        r.next_attempt_ms = 4102444800000;  // 2100
        e.attempts.insert(1);
        if (check(spool.RecordAttempt(id, r))) e.attempts = {1};
        if (i % 2 == 0) {
          e.states.insert(MessageState::kHeld);
          if (check(spool.Hold(id))) e.states = {MessageState::kHeld};
        }
        if (i % 3 == 0) {
          e.remove_tried = true;
          if (check(spool.Remove(id))) e.remove_acked = true;
        }
        if (!e.remove_acked) {
          StatusOr<std::string> body = spool.ReadBody(id);
          if (check(body.status())) {
            EXPECT_TRUE(SameBytes(*body, e.body)) << id.ToString();
          }
        }
      }
      spool.GetStats();
      spool.GetHealth();
    }
  }
  fs.ClearFaults();
  // Reopen on the real file system: everything acknowledged is there.
  ASSERT_OK_AND_ASSIGN(auto spool, Spool::Open(o));
  for (auto& [i, e] : expected) {
    if (!ids.count(i)) continue;  // never acknowledged: no id to look for
    const MessageId id = ids[i];
    StatusOr<MessageInfo> info = spool->Get(id);
    if (e.remove_acked) {
      EXPECT_EQ(info.status().code(), Code::kNotFound) << "removed " << id.ToString() << " is back";
      continue;
    }
    if (!info.ok()) {
      EXPECT_TRUE(e.remove_tried && info.status().code() == Code::kNotFound)
          << "acknowledged " << id.ToString() << ": " << info.status().ToString();
      continue;
    }
    EXPECT_TRUE(e.states.count(info->state)) << id.ToString() << " state " << int(info->state);
    EXPECT_TRUE(e.attempts.count(info->attempts)) << id.ToString() << " " << info->attempts;
    ASSERT_OK_AND_ASSIGN(std::string body, spool->ReadBody(id));
    EXPECT_TRUE(SameBytes(body, e.body)) << id.ToString();
  }
}

TEST_P(FaultMatrixTest, AcknowledgedStateSurvivesEveryFault) {
  int cells = 0, failed_calls = 0;
  for (uint64_t n : {1, 2, 3, 5, 8}) {
    for (int err : {EIO, ENOSPC, EACCES, EROFS}) {
      for (bool sticky : {false, true}) {
        RunCell(GetParam(), n, err, sticky, &failed_calls);
        ++cells;
        if (HasFatalFailure()) return;
      }
    }
  }
  std::cerr << io::OpKindName(GetParam()) << ": " << cells << " cases, " << failed_calls
            << " calls failed with the right reply\n";
}

INSTANTIATE_TEST_SUITE_P(EveryOpKind, FaultMatrixTest,
                         ::testing::Values(io::OpKind::kOpen, io::OpKind::kRead, io::OpKind::kWrite,
                                           io::OpKind::kSync, io::OpKind::kZeroFill,
                                           io::OpKind::kTruncate, io::OpKind::kRename,
                                           io::OpKind::kSyncDir, io::OpKind::kUnlink,
                                           io::OpKind::kCreateDir, io::OpKind::kListDir,
                                           io::OpKind::kSpace, io::OpKind::kLock),
                         [](const ::testing::TestParamInfo<io::OpKind>& info) {
                           return std::string(io::OpKindName(info.param));
                         });

}  // namespace
}  // namespace spool
