// The workload driver of spool-bench and the interface its message engines implement.
// Internal to bench/: tools and tests use bench/bench.h.
//
// A run has three phases: warm-up (the engine reaches its steady state: segments recycled,
// memtables and directories in place; nothing is counted), measurement (`seconds` long:
// messages acknowledged in it are counted, their enqueue latency recorded, CPU and the
// engine's counters taken at both ends), and drain (producers stop; the consumers finish).
//
// Producers call Engine::Store synchronously, one message at a time (or, with
// Config::depth > 1, keep `depth` Engine::StoreAsync calls in flight, as an event loop
// serving that many sessions does) and hand every acknowledged message to a consumer thread
// through a per-producer mailbox (no futex on the producer's path: consumers poll). What consumers
// do depends on the workload:
//   ingest, latency: remove the message (Engine::Remove with durable = false: the
//                    engine's cheapest removal), only to keep the engine's disk use
//                    bounded; nothing of it is counted. (latency has no consumer by
//                    default: a lone producer writes a few MB/s.)
//   mixed:           deliver: read the body (Engine::Read), then either remove it durably
//                    (95%) or record a deferral with the next attempt hours away and keep
//                    it (5%, Engine::Defer).
// If consumers fall more than Config::max_backlog_bytes behind, producers wait for them
// (counted in the note as "backpressure"): the disk never fills up.

#ifndef SPOOL_BENCH_HARNESS_H_
#define SPOOL_BENCH_HARNESS_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <string_view>

#include "bench/bench.h"
#include "spool/status.h"

namespace spool::bench {

using Clock = std::chrono::steady_clock;

// A stored message as an engine names it: opaque to the harness.
struct Handle {
  uint64_t a = 0;
  uint64_t b = 0;
  uint64_t size = 0;  // body bytes
};

// Counters an engine reports; -1 where it cannot tell.
struct EngineCounters {
  int64_t fsyncs = -1;      // durable write operations (one write + sync group each)
  int64_t disk_bytes = -1;  // bytes written in those operations
};

// Space at the end of a run; -1 where it cannot tell.
struct SpaceReport {
  int64_t used_bytes = -1;  // what the engine occupies on disk
  int64_t live_bytes = -1;  // what the messages still stored need
  int64_t write_amp = -1;   // thousandths: bytes the engine wrote per byte of records
  std::string note;
};

// One engine under test. Thread-safety: Store, Remove, Read and Defer are called
// concurrently from many threads; Counters and Space from the driver thread.
class Engine {
 public:
  virtual ~Engine() = default;
  virtual std::string name() const = 0;
  // Stores `body` durably; returns once the engine says it is (an MTA's 250).
  virtual StatusOr<Handle> Store(std::string_view body, int producer) = 0;
  // The asynchronous form: `done` runs once the message is durable (or failed), on an
  // engine thread, and must not block. Returns false (and never calls `done`) if the
  // engine has no asynchronous store.
  using StoreCallback = std::function<void(const StatusOr<Handle>& handle)>;
  virtual bool StoreAsync(std::string_view body, int producer, StoreCallback done) {
    (void)body, (void)producer, (void)done;
    return false;
  }
  // Removes the message. durable: as the engine's removal that survives a crash;
  // otherwise its cheapest removal (housekeeping of the ingest workload).
  virtual Status Remove(const Handle& h, bool durable) = 0;
  // Reads the body back (verified where the engine verifies); returns its size.
  virtual StatusOr<uint64_t> Read(const Handle& h) = 0;
  // Records a failed delivery attempt with the next one hours away (durably).
  virtual Status Defer(const Handle& h) = 0;
  // False if the engine bounds its disk use by itself, so that ingest needs no removers.
  virtual bool NeedsRemoval() const { return true; }
  // True once the engine is in its steady state (the driver warms up until then, within
  // limits). Called from the driver thread.
  virtual bool WarmedUp() { return true; }
  virtual EngineCounters Counters() = 0;
  virtual SpaceReport Space() { return {}; }
  // Appended to the result's note.
  virtual std::string Describe() const { return ""; }
};

// Runs config.workload against `engine` and fills everything but engine-independent
// fields (workload, size, producers are filled by the caller).
StatusOr<Result> RunWorkload(const Config& config, Engine& engine);

// The engines (each in its own file).
StatusOr<std::unique_ptr<Engine>> NewLogEngine(const Config& config);
StatusOr<std::unique_ptr<Engine>> NewSpoolEngine(const Config& config);
StatusOr<std::unique_ptr<Engine>> NewRocksDbEngine(const Config& config);
StatusOr<std::unique_ptr<Engine>> NewFilesEngine(const Config& config);

// ---- Helpers shared by the engines ----------------------------------------------------

// User + system CPU time of the process, microseconds.
double CpuMicros();
// The machine's CPU time counters (/proc/stat, first line), in ticks: `steal` is time a
// virtual machine's CPUs were runnable but the hypervisor ran something else.
struct MachineTicks {
  uint64_t total = 0;
  uint64_t steal = 0;
};
MachineTicks ReadMachineTicks();
// Percent of the machine's CPU time stolen between two readings; -1 if unknown.
double StealPercent(const MachineTicks& a, const MachineTicks& b);
// Bytes this process caused to be written to storage (/proc/self/io write_bytes), or -1.
int64_t ProcessWriteBytes();
// Bytes allocated on disk under `path` (st_blocks), recursively; -1 on error.
int64_t DiskUsage(const std::string& path);
uint64_t Micros(Clock::duration d);
// Email-like body sizes: log-normal around 8 KiB (mean ~16 KiB), 256 B to 4 MiB.
uint64_t EmailSize(std::mt19937_64& rng);
inline constexpr uint64_t kMaxEmailSize = 4u << 20;
// Pseudo-random printable bytes (like base64 mail bodies: incompressible for LZ-style
// compressors beyond ~25%), the same for every run.
const std::string& BodyBytes();

}  // namespace spool::bench

#endif  // SPOOL_BENCH_HARNESS_H_
