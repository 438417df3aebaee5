// Shared test helpers: status assertions, temporary directories that clean up, seeded
// random data. Every test includes this one header.

#ifndef SPOOL_TESTS_TEST_UTIL_H_
#define SPOOL_TESTS_TEST_UTIL_H_

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>

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

}  // namespace spool::testing

#endif  // SPOOL_TESTS_TEST_UTIL_H_
