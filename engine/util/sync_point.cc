#include "util/sync_point.h"

#include <utility>

namespace spool {

SyncPoint* SyncPoint::GetInstance() {
  static SyncPoint* const instance = new SyncPoint();
  return instance;
}

void SyncPoint::LoadDependency(const std::vector<Dependency>& dependencies) {
  MutexLock l(&mu_);
  predecessors_.clear();
  for (const Dependency& d : dependencies) predecessors_[d.successor].push_back(d.predecessor);
  passes_.clear();
}

void SyncPoint::SetCallBack(std::string_view point, std::function<void(void* arg)> callback) {
  MutexLock l(&mu_);
  callbacks_.insert_or_assign(std::string(point), std::move(callback));
}

void SyncPoint::ClearCallBack(std::string_view point) {
  MutexLock l(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return callbacks_running_ == 0; };
  mu_.Await(absl::Condition(&idle));
  if (auto it = callbacks_.find(point); it != callbacks_.end()) callbacks_.erase(it);
}

void SyncPoint::ClearAllCallBacks() {
  MutexLock l(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return callbacks_running_ == 0; };
  mu_.Await(absl::Condition(&idle));
  callbacks_.clear();
}

void SyncPoint::EnableProcessing() {
  MutexLock l(&mu_);
  enabled_.store(true);
}

void SyncPoint::DisableProcessing() {
  MutexLock l(&mu_);
  enabled_.store(false);
}

void SyncPoint::ClearTrace() {
  MutexLock l(&mu_);
  passes_.clear();
}

int SyncPoint::Passes(std::string_view point) {
  MutexLock l(&mu_);
  auto it = passes_.find(point);
  return it == passes_.end() ? 0 : it->second;
}

bool SyncPoint::WaitUntilPassed(std::string_view point, int times, absl::Duration timeout) {
  MutexLock l(&mu_);
  auto passed = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = passes_.find(point);
    return it != passes_.end() && it->second >= times;
  };
  auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return passed() || !enabled_.load(); };
  mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
  return passed();
}

void SyncPoint::Reset() {
  DisableProcessing();
  LoadDependency({});
  ClearAllCallBacks();
  ClearTrace();
}

bool SyncPoint::PredecessorsPassed(std::string_view point) const {
  auto it = predecessors_.find(point);
  if (it == predecessors_.end()) return true;
  for (const std::string& predecessor : it->second) {
    if (passes_.find(predecessor) == passes_.end()) return false;
  }
  return true;
}

void SyncPoint::Process(std::string_view point, void* arg) {
  std::function<void(void*)> callback;
  {
    MutexLock l(&mu_);
    auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !enabled_.load() || PredecessorsPassed(point);
    };
    mu_.Await(absl::Condition(&ready));
    if (!enabled_.load()) return;
    if (auto it = callbacks_.find(point); it != callbacks_.end()) {
      callback = it->second;
      ++callbacks_running_;
    }
  }
  if (callback) callback(arg);
  MutexLock l(&mu_);
  if (callback) --callbacks_running_;
  ++passes_[std::string(point)];
}

}  // namespace spool
