#include "spool/logging.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>
#include <string>

namespace spool {
namespace {

LogLevel LevelFromEnvironment() {
  const char* env = std::getenv("SPOOL_LOG_LEVEL");
  if (env == nullptr) return LogLevel::kInfo;
  std::string_view v(env);
  if (v == "debug") return LogLevel::kDebug;
  if (v == "warning") return LogLevel::kWarning;
  if (v == "error") return LogLevel::kError;
  return LogLevel::kInfo;
}

struct LogState {
  std::mutex mu;
  LogSink sink;  // guarded by mu
  std::atomic<int> min_level{static_cast<int>(LevelFromEnvironment())};
};

LogState& State() {
  static LogState* state = new LogState();  // never destroyed: usable during exit
  return *state;
}

void DefaultSink(LogLevel level, std::string_view message) {
  char stamp[32];
  std::time_t now = std::time(nullptr);
  std::tm tm;
  gmtime_r(&now, &tm);
  std::strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm);
  std::string line = std::string(stamp) + " spool " + std::string(LogLevelName(level)) + " " +
                     std::string(message) + "\n";
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace

std::string_view LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "DEBUG";
    case LogLevel::kInfo:
      return "INFO";
    case LogLevel::kWarning:
      return "WARNING";
    case LogLevel::kError:
      return "ERROR";
  }
  return "?";
}

void SetLogSink(LogSink sink) {
  LogState& s = State();
  std::lock_guard<std::mutex> lock(s.mu);
  s.sink = std::move(sink);
}

void SetMinLogLevel(LogLevel level) { State().min_level = static_cast<int>(level); }

void Log(LogLevel level, std::string_view message) {
  LogState& s = State();
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.sink) {
    s.sink(level, message);
    return;
  }
  if (static_cast<int>(level) >= s.min_level.load()) DefaultSink(level, message);
}

}  // namespace spool
