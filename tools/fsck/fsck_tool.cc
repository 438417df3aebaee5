#include "tools/fsck/fsck_tool.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "fsck/fsck.h"
#include "spool/logging.h"
#include "spool/metrics.h"
#include "tools/common/cli.h"
#include "tools/common/flags.h"

namespace spool::fsck {
namespace {

constexpr char kTool[] = "spool-fsck";

std::string_view SeverityName(Severity s) {
  switch (s) {
    case Severity::kError:
      return "error";
    case Severity::kWarning:
      return "warning";
    case Severity::kNote:
      return "note";
  }
  return "error";
}

constexpr char kHelp[] =
    R"(Usage: spool-fsck --spool DIR[,DIR...] [--repair] [--rebuild-index] [--json]

Checks the files of a spool: every segment header and record checksum, torn tails,
the index against the log in both directions, duplicate ids, and what the index keeps
alive. A check opens the spool read-only and takes no lock: it runs beside the MTA.

  --spool DIR[,DIR...]  every shard of the spool, comma-separated
  --repair              fix what was found: truncate torn tails, quarantine damaged
                        messages (state corrupt, see spool-ctl list --state corrupt),
                        index unindexed records, drop dangling index entries. Needs the
                        spool to itself (stop the MTA first)
  --rebuild-index       replace the index with one rebuilt from the log (the old one is
                        kept as index.old-<time>); implies --repair
  --json                the report as one JSON object on stdout
  -h, --help            this text

Exit codes (as fsck(8); they add up):
  0   no errors
  1   errors found and corrected
  4   errors left uncorrected (a check without --repair that found errors)
  8   operational error: a shard cannot be opened (missing, not a spool, written by a
      newer format version, I/O error), or the spool is held by another process
  16  usage error
)";

std::string JsonOrNull(bool has, uint64_t v) { return has ? std::to_string(v) : "null"; }

std::string ReportJson(const Report& r) {
  size_t errors = 0, corrected = 0, warnings = 0, notes = 0;
  for (const Problem& p : r.problems) {
    if (p.severity == Severity::kError) ++errors;
    if (p.severity == Severity::kError && p.corrected) ++corrected;
    if (p.severity == Severity::kWarning) ++warnings;
    if (p.severity == Severity::kNote) ++notes;
  }
  std::string o = "{\"spool\":[";
  for (size_t i = 0; i < r.dirs.size(); ++i) o += (i ? "," : "") + JsonQuote(r.dirs[i]);
  o += "],\"mode\":" + JsonQuote(r.mode) + ",\"exit_code\":" + std::to_string(r.exit_code);
  o += ",\"errors\":" + std::to_string(errors) + ",\"corrected\":" + std::to_string(corrected) +
       ",\"uncorrected\":" + std::to_string(errors - corrected) +
       ",\"warnings\":" + std::to_string(warnings) + ",\"notes\":" + std::to_string(notes);
  char num[64];
  std::snprintf(num, sizeof(num), "%.3f", r.seconds);
  o += ",\"bytes_scanned\":" + std::to_string(r.bytes_scanned) + ",\"seconds\":" + num;
  std::snprintf(num, sizeof(num), "%.1f",
                r.seconds > 0 ? static_cast<double>(r.bytes_scanned) / 1e6 / r.seconds : 0.0);
  o += ",\"MB_per_s\":" + std::string(num) + ",\"shards\":[";
  for (size_t i = 0; i < r.shards.size(); ++i) {
    const ShardSummary& s = r.shards[i];
    o += (i ? ",{" : "{");
    o += "\"dir\":" + JsonQuote(s.dir) + ",\"shard\":" + std::to_string(s.shard) +
         ",\"checked\":" + (s.checked ? "true" : "false") +
         ",\"segments\":" + std::to_string(s.segments) +
         ",\"free_segments\":" + std::to_string(s.free_segments) +
         ",\"records\":" + std::to_string(s.records) +
         ",\"bytes_scanned\":" + std::to_string(s.bytes_scanned) +
         ",\"messages\":" + std::to_string(s.messages) +
         ",\"quarantined\":" + std::to_string(s.quarantined) +
         ",\"live_bytes\":" + std::to_string(s.live_bytes) +
         ",\"segment_bytes\":" + std::to_string(s.segment_bytes) +
         ",\"checkpoint\":{\"segment\":" + std::to_string(s.checkpoint_segment) +
         ",\"offset\":" + std::to_string(s.checkpoint_offset) + "}" +
         ",\"lock\":" + JsonQuote(s.lock) + "}";
  }
  o += "],\"problems\":[";
  for (size_t i = 0; i < r.problems.size(); ++i) {
    const Problem& p = r.problems[i];
    o += (i ? ",{" : "{");
    o += "\"kind\":" + JsonQuote(p.kind) + ",\"severity\":" + JsonQuote(SeverityName(p.severity)) +
         ",\"shard\":" + std::to_string(p.shard) + ",\"dir\":" + JsonQuote(p.dir) +
         ",\"segment\":" + JsonOrNull(p.segment != 0, p.segment) +
         ",\"path\":" + (p.path.empty() ? "null" : JsonQuote(p.path)) +
         ",\"offset\":" + JsonOrNull(p.has_offset, p.offset) +
         ",\"id\":" + (p.id.empty() ? "null" : JsonQuote(p.id)) +
         ",\"detail\":" + JsonQuote(p.detail) +
         ",\"corrected\":" + (p.corrected ? "true" : "false") +
         ",\"action\":" + (p.action.empty() ? "null" : JsonQuote(p.action)) + "}";
  }
  o += "]}\n";
  return o;
}

std::string ReportText(const Report& r) {
  std::string o;
  char line[512];
  for (const ShardSummary& s : r.shards) {
    if (!s.checked) continue;
    std::snprintf(
        line, sizeof(line),
        "%s (shard %u): %" PRIu64 " segments (%" PRIu64 " free), %" PRIu64
        " records, %.1f MB scanned; %" PRIu64 " messages (%" PRIu64 " quarantined); lock %s\n",
        s.dir.c_str(), s.shard, s.segments, s.free_segments, s.records,
        static_cast<double>(s.bytes_scanned) / 1e6, s.messages, s.quarantined, s.lock.c_str());
    o += line;
  }
  size_t errors = 0, corrected = 0, warnings = 0;
  for (const Problem& p : r.problems) {
    if (p.kind == "quarantined" && p.severity == Severity::kNote) continue;  // in the summary
    std::string where = p.dir;
    if (p.segment != 0) where += " segment " + std::to_string(p.segment);
    if (p.has_offset) where += " offset " + std::to_string(p.offset);
    if (!p.id.empty()) where += " id " + p.id;
    o += std::string(SeverityName(p.severity)) + " " + p.kind + ": " + where + ": " + p.detail;
    if (p.corrected) o += " [repaired: " + p.action + "]";
    o += "\n";
    if (p.severity == Severity::kError) ++errors;
    if (p.severity == Severity::kError && p.corrected) ++corrected;
    if (p.severity == Severity::kWarning) ++warnings;
  }
  std::snprintf(line, sizeof(line),
                "%zu errors (%zu corrected, %zu left), %zu warnings; %.1f MB in %.2f s "
                "(%.0f MB/s); exit code %d\n",
                errors, corrected, errors - corrected, warnings,
                static_cast<double>(r.bytes_scanned) / 1e6, r.seconds,
                r.seconds > 0 ? static_cast<double>(r.bytes_scanned) / 1e6 / r.seconds : 0.0,
                r.exit_code);
  o += line;
  return o;
}

void PrintError(std::string_view message) { cli::PrintError(kTool, message); }

// "[#######.............]  35%  712/2048 MB" on one terminal line, redrawn.
void DrawProgress(uint64_t done, uint64_t total) {
  cli::DrawProgress(kTool, done, total,
                    std::to_string(done >> 20) + "/" + std::to_string(total >> 20) + " MB");
}

}  // namespace

int FsckMain(int argc, char** argv) {
  FsckOptions options;
  bool json = false;
  std::optional<std::string> spool_arg;
  cli::Flags flags(kTool, kExitUsage);
  flags.Value("--spool", &spool_arg, cli::Repeat::kOnce)
      .Flag("--repair", &options.repair)
      .Flag("--rebuild-index", &options.rebuild_index)
      .Flag("--json", &json);
  switch (flags.Parse(argc, argv)) {
    case cli::Parsed::kOk:
      break;
    case cli::Parsed::kHelp:
      std::fwrite(kHelp, 1, sizeof(kHelp) - 1, stdout);
      return std::fflush(stdout) == 0 ? kExitClean : kExitOperational;
    case cli::Parsed::kUsageError:
      return kExitUsage;
  }
  if (!spool_arg) return flags.UsageError("--spool DIR[,DIR...] is needed");
  if (std::string error = cli::ParseSpoolDirs(*spool_arg, &options.dirs); !error.empty()) {
    return flags.UsageError(error);
  }
  if (std::set<std::string>(options.dirs.begin(), options.dirs.end()).size() !=
      options.dirs.size()) {
    return flags.UsageError("a directory is named twice in --spool");
  }
  // The library's own log lines would repeat what the report says; errors only.
  if (std::getenv("SPOOL_LOG_LEVEL") == nullptr) {
    SetLogSink([](LogLevel level, std::string_view message) {
      if (level >= LogLevel::kError) PrintError("spool log: " + std::string(message));
    });
  }
  if (::isatty(STDERR_FILENO)) options.progress = DrawProgress;
  const Report report = Fsck(options);
  for (const Problem& p : report.problems) {
    if (p.kind == "cannot_open" || p.kind == "locked") {
      PrintError((p.dir.empty() ? "" : p.dir + ": ") + p.detail);
    }
  }
  const std::string out = json ? ReportJson(report) : ReportText(report);
  std::fwrite(out.data(), 1, out.size(), stdout);
  if (std::fflush(stdout) != 0) {
    PrintError(std::string("writing to stdout: ") + std::strerror(errno));
    return report.exit_code | kExitOperational;
  }
  return report.exit_code;
}

}  // namespace spool::fsck
