// spool-fsck's command line (docs/operations.md, "spool-fsck"): its options, the report
// as text or as JSON on stdout, a progress bar on a terminal. The check and the repair are
// the library's (fsck/fsck.h); tools/spool_fsck.cc is one line over FsckMain.
//
// Thread-safety: FsckMain is a program's main: call it once, from one thread.

#ifndef SPOOL_TOOLS_FSCK_FSCK_TOOL_H_
#define SPOOL_TOOLS_FSCK_FSCK_TOOL_H_

#include "fsck/fsck.h"

namespace spool::fsck {

// The command line is wrong; the other exit codes, which add up as fsck(8)'s do, are the
// report's (fsck/fsck.h).
inline constexpr int kExitUsage = 16;

// Runs `spool-fsck` with the command line `argv`: the report on stdout, errors on stderr
// (one line each). Returns the exit code.
int FsckMain(int argc, char** argv);

}  // namespace spool::fsck

#endif  // SPOOL_TOOLS_FSCK_FSCK_TOOL_H_
