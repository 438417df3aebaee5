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

constexpr const char* kEngines[] = {"raw", "log", "spool", "rocksdb", "files"};

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

const char kUsage[] =
    "usage: spool-bench --dir DIR [--engine spool|log|rocksdb|files|raw]\n"
    "                   [--workload ingest|mixed|latency] [--size BYTES | --size-dist email]\n"
    "                   [--producers N] [--depth D] [--consumers N] [--seconds S] [--warmup S]\n"
    "                   [--json] [--compare] [--raw-mode best|buffered|direct] [--raw-inflight N]\n"
    "                   [--direct-io|--buffered-io]\n"
    "                   [--io-backend auto|io_uring|posix] [--rocksdb-options STR]\n"
    "                   [--max-backlog BYTES]\n"
    "\n"
    "Measures durable writes on the disk holding DIR (created if missing; the bench's\n"
    "files are removed afterwards).\n"
    "  --engine spool     spool::Spool::Enqueue from N producers (the default)\n"
    "  --engine log       spool's segment log alone: group commit of N producers\n"
    "  --engine rocksdb   envelope + body Put into RocksDB with sync=true, WAL on\n"
    "  --engine files     one file per message: write + fsync + rename + directory fsync\n"
    "  --engine raw       the disk's limit: sequential batches of producers x size bytes,\n"
    "                     each made durable (buffered+fdatasync or O_DIRECT+O_DSYNC)\n"
    "  --workload ingest  N producers store --size byte messages (default); consumers\n"
    "                     remove them as they come, to bound the disk use (uncounted)\n"
    "  --workload latency 1 producer, 4096-byte messages unless --size is given\n"
    "  --workload mixed   email sizes; consumers read each message, remove 95%, defer 5%\n"
    "                     (kept); reports space used against live data\n"
    "  --producers N      producer threads (default 64)\n"
    "  --depth D          log, spool: each producer keeps D messages in flight through\n"
    "                     the asynchronous append (an event loop serving D sessions);\n"
    "                     1 (the default): one synchronous store at a time\n"
    "  --consumers N      consumer threads (default: ingest min(producers, 8), mixed\n"
    "                     as many as producers, latency none; 0: nothing is removed)\n"
    "  --seconds S        measured seconds per run (default 5; 8 with --compare)\n"
    "  --warmup S         uncounted seconds first (default 1; the spool engine warms up\n"
    "                     until it recycles segments, at most 5 s more)\n"
    "  --compare          run every engine and print a table with ratios to rocksdb and raw\n"
    "  --json             one JSON object per run on stdout (SPEC §6 fields and more)\n"
    "  --raw-mode M       raw: best (default), buffered or direct\n"
    "  --raw-inflight N   raw: batches in flight (default 4, the log's; 1: only the\n"
    "                     producers x size bytes that synchronous producers can have)\n"
    "  --direct-io        log, spool: O_DIRECT + O_DSYNC segment writes (the default)\n"
    "  --buffered-io      log, spool: buffered writes + fdatasync\n"
    "  --rocksdb-options  RocksDB options over the bench's tuned ones, e.g.\n"
    "                     \"enable_pipelined_write=false;write_buffer_size=67108864\"\n"
    "  --max-backlog B    producers wait when consumers are B body bytes behind (2 GiB)\n";

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

StatusOr<Config> ParseArgs(const std::vector<std::string>& args, bool* help) {
  Config c;
  *help = false;
  bool size_given = false;
  bool io_given = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](std::string* out) -> Status {
      if (i + 1 >= args.size()) return InvalidArgumentError(a + " needs a value");
      *out = args[++i];
      return Status::Ok();
    };
    auto number = [&](double* out, bool zero_ok) -> Status {
      std::string v;
      SPOOL_RETURN_IF_ERROR(value(&v));
      char* end = nullptr;
      *out = std::strtod(v.c_str(), &end);
      if (end == v.c_str() || *end != '\0' || *out < 0 || (*out == 0 && !zero_ok)) {
        return InvalidArgumentError(a + " needs a " + (zero_ok ? "non-negative" : "positive") +
                                    " number, not '" + v + "'");
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
      if (std::find_if(std::begin(kEngines), std::end(kEngines),
                       [&](const char* e) { return c.engine == e; }) == std::end(kEngines)) {
        return InvalidArgumentError("unknown engine '" + c.engine +
                                    "' (spool, log, rocksdb, files, raw)");
      }
    } else if (a == "--workload") {
      SPOOL_RETURN_IF_ERROR(value(&c.workload));
      if (c.workload != "ingest" && c.workload != "latency" && c.workload != "mixed") {
        return InvalidArgumentError("unknown workload '" + c.workload +
                                    "' (ingest, latency, mixed)");
      }
    } else if (a == "--size") {
      SPOOL_RETURN_IF_ERROR(number(&d, false));
      c.size = static_cast<uint64_t>(d);
      size_given = true;
    } else if (a == "--size-dist") {
      SPOOL_RETURN_IF_ERROR(value(&v));
      if (v != "email") return InvalidArgumentError("unknown size distribution '" + v + "'");
      c.size_dist_email = true;
    } else if (a == "--producers") {
      SPOOL_RETURN_IF_ERROR(number(&d, false));
      c.producers = static_cast<int>(d);
    } else if (a == "--depth") {
      SPOOL_RETURN_IF_ERROR(number(&d, false));
      c.depth = static_cast<int>(d);
    } else if (a == "--consumers") {
      SPOOL_RETURN_IF_ERROR(number(&d, true));
      c.consumers = static_cast<int>(d);
    } else if (a == "--seconds") {
      SPOOL_RETURN_IF_ERROR(number(&c.seconds, false));
      c.seconds_given = true;
    } else if (a == "--warmup") {
      SPOOL_RETURN_IF_ERROR(number(&c.warmup, true));
    } else if (a == "--json") {
      c.json = true;
    } else if (a == "--compare") {
      c.compare = true;
    } else if (a == "--direct-io" || a == "--buffered-io") {
      const std::string mode = a == "--direct-io" ? "direct" : "buffered";
      if (io_given && c.io_mode != mode) {
        return InvalidArgumentError("--direct-io and --buffered-io exclude each other");
      }
      c.io_mode = mode;
      io_given = true;
    } else if (a == "--raw-mode") {
      SPOOL_RETURN_IF_ERROR(value(&c.raw_mode));
      if (c.raw_mode != "best" && c.raw_mode != "buffered" && c.raw_mode != "direct") {
        return InvalidArgumentError("--raw-mode is best, buffered or direct");
      }
    } else if (a == "--raw-inflight") {
      SPOOL_RETURN_IF_ERROR(number(&d, false));
      if (d < 1 || d > 64) return InvalidArgumentError("--raw-inflight is 1 to 64");
      c.raw_inflight = static_cast<int>(d);
    } else if (a == "--io-backend") {
      SPOOL_RETURN_IF_ERROR(value(&c.backend));
      io::Backend b;
      if (!io::ParseBackend(c.backend, &b)) {
        return InvalidArgumentError("--io-backend is auto, io_uring or posix");
      }
    } else if (a == "--rocksdb-options") {
      SPOOL_RETURN_IF_ERROR(value(&c.rocksdb_options));
    } else if (a == "--max-backlog") {
      SPOOL_RETURN_IF_ERROR(number(&d, false));
      c.max_backlog_bytes = static_cast<uint64_t>(d);
    } else {
      return InvalidArgumentError("unknown argument '" + a + "'");
    }
  }
  if (c.dir.empty()) return InvalidArgumentError("--dir DIR is required");
  if (c.workload == "latency") {
    c.producers = 1;
    if (!size_given) c.size = 4096;
  }
  if (c.workload == "mixed" && size_given) {
    return InvalidArgumentError("--workload mixed uses the email size distribution, not --size");
  }
  if (c.workload == "mixed") c.size_dist_email = true;
  if (c.compare && !c.seconds_given) c.seconds = kCompareSeconds;
  const uint64_t max_size = (8u << 20) - 2 * sizeof(log::RecordHeader);
  if (c.size > max_size) {
    return InvalidArgumentError("--size over " + std::to_string(max_size) +
                                " bytes needs streamed bodies, not in this build");
  }
  if (c.producers > 4096) return InvalidArgumentError("--producers is at most 4096");
  if (c.depth < 1 || c.depth > 1024) return InvalidArgumentError("--depth is 1 to 1024");
  if (c.depth > 1 && c.engine != "log" && c.engine != "spool") {
    return InvalidArgumentError("--depth above 1 needs an asynchronous engine (log, spool)");
  }
  if (c.depth > 1 && c.compare) {
    return InvalidArgumentError(
        "--depth does not go with --compare (rocksdb and files "
        "have no asynchronous store)");
  }
  // A lone latency producer writes a few MB/s: nothing needs removing in a short run, and
  // a remover would put its own commits between the measured ones.
  // Ingest's consumers only remove (without waiting): more than 8 only add polling
  // wake-ups, which cost every engine CPU on a small machine. Mixed's are delivery agents
  // that read and remove durably: one per producer keeps up.
  if (c.consumers < 0) {
    c.consumers = c.workload == "latency" ? 0
                  : c.workload == "mixed" ? c.producers
                                          : std::min(c.producers, 8);
  }
  if (c.consumers > 4096) return InvalidArgumentError("--consumers is at most 4096");
  return c;
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
    for (const char* e : kEngines) {
      Config c = *config;
      c.engine = e;
      runs.push_back(c);
    }
  } else {
    runs.push_back(*config);
  }
  std::vector<Result> results;
  int rc = 0;
  for (const Config& c : runs) {
    StatusOr<Result> r = Run(c);
    if (!r.ok()) {
      std::fprintf(stderr, "spool-bench: %s engine failed: %s\n", c.engine.c_str(),
                   r.status().ToString().c_str());
      rc = 1;
      continue;  // --compare goes on with the other engines
    }
    if (c.json) {
      std::printf("%s\n", r->ToJson().c_str());
    } else if (!config->compare) {
      std::printf("%s %s size=%" PRIu64
                  " producers=%d depth=%d consumers=%d: %.0f msgs/s, %.1f MB/s, "
                  "p50 %" PRIu64 " us, p99 %" PRIu64 " us, p99.9 %" PRIu64
                  " us, %.0f fsyncs/s, %.0f bytes/fsync, %.1f cpu us/msg",
                  r->engine.c_str(), r->workload.c_str(), r->size, r->producers, r->depth,
                  r->consumers, r->msgs_per_s(), r->mb_per_s(), r->latency_us.Percentile(0.5),
                  r->latency_us.Percentile(0.99), r->latency_us.Percentile(0.999),
                  r->fsyncs_per_s(), r->bytes_per_fsync(), r->cpu_us_per_msg());
      if (r->space_used_bytes >= 0) {
        std::printf(", space %.1f MB for %.1f MB live", r->space_used_bytes / 1e6,
                    r->space_live_bytes / 1e6);
      }
      if (r->write_amp >= 0) std::printf(", write amp %.2f", r->write_amp);
      if (r->steal_pct >= 0) std::printf(", %.1f%% CPU stolen", r->steal_pct);
      if (r->io_write_bytes >= 0) {
        std::printf(
            ", %.2f disk bytes/payload byte",
            r->payload_bytes ? static_cast<double>(r->io_write_bytes) / r->payload_bytes : 0.0);
      }
      std::printf(" (%s)\n", r->note.c_str());
    }
    std::fflush(stdout);
    results.push_back(std::move(*r));
  }
  if (config->compare && !config->json) {
    std::printf("workload %s, size %s, %d producers, %.0f s per engine\n", config->workload.c_str(),
                config->size_dist_email ? "email" : std::to_string(config->size).c_str(),
                config->producers, config->seconds);
    std::fputs(CompareTable(results).c_str(), stdout);
  }
  return rc;
}

}  // namespace spool::bench
