// Micro-benchmarks of the I/O backends (io/file_system.h).
//
// BM_WriteBatchSync/<backend>/<batch bytes>: one WriteBatch(..., Sync::kData) per
// iteration, the cost of a group commit: the batch is one contiguous op, as the segment
// writer appends records back to back, written sequentially into a pre-zero-filled 64 MiB
// file (wrapping around), so every write is a pure data overwrite as in a recycled
// segment. Reports bytes/s and syncs/s.
//
// The file lives in a temporary directory under $SPOOL_BENCH_DIR, else the current
// directory (not /tmp, which may be tmpfs, where a sync costs nothing): run it on the disk
// you want to measure.

#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "io/file_system.h"

namespace spool::io {
namespace {

constexpr uint64_t kFileBytes = uint64_t{64} << 20;

// A fresh directory, removed with its content on destruction.
class BenchDir {
 public:
  BenchDir() {
    const char* base = std::getenv("SPOOL_BENCH_DIR");
    std::string templ =
        std::string(base != nullptr && *base != '\0' ? base : ".") + "/spool-io-bench-XXXXXX";
    if (mkdtemp(templ.data()) != nullptr) path_ = templ;
  }
  ~BenchDir() {
    if (path_.empty()) return;
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);  // best effort
  }
  BenchDir(const BenchDir&) = delete;
  BenchDir& operator=(const BenchDir&) = delete;

  // Empty if the directory could not be created.
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

void BM_WriteBatchSync(benchmark::State& state, Backend backend) {
  const size_t batch_bytes = static_cast<size_t>(state.range(0));
  StatusOr<std::unique_ptr<FileSystem>> fs = NewFileSystem(backend);
  if (!fs.ok()) {
    state.SkipWithError(fs.status().ToString().c_str());
    return;
  }
  BenchDir dir;
  if (dir.path().empty()) {
    state.SkipWithError("cannot create a directory under $SPOOL_BENCH_DIR or .");
    return;
  }
  OpenOptions options;
  options.create = true;
  StatusOr<std::unique_ptr<File>> file = (*fs)->Open(dir.path() + "/segment", options);
  if (!file.ok()) {
    state.SkipWithError(file.status().ToString().c_str());
    return;
  }
  if (Status status = (*fs)->ZeroFill(**file, kFileBytes); !status.ok()) {
    state.SkipWithError(status.ToString().c_str());
    return;
  }
  const std::string batch(batch_bytes, 'x');

  uint64_t offset = 0;
  for (auto _ : state) {
    if (offset + batch_bytes > kFileBytes) offset = 0;
    const WriteOp op{offset, batch.data(), batch.size()};
    if (Status status = (*fs)->WriteBatch(**file, std::span(&op, 1), Sync::kData); !status.ok()) {
      state.SkipWithError(status.ToString().c_str());
      break;
    }
    offset += batch_bytes;
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(batch_bytes));
  state.counters["syncs/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

BENCHMARK_CAPTURE(BM_WriteBatchSync, posix, Backend::kPosix)
    ->Arg(4 << 10)
    ->Arg(64 << 10)
    ->Arg(1 << 20)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_WriteBatchSync, io_uring, Backend::kUring)
    ->Arg(4 << 10)
    ->Arg(64 << 10)
    ->Arg(1 << 20)
    ->UseRealTime();

}  // namespace
}  // namespace spool::io
