// Entry points for spool's own tests and tools; not installed.

#ifndef SPOOL_CORE_INTERNAL_H_
#define SPOOL_CORE_INTERNAL_H_

#include <memory>

#include "io/file_system.h"
#include "spool/spool.h"

namespace spool::internal {

// Spool::Open over a given FileSystem (the fault-injecting one in tests); nullptr picks
// the one options.io_backend names. REQUIRES: fs outlives the spool.
StatusOr<std::unique_ptr<Spool>> OpenWithFileSystem(const Options& options, io::FileSystem* fs);

// Destroys `spool` without the clean-shutdown index flush, leaving the index as a crash
// would (whatever RocksDB had flushed on its own): the next open replays the log from the
// last checkpoint.
void CloseAsIfCrashed(std::unique_ptr<Spool> spool);

// Makes every later index write of shard `shard` (its position in options.dirs) fail with
// `status`, or work again with OK: an index failure without a real disk fault.
void FailIndexWritesForTest(Spool* spool, size_t shard, Status status);

}  // namespace spool::internal

#endif  // SPOOL_CORE_INTERNAL_H_
