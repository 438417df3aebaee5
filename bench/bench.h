// spool-bench: durable-write throughput and latency of the spool and of its alternatives
// on the disk under a directory (SPEC §6). tools/spool_bench.cc is one line over Main.
//
// Engines:
//   raw  - the disk's own limit: one writer, sequential batches of producers x record
//          bytes through io_uring, buffered + fdatasync or O_DIRECT + O_DSYNC (the better,
//          or --raw-mode). Each batch counts as `producers` messages.
//   log  - the segment log alone (no index): producers append records, group commit.
// Workloads: ingest (N producers, fixed size), latency (1 producer).

#ifndef SPOOL_BENCH_BENCH_H_
#define SPOOL_BENCH_BENCH_H_

#include <cstdint>
#include <string>
#include <vector>

#include "spool/status.h"
#include "util/histogram.h"

namespace spool::bench {

struct Config {
  std::string dir;
  std::string engine = "log";
  std::string workload = "ingest";
  uint64_t size = 4096;
  bool size_dist_email = false;
  int producers = 64;
  double seconds = 5;
  bool json = false;
  bool compare = false;
  std::string raw_mode = "best";  // best | buffered | direct
  std::string backend = "auto";   // auto | io_uring | posix
  bool direct_io = false;         // log engine: O_DIRECT | O_DSYNC segments
};

struct Result {
  std::string engine;
  std::string workload;
  uint64_t size = 0;
  int producers = 0;
  double seconds = 0;
  uint64_t msgs = 0;
  uint64_t payload_bytes = 0;  // message bytes acknowledged
  uint64_t fsyncs = 0;         // durable write operations (write + sync groups)
  uint64_t disk_bytes = 0;     // bytes written to disk in those operations
  double cpu_us = 0;           // user + system CPU of the process during the run
  Histogram latency_us;
  std::string note;  // e.g. which raw mode won

  double msgs_per_s() const { return seconds > 0 ? msgs / seconds : 0; }
  double mb_per_s() const { return seconds > 0 ? payload_bytes / seconds / 1e6 : 0; }
  std::string ToJson() const;
};

// Parses arguments; returns a usage error (kInvalidArgument) with a one-line message.
StatusOr<Config> ParseArgs(const std::vector<std::string>& args, bool* help);

// Runs one engine/workload.
StatusOr<Result> Run(const Config& config);

// spool-bench's main: exit codes 0 ok, 1 run failed, 2 usage.
int Main(int argc, char** argv);

}  // namespace spool::bench

#endif  // SPOOL_BENCH_BENCH_H_
