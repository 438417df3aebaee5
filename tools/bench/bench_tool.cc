#include "tools/bench/bench_tool.h"

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "bench/bench.h"
#include "io/file_system.h"
#include "log/format.h"
#include "tools/common/flags.h"

namespace spool::bench {
namespace {

constexpr char kTool[] = "spool-bench";

constexpr char kHelp[] =
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
    "  --json             one JSON object per run on stdout (docs/benchmarks.md)\n"
    "  --raw-mode M       raw: best (default), buffered or direct\n"
    "  --raw-inflight N   raw: batches in flight (default 4, the log's; 1: only the\n"
    "                     producers x size bytes that synchronous producers can have)\n"
    "  --direct-io        log, spool: O_DIRECT + O_DSYNC segment writes (the default)\n"
    "  --buffered-io      log, spool: buffered writes + fdatasync\n"
    "  --rocksdb-options  RocksDB options over the bench's tuned ones, e.g.\n"
    "                     \"enable_pipelined_write=false;write_buffer_size=67108864\"\n"
    "  --max-backlog B    producers wait when consumers are B body bytes behind (2 GiB)\n";

// Declares `option`, a number (positive, or with `zero_ok` non-negative) that goes to
// `take`, which may refuse it with a usage error of its own.
void DeclareNumber(cli::Flags* flags, std::string_view option, bool zero_ok,
                   std::function<std::string(double)> take) {
  flags->Value(option, [option = std::string(option), zero_ok, take](const std::string& v) {
    char* end = nullptr;
    const double d = std::strtod(v.c_str(), &end);
    if (end == v.c_str() || *end != '\0' || d < 0 || (d == 0 && !zero_ok)) {
      return option + " needs a " + (zero_ok ? "non-negative" : "positive") + " number, not '" + v +
             "'";
    }
    return take(d);
  });
}

// Checks a value against the values an option may have: `error` if it is none of them.
cli::Setter OneOf(std::string* out, std::vector<std::string_view> allowed,
                  std::function<std::string(const std::string&)> error) {
  return [out, allowed = std::move(allowed), error = std::move(error)](const std::string& v) {
    for (std::string_view a : allowed) {
      if (v == a) {
        *out = v;
        return std::string();
      }
    }
    return error(v);
  };
}

// Reads the command line into *config, checked and with its defaults filled in. Returns
// the exit code when there is nothing to run: --help, or a usage error (printed).
std::optional<int> ParseCommandLine(int argc, char** argv, Config* config) {
  Config& c = *config;
  bool size_given = false;
  bool direct_io = false;
  bool buffered_io = false;
  const auto store = [](auto* out) {
    return [out](double d) {
      *out = static_cast<std::remove_pointer_t<decltype(out)>>(d);
      return std::string();
    };
  };
  cli::Flags flags(kTool, kExitUsage);
  flags.Value("--dir", &c.dir);
  flags.Value(
      "--engine",
      OneOf(&c.engine, {std::begin(kEngines), std::end(kEngines)}, [](const std::string& v) {
        return "unknown engine '" + v + "' (spool, log, rocksdb, files, raw)";
      }));
  flags.Value("--workload",
              OneOf(&c.workload, {"ingest", "latency", "mixed"}, [](const std::string& v) {
                return "unknown workload '" + v + "' (ingest, latency, mixed)";
              }));
  DeclareNumber(&flags, "--size", false, [&](double d) {
    c.size = static_cast<uint64_t>(d);
    size_given = true;
    return std::string();
  });
  flags.Value("--size-dist", [&](const std::string& v) {
    if (v != "email") return "unknown size distribution '" + v + "'";
    c.size_dist_email = true;
    return std::string();
  });
  DeclareNumber(&flags, "--producers", false, store(&c.producers));
  DeclareNumber(&flags, "--depth", false, store(&c.depth));
  DeclareNumber(&flags, "--consumers", true, store(&c.consumers));
  DeclareNumber(&flags, "--seconds", false, [&](double d) {
    c.seconds = d;
    c.seconds_given = true;
    return std::string();
  });
  DeclareNumber(&flags, "--warmup", true, store(&c.warmup));
  flags.Flag("--json", &c.json).Flag("--compare", &c.compare);
  flags.Flag("--direct-io", &direct_io).Flag("--buffered-io", &buffered_io);
  flags.Value("--raw-mode",
              OneOf(&c.raw_mode, {"best", "buffered", "direct"}, [](const std::string&) {
                return std::string("--raw-mode is best, buffered or direct");
              }));
  DeclareNumber(&flags, "--raw-inflight", false, [&](double d) {
    if (d < 1 || d > 64) return std::string("--raw-inflight is 1 to 64");
    c.raw_inflight = static_cast<int>(d);
    return std::string();
  });
  flags.Value("--io-backend", [&](const std::string& v) {
    io::Backend b;
    if (!io::ParseBackend(v, &b)) return std::string("--io-backend is auto, io_uring or posix");
    c.backend = v;
    return std::string();
  });
  flags.Value("--rocksdb-options", &c.rocksdb_options);
  DeclareNumber(&flags, "--max-backlog", false, store(&c.max_backlog_bytes));
  switch (flags.Parse(argc, argv)) {
    case cli::Parsed::kOk:
      break;
    case cli::Parsed::kHelp:
      std::fputs(kHelp, stdout);
      return kExitOk;
    case cli::Parsed::kUsageError:
      return kExitUsage;
  }
  if (direct_io && buffered_io) {
    return flags.UsageError("--direct-io and --buffered-io exclude each other");
  }
  if (buffered_io) c.io_mode = "buffered";
  if (c.dir.empty()) return flags.UsageError("--dir DIR is required");
  if (c.workload == "latency") {
    c.producers = 1;
    if (!size_given) c.size = 4096;
  }
  if (c.workload == "mixed" && size_given) {
    return flags.UsageError("--workload mixed uses the email size distribution, not --size");
  }
  if (c.workload == "mixed") c.size_dist_email = true;
  if (c.compare && !c.seconds_given) c.seconds = kCompareSeconds;
  const uint64_t max_size = (8u << 20) - 2 * sizeof(log::RecordHeader);
  if (c.size > max_size) {
    return flags.UsageError("--size over " + std::to_string(max_size) +
                            " bytes needs streamed bodies, not in this build");
  }
  if (c.producers > 4096) return flags.UsageError("--producers is at most 4096");
  if (c.depth < 1 || c.depth > 1024) return flags.UsageError("--depth is 1 to 1024");
  if (c.depth > 1 && c.engine != "log" && c.engine != "spool") {
    return flags.UsageError("--depth above 1 needs an asynchronous engine (log, spool)");
  }
  if (c.depth > 1 && c.compare) {
    return flags.UsageError(
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
  if (c.consumers > 4096) return flags.UsageError("--consumers is at most 4096");
  return std::nullopt;
}

}  // namespace

int Main(int argc, char** argv) {
  Config config;
  if (std::optional<int> exit_code = ParseCommandLine(argc, argv, &config)) return *exit_code;
  std::vector<Config> runs;
  if (config.compare) {
    for (std::string_view e : kEngines) {
      Config c = config;
      c.engine = e;
      runs.push_back(c);
    }
  } else {
    runs.push_back(config);
  }
  std::vector<Result> results;
  int rc = kExitOk;
  for (const Config& c : runs) {
    StatusOr<Result> r = Run(c);
    if (!r.ok()) {
      std::fprintf(stderr, "spool-bench: %s engine failed: %s\n", c.engine.c_str(),
                   r.status().ToString().c_str());
      rc = kExitFailed;
      continue;  // --compare goes on with the other engines
    }
    if (c.json) {
      std::printf("%s\n", r->ToJson().c_str());
    } else if (!config.compare) {
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
  if (config.compare && !config.json) {
    std::printf("workload %s, size %s, %d producers, %.0f s per engine\n", config.workload.c_str(),
                config.size_dist_email ? "email" : std::to_string(config.size).c_str(),
                config.producers, config.seconds);
    std::fputs(CompareTable(results).c_str(), stdout);
  }
  return rc;
}

}  // namespace spool::bench
