// Shared test helpers: status assertions, message ids printed as text, temporary
// directories that clean up, seeded random data, byte comparisons with a short diff,
// whole-file reads and writes, a tool run as a subprocess. Every test includes this one
// header.

#ifndef SPOOL_TESTS_TEST_UTIL_H_
#define SPOOL_TESTS_TEST_UTIL_H_

#include <fcntl.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "spool/message_id.h"
#include "spool/status.h"

#define ASSERT_OK(expr)                                                    \
  do {                                                                     \
    const ::spool::Status spool_test_status_ = (expr);                     \
    ASSERT_TRUE(spool_test_status_.ok()) << spool_test_status_.ToString(); \
  } while (0)
#define EXPECT_OK(expr)                                                    \
  do {                                                                     \
    const ::spool::Status spool_test_status_ = (expr);                     \
    EXPECT_TRUE(spool_test_status_.ok()) << spool_test_status_.ToString(); \
  } while (0)

// `lhs = value` of a StatusOr expression, or a fatal test failure printing the status.
#define ASSERT_OK_AND_ASSIGN(lhs, expr) \
  ASSERT_OK_AND_ASSIGN_IMPL_(SPOOL_STATUS_CONCAT_(spool_test_so_, __LINE__), lhs, expr)
#define ASSERT_OK_AND_ASSIGN_IMPL_(tmp, lhs, expr)  \
  auto tmp = (expr);                                \
  ASSERT_TRUE(tmp.ok()) << tmp.status().ToString(); \
  lhs = std::move(tmp).value()

namespace spool {

// GoogleTest prints a message id in its text form, not as 16 raw bytes.
inline void PrintTo(const MessageId& id, std::ostream* os) { *os << id.ToString(); }

}  // namespace spool

namespace spool::testing {

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it on destruction.
class TempDir {
 public:
  TempDir() {
    std::string base = std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp";
    std::string templ = base + "/spool-test-XXXXXX";
    if (mkdtemp(templ.data()) == nullptr) std::abort();
    path_ = templ;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// `size` pseudo-random bytes from `seed`: the same seed gives the same bytes.
inline std::string RandomBytes(uint64_t seed, size_t size) {
  std::mt19937_64 rng(seed);
  std::string out(size, '\0');
  size_t i = 0;
  while (i + 8 <= size) {
    uint64_t v = rng();
    std::memcpy(&out[i], &v, 8);
    i += 8;
  }
  for (; i < size; ++i) out[i] = static_cast<char>(rng());
  return out;
}

// The seed of a test: SPOOL_TEST_SEED from the environment, else `fallback`. Tests print
// it on failure so a run can be repeated.
inline uint64_t TestSeed(uint64_t fallback) {
  const char* env = std::getenv("SPOOL_TEST_SEED");
  return env ? std::strtoull(env, nullptr, 10) : fallback;
}

// Bytes shown on each side of the first difference by SameBytes.
inline constexpr size_t kBytesDiffContext = 16;

// `bytes` as a C-style string literal body: printable ASCII as is, everything else escaped.
inline std::string EscapeBytes(std::string_view bytes) {
  std::string out;
  for (const char c : bytes) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c >= 0x20 && c < 0x7f) {
          out.push_back(c);
        } else {
          char hex[5];
          std::snprintf(hex, sizeof(hex), "\\x%02x", static_cast<unsigned char>(c));
          out += hex;
        }
    }
  }
  return out;
}

// Whether `got` and `want` hold the same bytes, for EXPECT_TRUE(SameBytes(got, want)).
// Unlike EXPECT_EQ on two strings, the failure message stays short whatever their sizes:
// both sizes, the offset of the first difference, and each side's bytes within
// kBytesDiffContext of it, escaped, with " | " where the difference starts:
//   sizes 70000 (got) and 70000 (want), first difference at offset 4096:
//     got:  ..."0123456789abcdef" | "x123456789abcdef"...
//     want: ..."0123456789abcdef" | "0123456789abcdef"...
inline ::testing::AssertionResult SameBytes(std::string_view got, std::string_view want) {
  if (got == want) return ::testing::AssertionSuccess();
  const size_t common = std::min(got.size(), want.size());
  const size_t diff =
      std::mismatch(got.begin(), got.begin() + common, want.begin()).first - got.begin();
  const size_t from = diff > kBytesDiffContext ? diff - kBytesDiffContext : 0;
  auto window = [&](std::string_view s) {
    const std::string_view after = s.substr(diff, kBytesDiffContext);
    return (from > 0 ? "...\"" : "\"") + EscapeBytes(s.substr(from, diff - from)) + "\" | \"" +
           EscapeBytes(after) + (diff + after.size() < s.size() ? "\"..." : "\"");
  };
  return ::testing::AssertionFailure()
         << "sizes " << got.size() << " (got) and " << want.size()
         << " (want), first difference at offset " << diff << ":\n  got:  " << window(got)
         << "\n  want: " << window(want);
}

// The whole content of a file ("" if it cannot be read).
inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Replaces the content of a file (creating it) with `data`.
inline void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

// What a finished subprocess left.
struct ProcessResult {
  int code = -1;  // its exit status; 128 + the signal if one ended it; -1 if it did not start
  std::string out;
  std::string err;
};

// Runs `binary` with `args` and waits for it: stdin from the file `stdin_path`, stdout and
// stderr through the files `output`.out and `output`.err. SPOOL_LOG_LEVEL is dropped from
// its environment, so that its stderr is its own.
inline ProcessResult RunProcess(const std::string& binary, const std::vector<std::string>& args,
                                const std::string& stdin_path, const std::string& output) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, stdin_path.c_str(), O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, (output + ".out").c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  posix_spawn_file_actions_addopen(&fa, 2, (output + ".err").c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  std::vector<std::string> argv_s = {binary};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (char** e = environ; *e != nullptr; ++e) {
    if (!std::string_view(*e).starts_with("SPOOL_LOG_LEVEL=")) envp.push_back(*e);
  }
  envp.push_back(nullptr);
  pid_t pid;
  ProcessResult r;
  const int rc = posix_spawn(&pid, binary.c_str(), &fa, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  EXPECT_EQ(rc, 0) << binary << ": " << std::strerror(rc);
  if (rc != 0) return r;
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = ReadFile(output + ".out");
  r.err = ReadFile(output + ".err");
  return r;
}

}  // namespace spool::testing

#endif  // SPOOL_TESTS_TEST_UTIL_H_
