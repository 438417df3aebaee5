#include "bench/bench.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <random>
#include <thread>

#include "bench/harness.h"
#include "io/file_system.h"
#include "log/format.h"

namespace spool::bench {
namespace {

// A progress line on stderr while a run lasts, only when stderr is a terminal.
class Progress {
 public:
  Progress(std::string label, double seconds) : label_(std::move(label)), seconds_(seconds) {
    if (!isatty(STDERR_FILENO)) return;
    thread_ = std::thread([this] {
      const auto start = Clock::now();
      while (!done_.load()) {
        const double t = std::chrono::duration<double>(Clock::now() - start).count();
        const int width = 30;
        const int filled = std::min(width, static_cast<int>(width * t / seconds_));
        std::fprintf(stderr, "\r%-28s [%s%s] %4.1fs", label_.c_str(),
                     std::string(filled, '#').c_str(), std::string(width - filled, ' ').c_str(), t);
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
      }
      std::fprintf(stderr, "\r%*s\r", 70, "");
    });
  }
  ~Progress() {
    done_ = true;
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::string label_;
  double seconds_;
  std::atomic<bool> done_{false};
  std::thread thread_;
};

// Mean of the email size distribution (the raw engine's record size for email sizes).
uint64_t MeanEmailSize() {
  std::mt19937_64 rng(7);
  const int n = 200000;
  double sum = 0;
  for (int i = 0; i < n; ++i) sum += static_cast<double>(EmailSize(rng));
  return static_cast<uint64_t>(sum / n);
}

// ---- raw ---------------------------------------------------------------------------------

StatusOr<Result> RunRawMode(const Config& c, io::FileSystem* fs, bool direct, uint64_t batch) {
  const std::string path = c.dir + "/raw-bench.dat";
  const int depth = std::min(c.raw_inflight, c.producers);
  const uint64_t slots = std::max<uint64_t>(64, (256ull << 20) / batch);
  const uint64_t file_size = slots * batch;
  {
    io::OpenOptions create;
    create.create = true;
    SPOOL_ASSIGN_OR_RETURN(auto f, fs->Open(path, create));
    SPOOL_RETURN_IF_ERROR(fs->ZeroFill(*f, file_size));
  }
  io::OpenOptions o;
  o.direct = direct;
  o.dsync = direct;
  SPOOL_ASSIGN_OR_RETURN(auto file, fs->Open(path, o));
  void* mem = std::aligned_alloc(log::kBlockSize, batch);
  std::memset(mem, 0xA5, batch);
  std::unique_ptr<void, decltype(&std::free)> buf(mem, &std::free);

  Result r;
  r.engine = "raw";
  char note[64];
  std::snprintf(note, sizeof(note), "%s, %d in flight",
                direct ? "O_DIRECT+O_DSYNC" : "buffered+fdatasync", depth);
  r.note = note;
  const size_t piece = 512u << 10;
  std::atomic<uint64_t> next_slot{0}, writes{0};
  std::atomic<bool> stop{false};
  std::mutex mu;
  Status first_error;
  const double cpu0 = CpuMicros();
  const MachineTicks ticks0 = ReadMachineTicks();
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration<double>(c.seconds);
  std::vector<std::thread> threads;
  for (int t = 0; t < depth; ++t) {
    threads.emplace_back([&] {
      Histogram local;
      while (!stop.load() && Clock::now() < deadline) {
        const uint64_t offset = next_slot.fetch_add(1) % slots * batch;
        io::WriteOp ops[64];
        size_t n = 0;
        if (direct) {
          const uint64_t p = std::max<uint64_t>(piece, log::AlignUp(batch / 64 + 1, 4096));
          for (uint64_t d = 0; d < batch; d += p) {
            ops[n++] = {offset + d, static_cast<char*>(mem) + d, std::min(p, batch - d)};
          }
        } else {
          ops[n++] = {offset, mem, batch};
        }
        const auto t0 = Clock::now();
        Status s = fs->WriteBatch(*file, {ops, n}, direct ? io::Sync::kNone : io::Sync::kData);
        if (!s.ok()) {
          std::lock_guard<std::mutex> l(mu);
          if (first_error.ok()) first_error = s;
          stop = true;
          break;
        }
        local.Record(Micros(Clock::now() - t0));
        writes.fetch_add(1);
      }
      std::lock_guard<std::mutex> l(mu);
      r.latency_us.Merge(local);
    });
  }
  for (auto& t : threads) t.join();
  r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  r.cpu_us = CpuMicros() - cpu0;
  r.steal_pct = StealPercent(ticks0, ReadMachineTicks());
  file.reset();
  fs->Unlink(path).IgnoreError();  // scratch file
  if (!first_error.ok()) return first_error;
  r.fsyncs = writes.load();
  r.disk_bytes = r.fsyncs * batch;
  r.msgs = r.fsyncs * static_cast<uint64_t>(c.producers);
  r.payload_bytes = r.msgs * c.size;
  return r;
}

StatusOr<Result> RunRaw(const Config& config) {
  io::Backend backend;
  io::ParseBackend(config.backend, &backend);
  SPOOL_ASSIGN_OR_RETURN(auto fs, io::NewFileSystem(backend));
  SPOOL_RETURN_IF_ERROR(fs->CreateDir(config.dir));
  Config c = config;
  std::string size_note;
  if (c.size_dist_email || c.workload == "mixed") {
    c.size = MeanEmailSize();
    size_note = "; records of the email mean size, " + std::to_string(c.size) + " bytes";
  }
  // The batch a perfect group commit would write: every producer's record at once.
  const uint64_t batch = log::AlignUp(
      static_cast<uint64_t>(c.producers) * log::RecordFootprint(c.size) + 64, log::kBlockSize);
  StatusOr<Result> r = InternalError("no raw mode");
  if (c.raw_mode == "buffered") {
    r = RunRawMode(c, fs.get(), false, batch);
  } else if (c.raw_mode == "direct") {
    r = RunRawMode(c, fs.get(), true, batch);
  } else {
    Config half = c;
    half.seconds = c.seconds / 2;
    SPOOL_ASSIGN_OR_RETURN(Result buffered, RunRawMode(half, fs.get(), false, batch));
    StatusOr<Result> direct = RunRawMode(half, fs.get(), true, batch);
    if (!direct.ok()) {
      buffered.note += " (O_DIRECT failed: " + direct.status().ToString() + ")";
      r = buffered;
    } else {
      Result best = direct->mb_per_s() > buffered.mb_per_s() ? *direct : buffered;
      char other[96];
      std::snprintf(other, sizeof(other), "; other mode %.0f MB/s",
                    std::min(direct->mb_per_s(), buffered.mb_per_s()));
      best.note += other;
      r = best;
    }
  }
  if (r.ok()) r->note += size_note;
  return r;
}

// ---- the message engines -------------------------------------------------------------------

StatusOr<Result> RunEngine(const Config& c) {
  std::error_code ec;
  std::unique_ptr<Engine> engine;
  if (c.engine == "log") {
    SPOOL_ASSIGN_OR_RETURN(engine, NewLogEngine(c));
  } else if (c.engine == "spool") {
    SPOOL_ASSIGN_OR_RETURN(engine, NewSpoolEngine(c));
  } else if (c.engine == "rocksdb") {
    SPOOL_ASSIGN_OR_RETURN(engine, NewRocksDbEngine(c));
  } else if (c.engine == "files") {
    SPOOL_ASSIGN_OR_RETURN(engine, NewFilesEngine(c));
  } else {
    return InvalidArgumentError("unknown engine '" + c.engine + "'");
  }
  return RunWorkload(c, *engine);
}

std::string JsonEscape(const std::string& s) {
  std::string out;
  for (char ch : s) {
    if (ch == '"' || ch == '\\') out += '\\';
    if (static_cast<unsigned char>(ch) < 0x20) continue;
    out += ch;
  }
  return out;
}

}  // namespace

std::string Result::ToJson() const {
  char buf[2048];
  std::snprintf(buf, sizeof(buf),
                "{\"engine\":\"%s\",\"workload\":\"%s\",\"size\":%" PRIu64
                ",\"producers\":%d,\"msgs_per_s\":%.1f,\"MB_per_s\":%.2f,\"p50_us\":%" PRIu64
                ",\"p99_us\":%" PRIu64 ",\"p999_us\":%" PRIu64
                ",\"fsyncs_per_s\":%.1f,\"bytes_per_fsync\":%.0f,\"cpu_us_per_msg\":%.2f,"
                "\"consumers\":%d,\"seconds\":%.2f,\"msgs\":%" PRIu64 ",\"consumed\":%" PRIu64
                ",\"deferred\":%" PRIu64 ",\"io_write_bytes\":%" PRId64
                ",\"space_used_bytes\":%" PRId64 ",\"space_live_bytes\":%" PRId64
                ",\"write_amp\":%.3f,\"depth\":%d,\"steal_pct\":%.1f,\"note\":\"%s\"}",
                engine.c_str(), workload.c_str(), size, producers, msgs_per_s(), mb_per_s(),
                latency_us.Percentile(0.5), latency_us.Percentile(0.99),
                latency_us.Percentile(0.999), fsyncs_per_s(), bytes_per_fsync(), cpu_us_per_msg(),
                consumers, seconds, msgs, consumed, deferred, io_write_bytes, space_used_bytes,
                space_live_bytes, write_amp, depth, steal_pct, JsonEscape(note).c_str());
  return buf;
}

StatusOr<Result> Run(const Config& c) {
  std::error_code ec;
  std::filesystem::create_directories(c.dir, ec);
  if (ec) return IoError("cannot create " + c.dir + ": " + ec.message());
  Progress progress(c.engine + " " + c.workload, c.seconds + c.warmup);
  StatusOr<Result> r = c.engine == "raw" ? RunRaw(c) : RunEngine(c);
  if (r.ok()) {
    r->engine = c.engine;
    r->workload = c.workload;
    r->size = c.size_dist_email ? 0 : c.size;
    r->producers = c.producers;
    r->depth = c.depth;
    if (c.engine == "raw") r->consumers = 0;
  }
  return r;
}

std::string CompareTable(const std::vector<Result>& results) {
  const Result* rocks = nullptr;
  const Result* raw = nullptr;
  for (const Result& r : results) {
    if (r.engine == "rocksdb") rocks = &r;
    if (r.engine == "raw") raw = &r;
  }
  auto ratio = [](double a, double b) { return b > 0 ? a / b : -1.0; };
  std::string out;
  char line[512];
  std::snprintf(line, sizeof(line), "%-8s %10s %8s %8s %8s %8s %9s %8s %7s %9s %9s %7s  %s\n",
                "engine", "msgs/s", "MB/s", "p50_us", "p99_us", "p999_us", "fsyncs/s", "B/fsync",
                "cpu_us", "x_rocksdb", "p99/rdb", "%raw", "note");
  out += line;
  for (const Result& r : results) {
    std::snprintf(line, sizeof(line),
                  "%-8s %10.0f %8.1f %8" PRIu64 " %8" PRIu64 " %8" PRIu64
                  " %9.0f %8.0f %7.1f %9.2f %9.2f %6.0f%%  %s\n",
                  r.engine.c_str(), r.msgs_per_s(), r.mb_per_s(), r.latency_us.Percentile(0.5),
                  r.latency_us.Percentile(0.99), r.latency_us.Percentile(0.999), r.fsyncs_per_s(),
                  r.bytes_per_fsync(), r.cpu_us_per_msg(),
                  rocks ? ratio(r.msgs_per_s(), rocks->msgs_per_s()) : -1.0,
                  rocks ? ratio(static_cast<double>(r.latency_us.Percentile(0.99)),
                                static_cast<double>(rocks->latency_us.Percentile(0.99)))
                        : -1.0,
                  raw ? 100 * ratio(r.mb_per_s(), raw->mb_per_s()) : -1.0, r.note.c_str());
    out += line;
  }
  return out;
}

}  // namespace spool::bench
