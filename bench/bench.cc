#include "bench/bench.h"

#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include "io/file_system.h"
#include "log/format.h"
#include "log/log.h"
#include "spool/logging.h"

namespace spool::bench {
namespace {

using Clock = std::chrono::steady_clock;

double CpuMicros() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto us = [](const timeval& tv) { return tv.tv_sec * 1e6 + tv.tv_usec; };
  return us(ru.ru_utime) + us(ru.ru_stime);
}

uint64_t Micros(Clock::duration d) {
  return std::chrono::duration_cast<std::chrono::microseconds>(d).count();
}

// Email-like sizes: most messages a few KiB, a tail of large attachments (log-normal
// around 8 KiB, capped at 4 MiB).
uint64_t EmailSize(std::mt19937_64& rng) {
  std::lognormal_distribution<double> dist(9.0, 1.2);
  return std::clamp<uint64_t>(static_cast<uint64_t>(dist(rng)), 256, 4u << 20);
}

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

// ---- raw ---------------------------------------------------------------------------------

StatusOr<Result> RunRawMode(const Config& c, io::FileSystem* fs, bool direct, uint64_t batch) {
  const std::string path = c.dir + "/raw-bench.dat";
  const uint64_t file_size = std::max<uint64_t>(256ull << 20, batch * 64);
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
  r.note = direct ? "O_DIRECT+O_DSYNC" : "buffered+fdatasync";
  const size_t piece = 512u << 10;
  const auto deadline = Clock::now() + std::chrono::duration<double>(c.seconds);
  const double cpu0 = CpuMicros();
  const auto start = Clock::now();
  uint64_t offset = 0;
  while (Clock::now() < deadline) {
    if (offset + batch > file_size) offset = 0;
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
    SPOOL_RETURN_IF_ERROR(
        fs->WriteBatch(*file, {ops, n}, direct ? io::Sync::kNone : io::Sync::kData));
    r.latency_us.Record(Micros(Clock::now() - t0));
    offset += batch;
    ++r.fsyncs;
    r.disk_bytes += batch;
  }
  r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  r.cpu_us = CpuMicros() - cpu0;
  r.msgs = r.fsyncs * static_cast<uint64_t>(c.producers);
  r.payload_bytes = r.msgs * c.size;
  file.reset();
  fs->Unlink(path).IgnoreError();  // scratch file
  return r;
}

StatusOr<Result> RunRaw(const Config& c, io::FileSystem* fs) {
  // The batch a perfect group commit would write: every producer's record at once.
  const uint64_t batch = log::AlignUp(
      static_cast<uint64_t>(c.producers) * log::RecordFootprint(c.size) + 64, log::kBlockSize);
  if (c.raw_mode == "buffered") return RunRawMode(c, fs, false, batch);
  if (c.raw_mode == "direct") return RunRawMode(c, fs, true, batch);
  Config half = c;
  half.seconds = c.seconds / 2;
  SPOOL_ASSIGN_OR_RETURN(Result buffered, RunRawMode(half, fs, false, batch));
  StatusOr<Result> direct = RunRawMode(half, fs, true, batch);
  if (!direct.ok()) {
    buffered.note += " (O_DIRECT failed: " + direct.status().ToString() + ")";
    return buffered;
  }
  Result best = direct->mb_per_s() > buffered.mb_per_s() ? *direct : buffered;
  char other[96];
  std::snprintf(other, sizeof(other), "; other mode %.0f MB/s",
                std::min(direct->mb_per_s(), buffered.mb_per_s()));
  best.note += other;
  return best;
}

// ---- log ---------------------------------------------------------------------------------

StatusOr<Result> RunLog(const Config& c, io::FileSystem* fs) {
  const std::string dir = c.dir + "/log-bench";
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  SPOOL_RETURN_IF_ERROR(fs->CreateDir(dir));
  log::LogOptions o;
  o.direct_io = c.direct_io;
  o.spool_id = 1;
  SPOOL_ASSIGN_OR_RETURN(auto lg, log::Log::Open(fs, dir, o, {}, nullptr));

  // Start from the steady state: the pre-formatted segments are ready.
  for (int i = 0; i < 1000 && lg->Stats().segments_free < static_cast<uint64_t>(o.ready_segments);
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  // The bench keeps no data: a recycler frees sealed segments as they fill, so the run
  // measures the steady state (recycled segments, no zero-filling on the write path).
  std::atomic<bool> stop{false};
  std::thread recycler([&] {
    while (!stop.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      const uint64_t active = lg->ActiveSegment();
      for (uint64_t seq : lg->LiveSegments()) {
        if (seq + 1 < active) lg->Recycle(seq).IgnoreError();  // best effort in a bench
      }
    }
  });

  std::mutex mu;
  Result r;
  r.engine = "log";
  std::atomic<uint64_t> msgs{0}, bytes{0};
  std::atomic<bool> failed{false};
  Status first_error;
  const auto deadline = Clock::now() + std::chrono::duration<double>(c.seconds);
  const log::LogStats before = lg->Stats();
  const double cpu0 = CpuMicros();
  const auto start = Clock::now();
  std::vector<std::thread> threads;
  for (int p = 0; p < c.producers; ++p) {
    threads.emplace_back([&, p] {
      std::mt19937_64 rng(p + 1);
      std::string payload(c.size_dist_email ? (4u << 20) : c.size, 'm');
      Histogram local;
      uint64_t n = 0, b = 0, id = 0;
      while (Clock::now() < deadline && !failed.load()) {
        const uint64_t size = c.size_dist_email ? EmailSize(rng) : c.size;
        log::AppendRecord rec;
        rec.type = log::RecordType::kMessage;
        rec.id = {static_cast<uint64_t>(p), ++id};
        rec.parts[0] = {reinterpret_cast<const std::byte*>(payload.data()), size};
        rec.part_count = 1;
        const auto t0 = Clock::now();
        Status s = lg->Append({&rec, 1}, nullptr);
        if (!s.ok()) {
          std::lock_guard<std::mutex> l(mu);
          if (first_error.ok()) first_error = s;
          failed = true;
          break;
        }
        local.Record(Micros(Clock::now() - t0));
        ++n;
        b += size;
      }
      msgs += n;
      bytes += b;
      std::lock_guard<std::mutex> l(mu);
      r.latency_us.Merge(local);
    });
  }
  for (auto& t : threads) t.join();
  r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  r.cpu_us = CpuMicros() - cpu0;
  stop = true;
  recycler.join();
  if (!first_error.ok()) return first_error;
  const log::LogStats after = lg->Stats();
  r.msgs = msgs;
  r.payload_bytes = bytes;
  r.fsyncs = after.batches - before.batches;
  r.disk_bytes = after.bytes - before.bytes;
  r.note = c.direct_io ? "O_DIRECT+O_DSYNC" : "buffered+fdatasync";
  lg.reset();
  std::filesystem::remove_all(dir, ec);
  return r;
}

const char kUsage[] =
    "usage: spool-bench --dir DIR [--engine raw|log] [--workload ingest|latency]\n"
    "                   [--size BYTES | --size-dist email] [--producers N] [--seconds S]\n"
    "                   [--json] [--compare] [--raw-mode best|buffered|direct]\n"
    "                   [--direct-io] [--io-backend auto|io_uring|posix]\n"
    "\n"
    "Measures durable writes on the disk holding DIR (created if missing; the bench's\n"
    "files are removed afterwards).\n"
    "  --engine raw       the disk's limit: sequential batches of producers x size bytes,\n"
    "                     each made durable (buffered+fdatasync or O_DIRECT+O_DSYNC)\n"
    "  --engine log       spool's segment log alone: group commit of N producers\n"
    "  --workload ingest  N producers append --size byte messages (default)\n"
    "  --workload latency 1 producer, 4096-byte messages unless --size is given\n"
    "  --compare          run every engine and print a table with ratios to raw\n"
    "  --json             one JSON object per run on stdout\n"
    "  --direct-io        log engine: O_DIRECT + O_DSYNC segment writes\n";

}  // namespace

std::string Result::ToJson() const {
  char buf[1024];
  const double m = static_cast<double>(std::max<uint64_t>(msgs, 1));
  std::snprintf(buf, sizeof(buf),
                "{\"engine\":\"%s\",\"workload\":\"%s\",\"size\":%" PRIu64
                ",\"producers\":%d,\"msgs_per_s\":%.1f,\"MB_per_s\":%.2f,\"p50_us\":%" PRIu64
                ",\"p99_us\":%" PRIu64 ",\"p999_us\":%" PRIu64
                ",\"fsyncs_per_s\":%.1f,\"bytes_per_fsync\":%.0f,\"cpu_us_per_msg\":%.2f,"
                "\"seconds\":%.2f,\"note\":\"%s\"}",
                engine.c_str(), workload.c_str(), size, producers, msgs_per_s(), mb_per_s(),
                latency_us.Percentile(0.5), latency_us.Percentile(0.99),
                latency_us.Percentile(0.999), seconds > 0 ? fsyncs / seconds : 0.0,
                fsyncs ? static_cast<double>(disk_bytes) / fsyncs : 0.0, cpu_us / m, seconds,
                note.c_str());
  return buf;
}

StatusOr<Config> ParseArgs(const std::vector<std::string>& args, bool* help) {
  Config c;
  *help = false;
  bool size_given = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](std::string* out) -> Status {
      if (i + 1 >= args.size()) return InvalidArgumentError(a + " needs a value");
      *out = args[++i];
      return Status::Ok();
    };
    auto number = [&](double* out) -> Status {
      std::string v;
      SPOOL_RETURN_IF_ERROR(value(&v));
      char* end = nullptr;
      *out = std::strtod(v.c_str(), &end);
      if (end == v.c_str() || *end != '\0' || *out <= 0) {
        return InvalidArgumentError(a + " needs a positive number, not '" + v + "'");
      }
      return Status::Ok();
    };
    double d;
    std::string v;
    if (a == "--help" || a == "-h") {
      *help = true;
      return c;
    } else if (a == "--dir") {
      SPOOL_RETURN_IF_ERROR(value(&c.dir));
    } else if (a == "--engine") {
      SPOOL_RETURN_IF_ERROR(value(&c.engine));
      if (c.engine != "raw" && c.engine != "log") {
        return InvalidArgumentError("unknown engine '" + c.engine + "' (this build has raw, log)");
      }
    } else if (a == "--workload") {
      SPOOL_RETURN_IF_ERROR(value(&c.workload));
      if (c.workload != "ingest" && c.workload != "latency") {
        return InvalidArgumentError("unknown workload '" + c.workload +
                                    "' (this build has ingest, latency)");
      }
    } else if (a == "--size") {
      SPOOL_RETURN_IF_ERROR(number(&d));
      c.size = static_cast<uint64_t>(d);
      size_given = true;
    } else if (a == "--size-dist") {
      SPOOL_RETURN_IF_ERROR(value(&v));
      if (v != "email") return InvalidArgumentError("unknown size distribution '" + v + "'");
      c.size_dist_email = true;
    } else if (a == "--producers") {
      SPOOL_RETURN_IF_ERROR(number(&d));
      c.producers = static_cast<int>(d);
    } else if (a == "--seconds") {
      SPOOL_RETURN_IF_ERROR(number(&c.seconds));
    } else if (a == "--json") {
      c.json = true;
    } else if (a == "--compare") {
      c.compare = true;
    } else if (a == "--direct-io") {
      c.direct_io = true;
    } else if (a == "--raw-mode") {
      SPOOL_RETURN_IF_ERROR(value(&c.raw_mode));
      if (c.raw_mode != "best" && c.raw_mode != "buffered" && c.raw_mode != "direct") {
        return InvalidArgumentError("--raw-mode is best, buffered or direct");
      }
    } else if (a == "--io-backend") {
      SPOOL_RETURN_IF_ERROR(value(&c.backend));
      io::Backend b;
      if (!io::ParseBackend(c.backend, &b)) {
        return InvalidArgumentError("--io-backend is auto, io_uring or posix");
      }
    } else {
      return InvalidArgumentError("unknown argument '" + a + "'");
    }
  }
  if (c.dir.empty()) return InvalidArgumentError("--dir DIR is required");
  if (c.workload == "latency") {
    c.producers = 1;
    if (!size_given) c.size = 4096;
  }
  const uint64_t max_size = (8u << 20) - 2 * sizeof(log::RecordHeader);
  if (c.size > max_size) {
    return InvalidArgumentError("--size over " + std::to_string(max_size) +
                                " bytes needs streamed bodies, not in this build");
  }
  if (c.producers > 4096) return InvalidArgumentError("--producers is at most 4096");
  return c;
}

StatusOr<Result> Run(const Config& c) {
  io::Backend backend;
  io::ParseBackend(c.backend, &backend);
  SPOOL_ASSIGN_OR_RETURN(auto fs, io::NewFileSystem(backend));
  SPOOL_RETURN_IF_ERROR(fs->CreateDir(c.dir));
  Progress progress(c.engine + " " + c.workload, c.seconds);
  StatusOr<Result> r = c.engine == "raw" ? RunRaw(c, fs.get()) : RunLog(c, fs.get());
  if (r.ok()) {
    r->workload = c.workload;
    r->size = c.size_dist_email ? 0 : c.size;
    r->producers = c.producers;
  }
  return r;
}

int Main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  bool help = false;
  StatusOr<Config> config = ParseArgs(args, &help);
  if (help) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (!config.ok()) {
    std::fprintf(stderr, "spool-bench: %s (see --help)\n",
                 std::string(config.status().message()).c_str());
    return 2;
  }
  std::vector<Config> runs;
  if (config->compare) {
    for (const char* e : {"raw", "log"}) {
      Config c = *config;
      c.engine = e;
      runs.push_back(c);
    }
  } else {
    runs.push_back(*config);
  }
  std::vector<Result> results;
  for (const Config& c : runs) {
    StatusOr<Result> r = Run(c);
    if (!r.ok()) {
      std::fprintf(stderr, "spool-bench: %s engine failed: %s\n", c.engine.c_str(),
                   r.status().ToString().c_str());
      return 1;
    }
    if (c.json) {
      std::printf("%s\n", r->ToJson().c_str());
    } else if (!config->compare) {
      std::printf("%s %s size=%" PRIu64 " producers=%d: %.0f msgs/s, %.1f MB/s, p50 %" PRIu64
                  " us, p99 %" PRIu64 " us, p99.9 %" PRIu64
                  " us, %.0f fsyncs/s, %.0f bytes/fsync, %.1f cpu us/msg (%s)\n",
                  r->engine.c_str(), r->workload.c_str(), r->size, r->producers, r->msgs_per_s(),
                  r->mb_per_s(), r->latency_us.Percentile(0.5), r->latency_us.Percentile(0.99),
                  r->latency_us.Percentile(0.999), r->seconds > 0 ? r->fsyncs / r->seconds : 0.0,
                  r->fsyncs ? static_cast<double>(r->disk_bytes) / r->fsyncs : 0.0,
                  r->cpu_us / std::max<uint64_t>(r->msgs, 1), r->note.c_str());
    }
    std::fflush(stdout);
    results.push_back(std::move(*r));
  }
  if (config->compare && !config->json) {
    const Result& raw = results[0];
    std::printf("%-8s %12s %10s %9s %9s %9s %10s  %s\n", "engine", "msgs/s", "MB/s", "p50_us",
                "p99_us", "fsyncs/s", "vs raw", "note");
    for (const Result& r : results) {
      std::printf("%-8s %12.0f %10.1f %9" PRIu64 " %9" PRIu64 " %9.0f %9.0f%%  %s\n",
                  r.engine.c_str(), r.msgs_per_s(), r.mb_per_s(), r.latency_us.Percentile(0.5),
                  r.latency_us.Percentile(0.99), r.seconds > 0 ? r.fsyncs / r.seconds : 0.0,
                  raw.mb_per_s() > 0 ? 100 * r.mb_per_s() / raw.mb_per_s() : 0.0, r.note.c_str());
    }
  }
  return 0;
}

}  // namespace spool::bench
