// What the command-line tools (spool-bench, spool-ctl, spool-fsck, spool-smtpd) share
// beside their option parser (tools/common/flags.h): the error line, text fit for a
// terminal, and the directories of a --spool value.
//
// Thread-safety: PrintError and DrawProgress write stderr in one call each; the other
// functions are pure.

#ifndef SPOOL_TOOLS_COMMON_CLI_H_
#define SPOOL_TOOLS_COMMON_CLI_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace spool::cli {

// Writes "TOOL: MESSAGE\n" to stderr in one write.
void PrintError(std::string_view tool, std::string_view message);

// `text` fit for a terminal line: control bytes and DEL as \xNN, other bytes as they are.
std::string Printable(std::string_view text);

// The directories of a --spool value "DIR[,DIR...]", split at every comma, into *dirs.
// Returns a usage error if a name is empty ("", "a,,b", "a,"), "" otherwise.
std::string ParseSpoolDirs(std::string_view list, std::vector<std::string>* dirs);

// Draws "TOOL: [#######.............]  35%  FIGURES" on stderr, redrawn in place (call it
// only when stderr is a terminal); erases the line once done >= total.
void DrawProgress(std::string_view tool, uint64_t done, uint64_t total, std::string_view figures);

}  // namespace spool::cli

#endif  // SPOOL_TOOLS_COMMON_CLI_H_
