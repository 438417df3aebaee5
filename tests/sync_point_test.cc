#include "util/sync_point.h"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/time.h"

namespace spool {
namespace {

// Long enough for a thread to reach a point on a loaded machine; a test that passes ends
// long before.
const absl::Duration kPatience = absl::Seconds(20);

class SyncPointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!SyncPoint::kCompiledIn) GTEST_SKIP() << "built without SPOOL_SYNC_POINTS";
  }
  SyncPoint* sync_ = SyncPoint::GetInstance();
};

TEST_F(SyncPointTest, APointDoesNothingWhileProcessingIsDisabled) {
  int calls = 0;
  sync_->SetCallBack("SyncPointTest::Disabled:P", [&](void*) { ++calls; });
  SPOOL_SYNC_POINT("SyncPointTest::Disabled:P");
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(sync_->Passes("SyncPointTest::Disabled:P"), 0);
  sync_->Reset();
}

TEST_F(SyncPointTest, CallbackGetsTheArgumentAndPassesAreCounted) {
  ScopedSyncPoints scope;
  sync_->SetCallBack("SyncPointTest::Callback:P", [](void* arg) { ++*static_cast<int*>(arg); });
  int value = 0;
  SPOOL_SYNC_POINT_CALLBACK("SyncPointTest::Callback:P", &value);
  SPOOL_SYNC_POINT_CALLBACK("SyncPointTest::Callback:P", &value);
  EXPECT_EQ(value, 2);
  EXPECT_EQ(sync_->Passes("SyncPointTest::Callback:P"), 2);
  sync_->ClearCallBack("SyncPointTest::Callback:P");
  SPOOL_SYNC_POINT_CALLBACK("SyncPointTest::Callback:P", &value);
  EXPECT_EQ(value, 2);
  EXPECT_EQ(sync_->Passes("SyncPointTest::Callback:P"), 3);
  sync_->ClearTrace();
  EXPECT_EQ(sync_->Passes("SyncPointTest::Callback:P"), 0);
}

// A chain A -> B -> C over three threads: B and C are reached first and wait; once A is
// passed they pass in the order of the chain.
TEST_F(SyncPointTest, DependenciesOrderThreads) {
  ScopedSyncPoints scope;
  sync_->LoadDependency({{"SyncPointTest::Chain:A", "SyncPointTest::Chain:B"},
                         {"SyncPointTest::Chain:B", "SyncPointTest::Chain:C"}});
  std::mutex mu;
  std::vector<std::string> order;  // guarded by mu
  for (const char* point :
       {"SyncPointTest::Chain:A", "SyncPointTest::Chain:B", "SyncPointTest::Chain:C"}) {
    sync_->SetCallBack(point, [&, point](void*) {
      std::lock_guard<std::mutex> l(mu);
      order.push_back(point);
    });
  }
  std::thread c([] {
    SPOOL_SYNC_POINT("SyncPointTest::Chain:ReachedC");
    SPOOL_SYNC_POINT("SyncPointTest::Chain:C");
  });
  std::thread b([] {
    SPOOL_SYNC_POINT("SyncPointTest::Chain:ReachedB");
    SPOOL_SYNC_POINT("SyncPointTest::Chain:B");
  });
  EXPECT_TRUE(sync_->WaitUntilPassed("SyncPointTest::Chain:ReachedB", 1, kPatience));
  EXPECT_TRUE(sync_->WaitUntilPassed("SyncPointTest::Chain:ReachedC", 1, kPatience));
  // Both threads are at their points, or about to be: neither may pass before A.
  EXPECT_EQ(sync_->Passes("SyncPointTest::Chain:B"), 0);
  EXPECT_EQ(sync_->Passes("SyncPointTest::Chain:C"), 0);
  SPOOL_SYNC_POINT("SyncPointTest::Chain:A");
  b.join();
  c.join();
  EXPECT_EQ(order, (std::vector<std::string>{"SyncPointTest::Chain:A", "SyncPointTest::Chain:B",
                                             "SyncPointTest::Chain:C"}));
}

// A callback may block, and may pass points itself: here it holds its thread until the
// test has seen it run.
TEST_F(SyncPointTest, CallbackCanPassPointsAndWait) {
  ScopedSyncPoints scope;
  sync_->SetCallBack("SyncPointTest::Nested:Outer", [&](void*) {
    SPOOL_SYNC_POINT("SyncPointTest::Nested:InCallback");
    EXPECT_TRUE(sync_->WaitUntilPassed("SyncPointTest::Nested:Go", 1, kPatience));
  });
  std::thread t([] { SPOOL_SYNC_POINT("SyncPointTest::Nested:Outer"); });
  EXPECT_TRUE(sync_->WaitUntilPassed("SyncPointTest::Nested:InCallback", 1, kPatience));
  EXPECT_EQ(sync_->Passes("SyncPointTest::Nested:Outer"), 0);  // counted after its callback
  SPOOL_SYNC_POINT("SyncPointTest::Nested:Go");
  t.join();
  EXPECT_EQ(sync_->Passes("SyncPointTest::Nested:Outer"), 1);
}

TEST_F(SyncPointTest, WaitUntilPassedCountsAndTimesOut) {
  ScopedSyncPoints scope;
  EXPECT_FALSE(sync_->WaitUntilPassed("SyncPointTest::Wait:P", 1, absl::Milliseconds(10)));
  std::thread t([] {
    for (int i = 0; i < 3; ++i) SPOOL_SYNC_POINT("SyncPointTest::Wait:P");
  });
  EXPECT_TRUE(sync_->WaitUntilPassed("SyncPointTest::Wait:P", 3, kPatience));
  t.join();
  EXPECT_FALSE(sync_->WaitUntilPassed("SyncPointTest::Wait:P", 4, absl::Milliseconds(10)));
}

// A test that fails half-way must not leave a thread held at a point: disabling
// processing (ScopedSyncPoints' end) lets it go on, and ends waits for points.
TEST_F(SyncPointTest, ResetReleasesWaitingThreads) {
  std::atomic<bool> passed{false};
  std::thread held;
  {
    ScopedSyncPoints scope;
    sync_->LoadDependency({{"SyncPointTest::Reset:Never", "SyncPointTest::Reset:Held"}});
    held = std::thread([&] {
      SPOOL_SYNC_POINT("SyncPointTest::Reset:Reached");
      SPOOL_SYNC_POINT("SyncPointTest::Reset:Held");
      passed = true;
    });
    EXPECT_TRUE(sync_->WaitUntilPassed("SyncPointTest::Reset:Reached", 1, kPatience));
    EXPECT_FALSE(passed.load());
  }
  held.join();
  EXPECT_TRUE(passed.load());
  // Not counted: it was passed while processing was disabled.
  EXPECT_EQ(sync_->Passes("SyncPointTest::Reset:Held"), 0);
  EXPECT_FALSE(sync_->WaitUntilPassed("SyncPointTest::Reset:Held", 1, kPatience));
}

}  // namespace
}  // namespace spool
