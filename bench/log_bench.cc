// Micro-benchmarks of the log's hot paths: checksum, record encode/decode, and the
// group-commit path end to end (Append on a real file system, so it includes the disk).
//
//   build/bench/spool_micro_bench --benchmark_filter='Record|Hash|Commit'

#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "io/file_system.h"
#include "log/log.h"
#include "log/record.h"

namespace spool::log {
namespace {

void BM_Hash64(benchmark::State& state) {
  std::string data(state.range(0), 'x');
  for (auto _ : state) benchmark::DoNotOptimize(Hash64(data.data(), data.size()));
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_Hash64)->Arg(64)->Arg(4096)->Arg(65536)->Arg(1 << 20);

void BM_RecordEncode(benchmark::State& state) {
  std::string payload(state.range(0), 'x');
  std::vector<std::byte> buf(RecordFootprint(payload.size()));
  for (auto _ : state) {
    EncodeRecord(buf.data(), RecordType::kMessage, {1, 2},
                 {reinterpret_cast<const std::byte*>(payload.data()), payload.size()});
    FinalizeRecord(buf.data(), 3, 4, 3, 0);
    benchmark::DoNotOptimize(buf.data());
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_RecordEncode)->Arg(0)->Arg(4096)->Arg(65536);

void BM_RecordDecodeVerify(benchmark::State& state) {
  std::string payload(state.range(0), 'x');
  std::vector<std::byte> buf(RecordFootprint(payload.size()));
  EncodeRecord(buf.data(), RecordType::kMessage, {1, 2},
               {reinterpret_cast<const std::byte*>(payload.data()), payload.size()});
  FinalizeRecord(buf.data(), 3, 4, 3, 0);
  for (auto _ : state) {
    RecordHeader h;
    bool ok = DecodeRecordHeader(buf.data(), 3, buf.size(), &h) == HeaderState::kValid &&
              PayloadIntact(h, {buf.data() + sizeof(RecordHeader), payload.size()});
    benchmark::DoNotOptimize(ok);
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_RecordDecodeVerify)->Arg(0)->Arg(4096)->Arg(65536);

// One synchronous Append per iteration from `threads` producers: the group-commit path,
// disk included. Run it on the disk you care about: SPOOL_BENCH_DIR=/path.
void BM_CommitPath(benchmark::State& state) {
  static std::unique_ptr<io::FileSystem> fs;
  static std::unique_ptr<Log> log;
  static std::string dir;
  if (state.thread_index() == 0) {
    const char* base = std::getenv("SPOOL_BENCH_DIR");
    dir = std::string(base ? base : ".") + "/commit-bench";
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    fs = std::move(io::NewFileSystem(io::Backend::kAuto)).value();
    LogOptions o;
    o.segment_size = 256ull << 20;
    log = std::move(Log::Open(fs.get(), dir, o, {}, nullptr)).value();
  }
  std::string payload(state.range(0), 'm');
  AppendRecord r;
  r.id = {static_cast<uint64_t>(state.thread_index()), 0};
  r.parts[0] = {reinterpret_cast<const std::byte*>(payload.data()), payload.size()};
  r.part_count = 1;
  for (auto _ : state) {
    ++r.id.lo;
    if (!log->Append({&r, 1}, nullptr).ok()) state.SkipWithError("append failed");
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) {
    log.reset();
    fs.reset();
    std::filesystem::remove_all(dir);
  }
}
BENCHMARK(BM_CommitPath)->Arg(4096)->Threads(1)->Threads(16)->UseRealTime()->MinTime(1.0);

}  // namespace
}  // namespace spool::log
