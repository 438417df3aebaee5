// spool-ctl's parts, private to tools/ctl/:
//   ctl.cc       the command line: global options, the command's, help, and the choice
//                of how to reach the spool (target.cc)
//   commands.cc  the commands: their options, help and what each runs
//   target.cc    the spool reached through its control socket, or opened here
//   format.cc    text for people: tables, a message, statistics, durations
//
// Thread-safety: spool-ctl runs on one thread.

#ifndef SPOOL_TOOLS_CTL_INTERNAL_H_
#define SPOOL_TOOLS_CTL_INTERNAL_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "spool/control.h"
#include "spool/metrics.h"
#include "spool/spool.h"
#include "spool/status.h"
#include "tools/common/cli.h"
#include "tools/common/flags.h"

namespace spool::ctl {

inline constexpr std::string_view kTool = "spool-ctl";

// ---- Output (format.cc) ----------------------------------------------------------------

// "spool-ctl: MESSAGE" on stderr.
void PrintError(std::string_view message);
// Writes to stdout (FinishOutput reports a failed write).
void Out(std::string_view text);
int64_t NowMs();
std::string Lower(std::string_view s);
// "2h5m", "3d4h", "45s": the two largest units, for people.
std::string FormatDuration(int64_t ms);
// The header line of `list`'s table, and a message's line in it.
std::string ListHeader();
std::string ListLine(const MessageInfo& m);
// `show`'s text.
std::string ShowText(const MessageInfo& m, int64_t now_ms);
// `stats`' text.
std::string StatsText(const Metrics& m);
// The Metrics of FormatStatsJson's text (what the control channel's stats carry), as far
// as StatsText needs them. Errors: kInvalidArgument (not such an object).
StatusOr<Metrics> MetricsFromJson(std::string_view json);

// ---- How the spool is reached (target.cc) ----------------------------------------------

// The spool a command works on: through the control socket of the process that holds it,
// or opened by spool-ctl itself. Bulk changes go through the control protocol either way
// (RunControlRequest in this process when opened here), so that they behave alike.
class Target {
 public:
  // Reached through the socket.
  explicit Target(std::unique_ptr<ControlClient> client) : client_(std::move(client)) {}
  // Opened here.
  explicit Target(std::unique_ptr<Spool> spool) : spool_(std::move(spool)) {}

  // The spool when opened here; null when reached through the socket.
  Spool* spool() const { return spool_.get(); }
  // Runs a control request, handing each response line but the last to `on_line`;
  // returns the last. Errors: those of ControlClient::Call.
  StatusOr<std::string> Call(std::string_view request,
                             const std::function<void(std::string_view line)>& on_line);

 private:
  std::unique_ptr<ControlClient> client_;
  std::unique_ptr<Spool> spool_;
};

// ---- Commands (commands.cc) ------------------------------------------------------------

struct OptionSpec {
  std::string_view name;  // "--queue"
  bool takes_value;
};

struct Args {
  std::map<std::string, std::string, std::less<>> options;  // name -> value ("" for flags)
  std::vector<std::string> positional;

  bool Has(std::string_view name) const { return options.find(name) != options.end(); }
  std::optional<std::string> Value(std::string_view name) const {
    auto it = options.find(name);
    if (it == options.end()) return std::nullopt;
    return it->second;
  }
};

// What a command runs once the spool is reached.
struct Context {
  std::string command;
  Target* target = nullptr;
  int64_t now_ms = 0;
};

using Runner = std::function<int(Context&)>;

struct Command {
  std::string_view name;
  bool mutating;
  // Whether it reads live data through the control socket when a process holds the spool
  // (list, show, stats); the others that do not mutate always open the spool read-only.
  bool live;
  std::string_view summary;  // the synopsis line
  std::string_view help;     // the rest of `COMMAND --help`
  std::vector<OptionSpec> options;
  // Checks the arguments (before the spool is reached) and returns what to run, or sets
  // *error to a usage error.
  std::function<Runner(const Args&, std::string* error)> plan;
};

const std::vector<Command>& Commands();

}  // namespace spool::ctl

#endif  // SPOOL_TOOLS_CTL_INTERNAL_H_
