// Private to the segment log: the definitions of Log's nested types and the helpers that
// the files implementing Log share. Included only by engine/log/log_*.cc.
//
// Log's code, one file per path a reader follows:
//   log_recovery.cc  construction, Open, recovery (segment headers, the scan of each
//                    segment, the torn-tail rule, the rewrite of a torn tail's survivors)
//                    and destruction
//   log_segments.cc  segment files: names, pre-formatting, activation, the switch to a
//                    fresh segment, recycling
//   log_write.cc     group commit: appends, the I/O workers, placement and writes, the
//                    rewrite after a failed write, the durable hook and the callbacks
//   log_read.cc      reads and scans of written records, health and statistics
//
// Thread-safety: Segment and Batch are Log's bookkeeping, changed under Log::mu_ except
// where a comment says otherwise.

#ifndef SPOOL_LOG_LOG_IMPL_H_
#define SPOOL_LOG_LOG_IMPL_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "io/file_system.h"
#include "log/format.h"
#include "log/log.h"
#include "spool/status.h"

namespace spool::log {

// Block-aligned memory for batch buffers and block reads (O_DIRECT needs it; buffered I/O
// does not care).
struct AlignedFree {
  void operator()(std::byte* p) const { std::free(p); }
};
using AlignedBuffer = std::unique_ptr<std::byte[], AlignedFree>;

// `size` bytes rounded up to kBlockSize, aligned to kBlockSize. Aborts when out of memory.
inline AlignedBuffer AllocateAligned(size_t size) {
  void* p = std::aligned_alloc(kBlockSize, AlignUp(size, kBlockSize));
  if (p == nullptr) std::abort();  // out of memory: nothing sensible to do
  return AlignedBuffer(static_cast<std::byte*>(p));
}

// "PATH offset N", for damage reports and errors.
inline std::string Describe(const std::string& path, uint64_t offset) {
  return path + " offset " + std::to_string(offset);
}

// A segment file of the shard. slot, path and size are fixed once the segment is in
// Log::segments_; `direct` is opened before any write through it.
struct Log::Segment {
  enum class State {
    kFree,    // zero header: ready for activation
    kActive,  // appends go here
    kSealed,  // holds data; never appended to again
    kBroken,  // failed activation or unknown state: not used again in this process
  };
  uint32_t slot = 0;
  std::string path;
  uint64_t size = 0;
  std::unique_ptr<io::File> file;         // buffered, read-write
  std::unique_ptr<io::File> direct;       // O_DIRECT | O_DSYNC, with LogOptions::direct_io
  uint64_t seq = 0;                       // 0 while free
  uint64_t end = kSegmentDataStart;       // end of acknowledged (valid) data
  uint64_t reserved = kSegmentDataStart;  // end of placed batches, >= end
  State state = State::kFree;

  io::File& writer() { return direct ? *direct : *file; }
};

// The two buffers of a segment scan's window (log_recovery.cc), each `size` bytes.
struct Log::ScanBuffers {
  AlignedBuffer bufs[2];
  size_t size = 0;
};

// One AppendAsync call's records in a batch and the callback that answers it.
struct Log::Waiter {
  AppendCallback done;
  uint32_t first = 0;  // index of its first record in Batch::records
  uint32_t count = 0;
  bool answered = false;  // its leading appender ran `done` already
};

// A batch buffer: one commit group from reservation to acknowledgement, then reused.
// Producers encode into their reserved bytes of buf without mu_; the worker that placed
// the batch writes it without mu_, and nobody else touches it until io_done.
struct Log::Batch {
  AlignedBuffer buf;
  size_t capacity = 0;
  size_t used = 0;  // bytes reserved
  // Producers still copying into buf: raised under mu_, lowered without it. The worker
  // placing the batch sets writer_waiting before it waits for zero; the producer that
  // lowers it to zero and sees writer_waiting takes mu_ once so that the worker's
  // condition is re-checked (both sides use sequentially consistent operations: one of
  // them sees the other).
  std::atomic<int> encoding{0};
  std::atomic<bool> writer_waiting{false};
  std::vector<uint32_t> offsets;
  std::vector<CommittedRecord> records;
  std::vector<Waiter> waiters;
  Status status;                    // of the placement and write
  std::vector<Location> locations;  // of the records, on success
  // Placement, by the worker that writes the batch.
  Segment* seg = nullptr;
  uint64_t offset = 0;  // in seg
  uint64_t total = 0;   // bytes written: used plus the padding record
  uint64_t batch_seq = 0;
  bool written = false;  // placed and written (else it failed before placement)
  bool io_done = false;  // the write completed (status says how)
  uint64_t io_us = 0;    // its latency

  void Reset() {
    status = Status::Ok();
    locations.clear();
    seg = nullptr;
    written = false;
    io_done = false;
    used = 0;
    encoding.store(0);
    writer_waiting.store(false);
    offsets.clear();
    records.clear();
    waiters.clear();
  }
};

}  // namespace spool::log

#endif  // SPOOL_LOG_LOG_IMPL_H_
