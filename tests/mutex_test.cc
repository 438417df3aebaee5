#include "util/mutex.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <memory>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"

// These tests pass in every build; in a TSan build (SPOOL_TSAN=ON) they also check that TSan
// sees spool::Mutex as a lock, so that none of them produces a report. The MutexTsanCanary
// tests are the converse and run only in TSan builds (see tests/CMakeLists.txt): a race in a
// condition must still be reported, so the wrapper cannot have passed the tests above by
// hiding accesses from TSan.

namespace spool {
namespace {

constexpr bool kTsanBuild =
#ifdef SPOOL_MUTEX_INTERNAL_TSAN
    true;
#else
    false;
#endif

// Long enough for any waiter to block under TSan on a loaded machine; a test that needs
// it ends long before.
constexpr auto kPatience = std::chrono::seconds(20);

TEST(MutexTest, HandOffOrdersDataTouchedOutsideTheLock) {
  struct Payload {
    std::vector<int> values;
  };
  Mutex mu;
  std::deque<std::unique_ptr<Payload>> queue;  // guarded by mu
  bool done = false;                           // guarded by mu
  constexpr int kItems = 2000;

  long long sum = 0;
  std::thread consumer([&] {
    for (;;) {
      std::unique_ptr<Payload> p;
      {
        MutexLock l(&mu);
        auto ready = [&] { return !queue.empty() || done; };
        mu.Await(absl::Condition(&ready));
        if (queue.empty()) return;
        p = std::move(queue.front());
        queue.pop_front();
      }
      // Written by the producer before it locked: ordered only by the hand-off.
      for (int v : p->values) sum += v;
    }
  });
  for (int i = 0; i < kItems; ++i) {
    auto p = std::make_unique<Payload>();
    p->values.assign(8, i);
    MutexLock l(&mu);
    queue.push_back(std::move(p));
  }
  {
    MutexLock l(&mu);
    done = true;
  }
  consumer.join();
  EXPECT_EQ(sum, 8LL * kItems * (kItems - 1) / 2);
}

// The caveat of Await: absl evaluates a waiter's condition on the thread that unlocks, too.
// There the condition reads state the waiter wrote before waiting and state the unlocking
// thread wrote: TSan must see both reads as ordered by the mutex.
TEST(MutexTest, ConditionEvaluatedByUnlockingThreadIsOrdered) {
  Mutex mu;
  int target = 0;         // guarded by mu; written by the waiter before it waits
  int progress = 0;       // guarded by mu; written by the unlocking thread
  bool released = false;  // guarded by mu
  std::atomic<bool> evaluated_elsewhere{false};
  const std::thread::id waiter = std::this_thread::get_id();

  std::thread unlocker([&] {
    const auto give_up = std::chrono::steady_clock::now() + kPatience;
    for (bool stop = false; !stop;) {
      {
        MutexLock l(&mu);
        ++progress;
        // Once the waiter's condition ran here, in an earlier Unlock, make it true: the
        // Unlock below then wakes the waiter and this thread is done.
        if ((evaluated_elsewhere.load() || std::chrono::steady_clock::now() > give_up) &&
            progress >= target) {
          released = true;
          stop = true;
        }
      }  // Unlock: absl evaluates the waiter's condition on this thread.
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });

  {
    MutexLock l(&mu);
    target = 3;
    auto cond = [&] {
      if (std::this_thread::get_id() != waiter) evaluated_elsewhere.store(true);
      return progress >= target && released;
    };
    mu.Await(absl::Condition(&cond));
    EXPECT_TRUE(released);
    EXPECT_GE(progress, target);
  }
  unlocker.join();
  EXPECT_TRUE(evaluated_elsewhere.load())
      << "absl never evaluated the condition on the unlocking thread: this test no longer "
         "exercises that path";
}

TEST(MutexTest, AwaitHoldingTheLockShared) {
  Mutex mu;
  bool go = false;  // guarded by mu
  int value = 0;    // guarded by mu
  constexpr int kReaders = 3;
  std::atomic<int> seen{0};
  std::vector<std::thread> readers;
  for (int i = 0; i < kReaders; ++i) {
    readers.emplace_back([&] {
      ReaderMutexLock l(&mu);
      auto ready = [&] { return go; };
      mu.Await(absl::Condition(&ready));
      mu.AssertReaderHeld();
      seen += value;
    });
  }
  {
    MutexLock l(&mu);
    value = 7;
    go = true;
  }
  for (std::thread& t : readers) t.join();
  EXPECT_EQ(seen.load(), kReaders * 7);
}

TEST(MutexTest, AwaitWithTimeoutExpiresHoldingTheLock) {
  Mutex mu;
  int value = 0;  // guarded by mu
  MutexLock l(&mu);
  auto never = [&] { return value < 0; };
  EXPECT_FALSE(mu.AwaitWithTimeout(absl::Condition(&never), absl::Milliseconds(20)));
  mu.AssertHeld();
  ++value;
  EXPECT_FALSE(mu.AwaitWithDeadline(absl::Condition(&never), absl::Now()));
  EXPECT_EQ(value, 1);
}

TEST(MutexTest, AwaitWithDeadlineWakesWhenTrue) {
  Mutex mu;
  int value = 0;  // guarded by mu
  std::thread setter([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    MutexLock l(&mu);
    value = 42;
  });
  {
    MutexLock l(&mu);
    auto set = [&] { return value != 0; };
    EXPECT_TRUE(mu.AwaitWithDeadline(absl::Condition(&set), absl::Now() + absl::Seconds(20)));
    EXPECT_EQ(value, 42);
    value = 43;  // still held exclusively after the wait
  }
  setter.join();
  MutexLock l(&mu);
  EXPECT_EQ(value, 43);
}

// The io workers of the log drop the lock around I/O in the middle of a critical section.
// TryLock takes a free mutex, fails on one another thread holds, and a value written by
// the holder is ordered before a later successful TryLock (TSan checks the order).
TEST(MutexTest, TryLockTakesOnlyAFreeMutex) {
  Mutex mu;
  int value = 0;  // guarded by mu
  std::atomic<bool> held{false}, release{false};
  std::thread holder([&] {
    MutexLock l(&mu);
    value = 42;
    held = true;
    while (!release.load()) std::this_thread::yield();
  });
  while (!held.load()) std::this_thread::yield();
  EXPECT_FALSE(mu.TryLock());
  release = true;
  holder.join();
  ASSERT_TRUE(mu.TryLock());
  EXPECT_EQ(value, 42);
  bool other = true;  // held by this thread now: another thread's TryLock fails
  std::thread([&] {
    other = mu.TryLock();
    if (other) mu.Unlock();
  }).join();
  EXPECT_FALSE(other);
  mu.Unlock();
}

TEST(MutexTest, UnlockAndRelockWithinAScope) {
  Mutex mu;
  int value = 0;  // guarded by mu
  std::thread other([&] {
    for (int i = 0; i < 1000; ++i) {
      MutexLock l(&mu);
      ++value;
    }
  });
  {
    MutexLock l(&mu);
    for (int i = 0; i < 1000; ++i) {
      ++value;
      mu.Unlock();
      mu.Lock();
    }
  }
  other.join();
  MutexLock l(&mu);
  EXPECT_EQ(value, 2000);
}

// ---- Canaries: races that TSan must still report --------------------------------------------
// Disabled by default; tests/CMakeLists.txt runs each in TSan builds and passes only if the
// output holds a data race report. Every access but the racy one is properly ordered. The
// racy variable has a cache line to itself: TSan remembers only a few accesses per 8 bytes,
// and the other variables' accesses could push the racy write out before the read.

// The condition, run by the waiter (first evaluation, inside Await), reads a variable that
// another thread writes without the lock.
TEST(MutexTsanCanary, DISABLED_RaceInConditionOnWaiterIsReported) {
  if (!kTsanBuild) GTEST_SKIP() << "meaningful only under ThreadSanitizer";
  Mutex mu;
  alignas(64) int racy = 0;     // deliberately unguarded
  alignas(64) bool go = false;  // guarded by mu
  std::thread writer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    racy = 1;  // no lock: races with the condition's read
    MutexLock l(&mu);
    go = true;
  });
  {
    MutexLock l(&mu);
    auto cond = [&] { return racy >= 0 && go; };
    mu.Await(absl::Condition(&cond));
  }
  writer.join();
}

// The condition, run on an unlocking thread, reads a variable that a third thread writes
// without the lock.
TEST(MutexTsanCanary, DISABLED_RaceInConditionOnUnlockerIsReported) {
  if (!kTsanBuild) GTEST_SKIP() << "meaningful only under ThreadSanitizer";
  Mutex mu;
  alignas(64) int racy = 0;           // deliberately unguarded
  alignas(64) bool released = false;  // guarded by mu
  std::atomic<bool> evaluated_elsewhere{false};
  const std::thread::id waiter = std::this_thread::get_id();
  std::thread writer([&] { racy = 1; });  // no lock: races with the unlocker's read
  std::thread unlocker([&] {
    const auto give_up = std::chrono::steady_clock::now() + kPatience;
    for (bool stop = false; !stop;) {
      {
        MutexLock l(&mu);
        if (evaluated_elsewhere.load() || std::chrono::steady_clock::now() > give_up) {
          released = true;
          stop = true;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  {
    MutexLock l(&mu);
    auto cond = [&] {
      if (std::this_thread::get_id() != waiter) {
        evaluated_elsewhere.store(true);
        if (racy < 0) return true;  // the read under test; never true
      }
      return released;
    };
    mu.Await(absl::Condition(&cond));
  }
  unlocker.join();
  writer.join();
  EXPECT_TRUE(evaluated_elsewhere.load());
}

}  // namespace
}  // namespace spool
