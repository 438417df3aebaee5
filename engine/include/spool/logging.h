// Operator log. The engine reports faults, fallbacks and recoveries here with their causes
// (paths, errno names); an MTA routes them into its own log by installing a sink.
//
// Thread-safety: every function may be called from any thread. The sink runs on the
// thread that logs: a spool's background threads (I/O workers, maintenance, worker), or
// the caller's own thread inside a spool call (Spool::Open, a read that meets damage).
// Calls to the sink are serialized (one at a time, under a process-wide lock), so it
// need not be reentrant; it must not call Log or SetLogSink (they would wait for that
// lock), and should be quick: every thread that logs waits for it.

#ifndef SPOOL_LOGGING_H_
#define SPOOL_LOGGING_H_

#include <functional>
#include <string_view>

namespace spool {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// "DEBUG", "INFO", "WARNING", "ERROR".
std::string_view LogLevelName(LogLevel level);

using LogSink = std::function<void(LogLevel level, std::string_view message)>;

// Replaces the sink, process-wide; an empty function restores the default, which writes
// "2026-11-28T01:02:03Z spool WARNING message" lines to stderr for levels at or above
// the minimum level (kInfo, or SPOOL_LOG_LEVEL=debug|info|warning|error from the
// environment). An installed sink receives every level, debug included, and filters
// itself. Once SetLogSink returns, the previous sink is no longer called.
void SetLogSink(LogSink sink);

// Sets the minimum level of the default sink (not of an installed one).
void SetMinLogLevel(LogLevel level);

// Hands `message` to the sink (the default one drops it below the minimum level).
void Log(LogLevel level, std::string_view message);

}  // namespace spool

#endif  // SPOOL_LOGGING_H_
