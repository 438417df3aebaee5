// Sync points: named places in the code where a test holds a thread until another thread
// has passed some other place, or runs a callback, to force one interleaving of a race
// (RocksDB's SyncPoint, test_util/sync_point.h). A race test then says what must happen
// before what, instead of sleeping and hoping that the other thread got there.
//
// In the code, a point is a statement:
//   SPOOL_SYNC_POINT("SpoolImpl::MaintenanceLoop:BeforeReclaim");
//   SPOOL_SYNC_POINT_CALLBACK("SpoolImpl::Reprobe:Probed", &probe);  // callbacks get &probe
// Names are "Class::Method:Place", unique in the tree; a test names its own points
// "TestSuite::TestName:Place".
//
// In a test:
//   std::unique_ptr<Spool> spool;   // declared first, so that it closes last
//   ScopedSyncPoints sync_points;   // enables processing; Reset() when the scope ends
//   SyncPoint::GetInstance()->LoadDependency({{"A", "B"}});  // B waits until A is passed
//   SyncPoint::GetInstance()->SetCallBack("C", [&](void* arg) { ... });
//   ASSERT_OK_AND_ASSIGN(spool, Spool::Open(options));  // its threads start now
//   ... pass the test's own points with SPOOL_SYNC_POINT ...
//   EXPECT_TRUE(SyncPoint::GetInstance()->WaitUntilPassed("D", 1, absl::Seconds(20)));
//
// Cost. The points are compiled in only where SPOOL_SYNC_POINTS is defined: the CMake
// option of that name, on by default when the tests are built (SPOOL_BUILD_TESTS) and off
// otherwise. Without it both macros expand to nothing. With it, a point costs one relaxed
// atomic load while processing is disabled (the state outside the tests that enable it);
// while enabled, a lock and a map lookup. The class itself is always built, so that tests
// compile either way; SyncPoint::kCompiledIn tells them whether the points exist (a test
// that needs them skips without them).
//
// Semantics, while processing is enabled. A thread that reaches point P:
//   1. waits until every predecessor of P (LoadDependency) has been passed, by any thread,
//      since the dependencies were loaded or the trace cleared;
//   2. runs P's callback, if one is set, with the macro's argument (nullptr for
//      SPOOL_SYNC_POINT), without the SyncPoint's lock held: a callback may pass points
//      itself, and may block, best in WaitUntilPassed (which Reset ends: Reset waits for
//      running callbacks);
//   3. counts P as passed, waking the threads that wait for it.
// DisableProcessing (and Reset) let every waiting thread go on at once: a test that fails
// half-way must not leave a background thread held, or the spool's close would wait for
// it forever. Hence ScopedSyncPoints, declared after the objects whose threads may be
// held, so that it ends first.
//
// Thread-safety: SyncPoint is thread-safe. It is one instance for the whole process, so
// tests that use it must not run in parallel within one process (GoogleTest runs the
// tests of a binary one at a time).

#ifndef SPOOL_UTIL_SYNC_POINT_H_
#define SPOOL_UTIL_SYNC_POINT_H_

#include <atomic>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/time/time.h"
#include "util/mutex.h"

namespace spool {

class SyncPoint {
 public:
#ifdef SPOOL_SYNC_POINTS
  static constexpr bool kCompiledIn = true;
#else
  static constexpr bool kCompiledIn = false;
#endif

  // "Point `successor` waits until point `predecessor` has been passed."
  struct Dependency {
    std::string predecessor;
    std::string successor;
  };

  // The process's instance (never destroyed: threads may pass points during exit).
  static SyncPoint* GetInstance();

  SyncPoint(const SyncPoint&) = delete;
  SyncPoint& operator=(const SyncPoint&) = delete;

  // Replaces the dependencies with `dependencies`, and forgets which points were passed.
  void LoadDependency(const std::vector<Dependency>& dependencies);

  // Runs `callback` at every pass of `point` (replacing its callback, if any).
  void SetCallBack(std::string_view point, std::function<void(void* arg)> callback);
  // Removes the callback of `point`, or every callback. Both return once no callback is
  // running any more: what a callback captured may be destroyed then.
  void ClearCallBack(std::string_view point);
  void ClearAllCallBacks();

  // Points do what the dependencies and callbacks say only between these two calls; a
  // point reached while processing is disabled does nothing and is not counted.
  // DisableProcessing lets the threads that wait at a point go on.
  void EnableProcessing();
  void DisableProcessing();

  // Forgets which points were passed, and how often.
  void ClearTrace();

  // How often `point` was passed since the trace was last cleared.
  int Passes(std::string_view point);

  // Blocks until `point` has been passed `times` times since the trace was last cleared,
  // or until `timeout` has passed or processing is disabled; true in the first case. For
  // a test waiting for a background thread: the timeout bounds a test that would
  // otherwise hang when what it waits for never happens.
  [[nodiscard]] bool WaitUntilPassed(std::string_view point, int times, absl::Duration timeout);

  // Disables processing, then clears the dependencies, the callbacks (returning once none
  // runs) and the trace.
  void Reset();

  // Passes `point` (see the semantics above). What the macros call; tests may call it for
  // their own points as well.
  void Process(std::string_view point, void* arg = nullptr);

  // The macros' test: one relaxed atomic load while processing is disabled.
  static void MaybeProcess(std::string_view point, void* arg) {
    if (enabled_.load(std::memory_order_relaxed)) GetInstance()->Process(point, arg);
  }

 private:
  SyncPoint() = default;

  bool PredecessorsPassed(std::string_view point) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Written under mu_, so that waiters see a change (absl re-evaluates conditions when
  // mu_ is released); read without it by MaybeProcess.
  static inline std::atomic<bool> enabled_{false};

  Mutex mu_;
  std::map<std::string, std::vector<std::string>, std::less<>> predecessors_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::function<void(void*)>, std::less<>> callbacks_ ABSL_GUARDED_BY(mu_);
  int callbacks_running_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, int, std::less<>> passes_ ABSL_GUARDED_BY(mu_);
};

// Enables processing for its lifetime, and resets the SyncPoint when it ends. Declare it
// after the objects whose threads may wait at a point (a Spool), so that it ends before
// they do and lets those threads go on; and before they start their threads, so that
// those see processing enabled from their first point on.
class ScopedSyncPoints {
 public:
  ScopedSyncPoints() { SyncPoint::GetInstance()->EnableProcessing(); }
  ~ScopedSyncPoints() { SyncPoint::GetInstance()->Reset(); }
  ScopedSyncPoints(const ScopedSyncPoints&) = delete;
  ScopedSyncPoints& operator=(const ScopedSyncPoints&) = delete;
};

}  // namespace spool

#ifdef SPOOL_SYNC_POINTS
#define SPOOL_SYNC_POINT(point) ::spool::SyncPoint::MaybeProcess(point, nullptr)
#define SPOOL_SYNC_POINT_CALLBACK(point, arg) ::spool::SyncPoint::MaybeProcess(point, arg)
#else
#define SPOOL_SYNC_POINT(point)
#define SPOOL_SYNC_POINT_CALLBACK(point, arg)
#endif

#endif  // SPOOL_UTIL_SYNC_POINT_H_
