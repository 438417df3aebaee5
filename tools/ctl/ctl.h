// spool-ctl: the operator's tool for a spool's queue (docs/operations.md).
// tools/spool_ctl.cc is one line over CtlMain.
//
// Thread-safety: CtlMain is a program's main: call it once, from one thread.

#ifndef SPOOL_TOOLS_CTL_CTL_H_
#define SPOOL_TOOLS_CTL_CTL_H_

#include <cstdint>
#include <string_view>

namespace spool::ctl {

// Exit codes (documented in docs/operations.md and in `spool-ctl --help`).
inline constexpr int kExitOk = 0;
// An operation failed: an id that does not parse or names no message, a corrupt body,
// a state change the spool refused, a failed write to stdout or to an exported file.
inline constexpr int kExitFailed = 1;
// The command line is wrong: unknown command or option, missing argument, bad value.
inline constexpr int kExitUsage = 2;
// The spool cannot be reached: missing, not a spool, unreadable, held by a process that
// serves no control socket (for the mutating commands), or its control socket refuses
// this user.
inline constexpr int kExitCannotOpen = 3;

// Runs `spool-ctl` with the command line `argv`: reads message ids from stdin for an
// argument "-", writes results to stdout and errors to stderr (one line each). Returns
// the exit code.
int CtlMain(int argc, char** argv);

// Parses a duration made of one or more <number><unit> terms, unit one of s, m, h, d, w
// ("90s", "30m", "2h", "3d", "1h30m"), into milliseconds. False for anything else
// (a bare number, an unknown unit, an overflow).
bool ParseDuration(std::string_view text, int64_t* ms);

}  // namespace spool::ctl

#endif  // SPOOL_TOOLS_CTL_CTL_H_
