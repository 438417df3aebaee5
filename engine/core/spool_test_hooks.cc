// core/internal.h's hooks for tests: a close as a crash leaves the spool, and index
// write failures on demand.

#include <memory>
#include <utility>

#include "core/internal.h"
#include "core/spool_impl.h"

namespace spool::internal {

void CloseAsIfCrashed(std::unique_ptr<Spool> spool) {
  static_cast<SpoolImpl*>(spool.get())->SetCrashOnClose();
  spool.reset();
}

void FailIndexWritesForTest(Spool* spool, size_t shard, Status status) {
  static_cast<SpoolImpl*>(spool)->FailIndexWritesForTest(shard, std::move(status));
}

}  // namespace spool::internal
