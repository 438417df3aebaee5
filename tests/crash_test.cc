// Kill -9 torture (docs/durability.md, contract items 1, 2 and 5; "Torture"): a child
// process runs the spool with several producers, updates, removals and background
// reclamation, and reports each acknowledgement to the parent through a pipe only after the
// API returned success. The parent kills the child at a random instant, reopens the spool
// and checks every acknowledged message (exact body, last acknowledged state), that no
// removed message came back and that nothing is partial. Many cycles run on the same spool,
// so recovery runs on recovered state.
//
// SPOOL_TORTURE_CYCLES (default 12) and SPOOL_TEST_SEED set the run; tests/crash/torture.sh
// runs long ones.

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include "core/internal.h"
#include "io/fault_file_system.h"
#include "spool/spool.h"
#include "test_util.h"

namespace spool {
namespace {

using spool::testing::RandomBytes;
using spool::testing::SameBytes;
using spool::testing::TempDir;

Options TortureOptions(const std::string& dir) {
  Options o;
  o.dirs = {dir};
  o.segment_size = 2 << 20;  // small: reclamation and segment switches happen often
  o.stream_chunk_size = 128 << 10;
  o.min_free_bytes = 1 << 20;
  o.checkpoint_interval_ms = 50;
  return o;
}

// The body of message number n: reproducible from (seed, n).
std::string BodyOf(uint64_t seed, uint64_t n) {
  const size_t size = (n * 7919) % 5 == 0 ? 200000 + n % 100000 : 100 + (n * 104729) % 9000;
  return RandomBytes(seed * 1000003 + n, size);
}

// Keeps long runs bounded: past kMaxLive acknowledged messages, the oldest are removed
// (through the checked API, so they join the removed set that must never come back).
void TrimLiveSet(Spool& spool, std::map<MessageId, uint64_t>* live, std::set<MessageId>* removed) {
  constexpr size_t kMaxLive = 1500;
  while (live->size() > kMaxLive) {
    const MessageId id = live->begin()->first;
    ASSERT_OK(spool.Remove(id));
    live->erase(live->begin());
    removed->insert(id);
  }
}

// What the checker knows: acknowledged messages (id -> body number), acknowledged attempt
// counts, acknowledged removals, and removals in flight at the crash.
struct AckState {
  std::map<MessageId, uint64_t> live;
  std::map<MessageId, uint32_t> min_attempts;
  std::set<MessageId> removed;
  std::set<MessageId> doomed;
};

// After a reopen: every acknowledged message intact with at least its acknowledged
// state, no removed message back, nothing partial; then bounds the live set.
void CheckAfterCrash(Spool& spool, uint64_t seed, AckState* st) {
  for (auto it = st->live.begin(); it != st->live.end();) {
    // A removal in flight at the crash may or may not have landed; from now on the
    // message counts as whatever the reopened spool says.
    if (st->doomed.count(it->first) && spool.Get(it->first).status().code() == Code::kNotFound) {
      st->removed.insert(it->first);
      it = st->live.erase(it);
    } else {
      ++it;
    }
  }
  st->doomed.clear();
  for (const auto& [id, n] : st->live) {
    StatusOr<std::string> body = spool.ReadBody(id);
    ASSERT_TRUE(body.ok()) << "lost acknowledged " << id.ToString() << ": "
                           << body.status().ToString();
    ASSERT_TRUE(SameBytes(*body, BodyOf(seed, n))) << "altered " << id.ToString();
    if (st->min_attempts.count(id)) {
      ASSERT_OK_AND_ASSIGN(MessageInfo info, spool.Get(id));
      EXPECT_GE(info.attempts, st->min_attempts[id]) << "lost state of " << id.ToString();
    }
  }
  ASSERT_OK(spool.ForEach([&](const MessageInfo& info) {
    EXPECT_EQ(st->removed.count(info.id), 0u) << "removed message back: " << info.id.ToString();
    EXPECT_TRUE(spool.ReadBody(info.id).ok()) << "partial message " << info.id.ToString();
    return true;
  }));
  TrimLiveSet(spool, &st->live, &st->removed);
}

// Runs in the child until killed. Lines written to `fd`:
//   E <id> <n>        enqueue of body n acknowledged
//   A <id> <attempts> an attempt count acknowledged
//   D <id>            about to remove (the removal may land without its R line)
//   R <id>            removal acknowledged
[[noreturn]] void Child(const std::string& dir, uint64_t seed, uint64_t first_n, int fd) {
  auto opened = Spool::Open(TortureOptions(dir));
  if (!opened.ok()) {
    std::fprintf(stderr, "child open: %s\n", opened.status().ToString().c_str());
    _exit(3);
  }
  std::unique_ptr<Spool> spool = std::move(opened).value();
  std::mutex out_mu;
  auto report = [&](const std::string& line) {
    std::lock_guard<std::mutex> l(out_mu);
    const std::string with_nl = line + "\n";
    if (write(fd, with_nl.data(), with_nl.size()) != static_cast<ssize_t>(with_nl.size())) {
      _exit(4);
    }
  };
  std::atomic<uint64_t> next_n{first_n};
  // Diagnostic mode: stop cleanly after a while instead of waiting to be killed.
  const bool clean = std::getenv("SPOOL_TORTURE_CLEAN") != nullptr;
  const auto stop_at = std::chrono::steady_clock::now() + std::chrono::milliseconds(700);
  std::vector<std::thread> threads;
  for (int p = 0; p < 4; ++p) {
    threads.emplace_back([&, p] {
      std::mt19937_64 rng(seed + p);
      std::vector<MessageId> mine;
      while (!clean || std::chrono::steady_clock::now() < stop_at) {
        const uint64_t n = next_n.fetch_add(1);
        Envelope env;
        env.sender = "torture@example.org";
        env.recipients = {"a@example.net", "b@example.net"};
        StatusOr<MessageId> id = spool->Enqueue(env, BodyOf(seed, n));
        if (!id.ok()) continue;
        report("E " + id->ToString() + " " + std::to_string(n));
        mine.push_back(*id);
        if (rng() % 3 == 0 && !mine.empty()) {
          const MessageId victim = mine[rng() % mine.size()];
          StatusOr<MessageInfo> info = spool->Get(victim);
          if (info.ok() && spool->RecordAttempt(victim, {{}, 4102444800000, true}).ok()) {
            report("A " + victim.ToString() + " " + std::to_string(info->attempts + 1));
          }
        }
        if (rng() % 2 == 0 && mine.size() > 4) {
          const size_t k = rng() % mine.size();
          const MessageId victim = mine[k];
          mine.erase(mine.begin() + static_cast<long>(k));
          report("D " + victim.ToString());
          if (spool->Remove(victim).ok()) report("R " + victim.ToString());
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  spool.reset();
  _exit(0);
}

TEST(CrashTest, KillNineAtRandomInstantsLosesNothingAcknowledged) {
  // The child is this test binary again, exec'd fresh (a fork of a process that already
  // ran RocksDB would inherit its thread pool without the threads), told its role here.
  if (const char* role = std::getenv("SPOOL_TORTURE_CHILD")) {
    char dir_buf[4096];
    unsigned long long child_seed, first;
    int fd;
    if (std::sscanf(role, "%4095[^,],%llu,%llu,%d", dir_buf, &child_seed, &first, &fd) != 4) {
      _exit(5);
    }
    Child(dir_buf, child_seed, first, fd);
  }
  const uint64_t seed = spool::testing::TestSeed(2026);
  const char* env_cycles = std::getenv("SPOOL_TORTURE_CYCLES");
  const int cycles = env_cycles ? std::atoi(env_cycles) : 12;
  TempDir tmp;
  const std::string dir = tmp.Sub("spool");
  std::mt19937_64 rng(seed);
  AckState state;
  auto& live = state.live;
  auto& min_attempts = state.min_attempts;
  auto& removed = state.removed;
  auto& doomed = state.doomed;
  uint64_t next_n = 0, acks = 0;
  for (int cycle = 0; cycle < cycles; ++cycle) {
    SCOPED_TRACE("seed " + std::to_string(seed) + " cycle " + std::to_string(cycle));
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    const uint64_t first_n = next_n;
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(fds[0]);
      const std::string role = dir + "," + std::to_string(seed) + "," + std::to_string(first_n) +
                               "," + std::to_string(fds[1]);
      setenv("SPOOL_TORTURE_CHILD", role.c_str(), 1);
      execl("/proc/self/exe", "crash_test",
            "--gtest_filter=CrashTest.KillNineAtRandomInstantsLosesNothingAcknowledged",
            static_cast<char*>(nullptr));
      _exit(6);
    }
    close(fds[1]);
    // Read acknowledgements while the child runs; kill it at a random instant.
    const auto kill_at =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(150 + rng() % 900);
    std::string pending;
    std::atomic<bool> killed{false};
    const bool clean = std::getenv("SPOOL_TORTURE_CLEAN") != nullptr;
    std::thread killer([&] {
      if (clean) return;
      std::this_thread::sleep_until(kill_at);
      kill(pid, SIGKILL);
      killed = true;
    });
    char buf[65536];
    for (;;) {
      ssize_t n = read(fds[0], buf, sizeof(buf));
      if (n <= 0) break;
      pending.append(buf, static_cast<size_t>(n));
    }
    killer.join();
    close(fds[0]);
    int wstatus = 0;
    waitpid(pid, &wstatus, 0);
    if (clean) {
      ASSERT_TRUE(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0);
    } else {
      ASSERT_TRUE(WIFSIGNALED(wstatus)) << "child exited early with " << WEXITSTATUS(wstatus);
    }
    // Only complete lines are acknowledgements that reached the parent.
    std::istringstream in(pending.substr(0, pending.rfind('\n') + 1));
    std::string kind, text;
    while (in >> kind >> text) {
      StatusOr<MessageId> id = MessageId::Parse(text);
      ASSERT_TRUE(id.ok()) << text;
      ++acks;
      if (kind == "E") {
        uint64_t n;
        in >> n;
        live[*id] = n;
        next_n = std::max(next_n, n + 1);
      } else if (kind == "A") {
        uint32_t attempts;
        in >> attempts;
        min_attempts[*id] = std::max(min_attempts[*id], attempts);
      } else if (kind == "D") {
        doomed.insert(*id);
      } else if (kind == "R") {
        live.erase(*id);
        doomed.erase(*id);
        removed.insert(*id);
      }
    }
    next_n += 100000;  // body numbers of unacknowledged enqueues are never reused
    // Reopen and check.
    Options verify_options = TortureOptions(dir);
    verify_options.reclaim = std::getenv("SPOOL_TORTURE_VERIFY_RECLAIM") != nullptr;
    ASSERT_OK_AND_ASSIGN(auto spool, Spool::Open(verify_options));
    CheckAfterCrash(*spool, seed, &state);
    if (::testing::Test::HasFatalFailure()) return;
    TrimLiveSet(*spool, &live, &removed);
  }
  RecordProperty("cycles", cycles);
  RecordProperty("acknowledgements", static_cast<int>(acks));
  std::printf("torture: seed %llu, %d cycles, %llu acknowledgements checked, %zu live at end\n",
              static_cast<unsigned long long>(seed), cycles, static_cast<unsigned long long>(acks),
              live.size());
}

// Simulated power loss (docs/durability.md, "Torture"): the same workload in-process over
// the fault-injecting file system; at a random instant everything not yet synced is dropped
// or torn and the index is abandoned as a crash leaves it.
// SPOOL_POWERLOSS_CYCLES (default 12).
TEST(CrashTest, PowerLossAtRandomInstantsLosesNothingAcknowledged) {
  const uint64_t seed = spool::testing::TestSeed(4242);
  const char* env_cycles = std::getenv("SPOOL_POWERLOSS_CYCLES");
  const int cycles = env_cycles ? std::atoi(env_cycles) : 12;
  auto posix = io::NewFileSystem(io::Backend::kPosix);
  ASSERT_TRUE(posix.ok());
  io::FaultFileSystem fs(posix->get());
  TempDir tmp;
  Options o = TortureOptions(tmp.Sub("spool"));
  o.direct_io = false;  // the fault file system tracks buffered writes and syncs
  std::mt19937_64 rng(seed);
  std::mutex mu;
  AckState state;
  auto& live = state.live;
  auto& min_attempts = state.min_attempts;
  auto& removed = state.removed;
  auto& doomed = state.doomed;
  std::atomic<uint64_t> next_n{0};
  uint64_t acks = 0;
  for (int cycle = 0; cycle < cycles; ++cycle) {
    SCOPED_TRACE("seed " + std::to_string(seed) + " cycle " + std::to_string(cycle));
    {
      ASSERT_OK_AND_ASSIGN(auto spool, internal::OpenWithFileSystem(o, &fs));
      std::atomic<bool> crashed{false};
      std::vector<std::thread> threads;
      for (int p = 0; p < 3; ++p) {
        threads.emplace_back([&, p] {
          std::mt19937_64 r(seed + cycle * 10 + p);
          std::vector<MessageId> mine;
          while (!crashed.load()) {
            const uint64_t n = next_n.fetch_add(1);
            Envelope env;
            env.sender = "power@example.org";
            env.recipients = {"a@example.net"};
            StatusOr<MessageId> id = spool->Enqueue(env, BodyOf(seed, n));
            if (!id.ok()) continue;
            {
              std::lock_guard<std::mutex> l(mu);
              live[*id] = n;
              ++acks;
            }
            mine.push_back(*id);
            if (r() % 3 == 0) {
              const MessageId v = mine[r() % mine.size()];
              StatusOr<MessageInfo> info = spool->Get(v);
              if (info.ok() && spool->RecordAttempt(v, {{}, 4102444800000, true}).ok()) {
                std::lock_guard<std::mutex> l(mu);
                min_attempts[v] = std::max(min_attempts[v], info->attempts + 1);
              }
            }
            if (r() % 2 == 0 && mine.size() > 4) {
              const size_t k = r() % mine.size();
              const MessageId v = mine[k];
              mine.erase(mine.begin() + static_cast<long>(k));
              {
                std::lock_guard<std::mutex> l(mu);
                doomed.insert(v);
              }
              if (spool->Remove(v).ok()) {
                std::lock_guard<std::mutex> l(mu);
                live.erase(v);
                doomed.erase(v);
                removed.insert(v);
              }
            }
          }
        });
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100 + rng() % 500));
      const io::CrashMode mode =
          rng() % 2 ? io::CrashMode::kDropUnsynced : io::CrashMode::kTearUnsynced;
      ASSERT_OK(fs.SimulateCrash(mode, rng()));
      crashed = true;
      for (auto& t : threads) t.join();
      internal::CloseAsIfCrashed(std::move(spool));
    }
    fs.ResetAfterCrash();
    ASSERT_OK_AND_ASSIGN(auto spool, internal::OpenWithFileSystem(o, &fs));
    CheckAfterCrash(*spool, seed, &state);
    if (::testing::Test::HasFatalFailure()) return;
    TrimLiveSet(*spool, &live, &removed);
  }
  std::printf("power loss: seed %llu, %d cycles, %llu acknowledgements, %zu live at end\n",
              static_cast<unsigned long long>(seed), cycles, static_cast<unsigned long long>(acks),
              live.size());
}

}  // namespace
}  // namespace spool
