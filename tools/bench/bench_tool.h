// spool-bench's command line (docs/benchmarks.md): its options, the runs they ask for, and
// each result on stdout as a line of text, a JSON object or a row of the --compare table.
// The engines are bench/bench.h; tools/spool_bench.cc is one line over Main.
//
// Thread-safety: Main is a program's main: call it once, from one thread.

#ifndef SPOOL_TOOLS_BENCH_BENCH_TOOL_H_
#define SPOOL_TOOLS_BENCH_BENCH_TOOL_H_

namespace spool::bench {

// Exit codes.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;  // a run failed (with --compare: at least one)
inline constexpr int kExitUsage = 2;   // the command line is wrong

// Runs `spool-bench` with the command line `argv`. Returns the exit code.
int Main(int argc, char** argv);

}  // namespace spool::bench

#endif  // SPOOL_TOOLS_BENCH_BENCH_TOOL_H_
