// Operator log. The engine reports faults, fallbacks and recoveries here with their causes
// (paths, errno names); an MTA routes them into its own log by installing a sink.
//
// Thread-safety: SetLogSink and Log may be called from any thread. The sink is called
// from engine threads (writers, the prober) and must itself be thread-safe.

#ifndef SPOOL_LOGGING_H_
#define SPOOL_LOGGING_H_

#include <functional>
#include <string_view>

namespace spool {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

std::string_view LogLevelName(LogLevel level);

using LogSink = std::function<void(LogLevel level, std::string_view message)>;

// Replaces the sink; an empty function restores the default, which writes
// "2026-11-28T01:02:03Z spool WARNING message" lines to stderr for levels at or above
// the minimum level (kInfo, or SPOOL_LOG_LEVEL=debug|info|warning|error from the environment).
void SetLogSink(LogSink sink);

// Sets the minimum level of the default sink.
void SetMinLogLevel(LogLevel level);

void Log(LogLevel level, std::string_view message);

}  // namespace spool

#endif  // SPOOL_LOGGING_H_
