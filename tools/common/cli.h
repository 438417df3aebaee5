// Helpers of the command-line tools (spool-ctl, spool-smtpd, spool-fsck), so that they
// read a --spool list and print an error line the same way.
//
// Thread-safety: PrintError writes stderr in one call; SplitDirs is a pure function.

#ifndef SPOOL_TOOLS_COMMON_CLI_H_
#define SPOOL_TOOLS_COMMON_CLI_H_

#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

namespace spool::cli {

// Writes "TOOL: MESSAGE\n" to stderr in one write.
inline void PrintError(std::string_view tool, std::string_view message) {
  std::string line(tool);
  line += ": ";
  line += message;
  line += '\n';
  std::fwrite(line.data(), 1, line.size(), stderr);
}

// The directories of a --spool value "DIR[,DIR...]", split at every comma. Empty names
// are kept (as "") for the caller to reject in its own words.
inline std::vector<std::string> SplitDirs(std::string_view list) {
  std::vector<std::string> dirs;
  size_t start = 0;
  for (;;) {
    const size_t comma = list.find(',', start);
    dirs.emplace_back(list.substr(start, comma - start));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return dirs;
}

}  // namespace spool::cli

#endif  // SPOOL_TOOLS_COMMON_CLI_H_
