// The io_uring FileSystem: a batch of writes is submitted as write SQEs linked
// (IOSQE_IO_LINK) to one IORING_OP_FSYNC(DATASYNC), so a group commit costs one submission
// and one wait instead of a pwrite per record plus an fdatasync.
//
// Everything off the data path (open, size, zero-fill, truncate, directories, space, locks)
// is inherited from PosixFileSystem; only WriteBatch, SyncData, Read and ReadBatch use rings.

#ifndef SPOOL_IO_URING_FILE_SYSTEM_H_
#define SPOOL_IO_URING_FILE_SYSTEM_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "io/file_system.h"
#include "io/posix_file_system.h"
#include "spool/status.h"
#include "util/mutex.h"

namespace spool::io {

// Thread-safe. Each call takes a ring of its own from a pool (creating one when the pool
// is empty) and gives it back when done, so concurrent callers never share a ring and a
// ring never carries another call's completions. Construct through NewFileSystem, which
// first checks that the kernel allows io_uring (ProbeUring); a ring that cannot be created
// later makes that call fail with the errno of io_uring_queue_init.
class UringFileSystem : public PosixFileSystem {
 public:
  // Submission queue entries of each ring: the most SQEs in flight per call. A batch with
  // more ops is submitted in rounds of at most this many.
  static constexpr unsigned kDefaultRingEntries = 64;
  // Idle rings kept for reuse; rings beyond this are closed when returned.
  static constexpr size_t kMaxIdleRings = 16;

  // REQUIRES: ring_entries >= 2 (room for a write linked to its fsync).
  explicit UringFileSystem(unsigned ring_entries = kDefaultRingEntries);
  ~UringFileSystem() override;

  std::string_view Name() const override { return "io_uring"; }

  // Ops are written as IORING_OP_WRITE SQEs. With Sync::kData the last round links every
  // write of the round to a final IORING_OP_FSYNC(DATASYNC), and the sync counts only if
  // its CQE is 0 and every write before it completed in full; earlier rounds (a batch
  // longer than the ring) complete before the last one is submitted. With Sync::kNone the
  // writes are independent SQEs (full queue depth: the O_DIRECT|O_DSYNC mode).
  // Short writes are continued and -ECANCELED links resubmitted; any other error fails the
  // batch after every SQE in flight has completed (the caller's buffers are then free). A
  // failed fsync is reported, never resubmitted.
  Status WriteBatch(File& file, std::span<const WriteOp> ops, Sync sync) override;
  // One IORING_OP_FSYNC(DATASYNC).
  Status SyncData(File& file) override;
  // IORING_OP_READ until `out` is full or end of file.
  Status Read(File& file, uint64_t offset, std::span<std::byte> out, size_t* bytes_read) override;
  // One IORING_OP_READ per op, a ring's worth in flight at once; short reads are
  // continued until the op is full or at end of file.
  Status ReadBatch(File& file, std::span<ReadOp> ops) override;

 private:
  class Ring;
  class RingLease;

  // A ring for one call: from the pool, or a new one (the error names `path`).
  StatusOr<std::unique_ptr<Ring>> AcquireRing(std::string_view path);
  // Returns `ring` to the pool, or closes it when the pool is full.
  void ReleaseRing(std::unique_ptr<Ring> ring);
  // The error for an io_uring_get_sqe that found no free SQE; discards the lease's ring.
  static Status NoSqe(RingLease& lease, std::string_view path);

  const unsigned ring_entries_;
  Mutex mu_;
  std::vector<std::unique_ptr<Ring>> idle_rings_ ABSL_GUARDED_BY(mu_);
};

}  // namespace spool::io

#endif  // SPOOL_IO_URING_FILE_SYSTEM_H_
