// spool-bench's engines: durable-write throughput and latency of the spool and of its
// alternatives on the disk under a directory (docs/benchmarks.md). The command line is
// tools/bench/bench_tool.h.
//
// Engines:
//   raw     - the disk's own limit: sequential batches of producers x record bytes through
//             io_uring, up to 4 batches in flight (the log's depth; 1 for one producer;
//             --raw-inflight),
//             buffered + fdatasync or O_DIRECT + O_DSYNC (the better, or --raw-mode).
//             Each batch counts as `producers` messages.
//   log     - the segment log alone (no index, no envelope): group commit of N producers.
//   spool   - the real thing: spool::Spool::Enqueue of N producers into one shard.
//   rocksdb - the RocksDB-spool way: envelope + body Put with sync = true, WAL on.
//   files   - the Postfix/Exim way: one file per message, write + fsync + rename into a
//             hashed queue directory + fsync of that directory.
// Workloads (see bench/harness.h for what producers and consumers do):
//   ingest  - N producers, fixed size or --size-dist email; consumers remove the messages
//             to bound disk use, uncounted.
//   latency - 1 producer, 4 KiB messages unless --size; nothing removed.
//   mixed   - email sizes; consumers read every message, remove 95% and defer 5% (kept).
//
// Thread-safety: the functions are thread-compatible; a run starts its own threads.

#ifndef SPOOL_BENCH_BENCH_H_
#define SPOOL_BENCH_BENCH_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "spool/status.h"
#include "util/histogram.h"

namespace spool::bench {

// Seconds per engine of --compare when --seconds is not given: five engines plus warm-up
// and set-up take about a minute (the README's main command).
inline constexpr double kCompareSeconds = 8;
inline constexpr double kDefaultSeconds = 5;

// Every engine, in the order of --compare's runs.
inline constexpr std::string_view kEngines[] = {"raw", "log", "spool", "rocksdb", "files"};

struct Config {
  std::string dir;
  std::string engine = "spool";
  std::string workload = "ingest";
  uint64_t size = 4096;
  bool size_dist_email = false;
  int producers = 64;
  // Messages each producer keeps in flight (log and spool engines: asynchronous stores,
  // as an event loop serving `depth` sessions does); 1: one synchronous store at a time.
  int depth = 1;
  // Consumer threads (removers or delivery agents); -1: as many as producers.
  int consumers = -1;
  double seconds = kDefaultSeconds;
  bool seconds_given = false;
  // Uncounted time before the measurement (engines may extend it to reach steady state).
  double warmup = 1;
  bool json = false;
  bool compare = false;
  std::string raw_mode = "best";  // best | buffered | direct
  // raw engine: batches written concurrently. 4 is the log's max_inflight (the limit of the
  // same access pattern); 1 keeps exactly producers x size bytes unacknowledged, all that
  // N synchronous producers can have outstanding.
  int raw_inflight = 4;
  std::string backend = "auto";  // auto | io_uring | posix
  // log and spool engines: "direct" (O_DIRECT + O_DSYNC segments, the spool's default),
  // "buffered" (buffered writes + fdatasync).
  std::string io_mode = "direct";
  // rocksdb engine: RocksDB option string applied over the bench's tuned options
  // ("write_buffer_size=...;enable_pipelined_write=false"), see docs/benchmarks.md.
  std::string rocksdb_options;
  // Producers wait when the consumers are this many body bytes behind.
  uint64_t max_backlog_bytes = 2ull << 30;
};

struct Result {
  std::string engine;
  std::string workload;
  uint64_t size = 0;  // 0: email size distribution
  int producers = 0;
  int depth = 1;
  int consumers = 0;
  double seconds = 0;
  uint64_t msgs = 0;
  uint64_t payload_bytes = 0;  // message bytes acknowledged
  bool fsyncs_known = true;
  uint64_t fsyncs = 0;      // durable write operations (write + sync groups)
  uint64_t disk_bytes = 0;  // bytes written to disk in those operations
  double cpu_us = 0;        // user + system CPU of the process during the run
  // Percent of the machine's CPU time the hypervisor took for others during the run
  // (/proc/stat steal); -1 unknown. High steal makes CPU-bound engines look slow.
  double steal_pct = -1;
  Histogram latency_us;
  uint64_t consumed = 0;        // messages removed or delivered during the measurement
  uint64_t deferred = 0;        // of those, deferred and kept (mixed)
  int64_t io_write_bytes = -1;  // bytes the process sent to storage (/proc/self/io)
  int64_t space_used_bytes = -1;
  int64_t space_live_bytes = -1;
  double write_amp = -1;  // engine-reported bytes written per record byte, -1 unknown
  std::string note;       // e.g. which raw mode won

  double msgs_per_s() const { return seconds > 0 ? msgs / seconds : 0; }
  double mb_per_s() const { return seconds > 0 ? payload_bytes / seconds / 1e6 : 0; }
  double fsyncs_per_s() const { return !fsyncs_known ? -1 : seconds > 0 ? fsyncs / seconds : 0; }
  double bytes_per_fsync() const {
    return !fsyncs_known ? -1 : fsyncs ? static_cast<double>(disk_bytes) / fsyncs : 0;
  }
  double cpu_us_per_msg() const { return cpu_us / static_cast<double>(msgs ? msgs : 1); }
  // One line of JSON: the fields of docs/benchmarks.md, "The JSON line".
  std::string ToJson() const;
};

// Runs one engine/workload.
StatusOr<Result> Run(const Config& config);

// The --compare table: one row per result, ratios against the rocksdb and raw rows.
std::string CompareTable(const std::vector<Result>& results);

}  // namespace spool::bench

#endif  // SPOOL_BENCH_BENCH_H_
