// ThreadSanitizer and memory that uninstrumented libraries hand between threads.
//
// Debian's librocksdb is not built with -fsanitize=thread. Its memtable publishes an entry
// written by one thread to readers on others with atomics inside the library, which TSan
// does not see; when spool code then reads the entry's bytes through an iterator's Slice,
// TSan reports a race with the (invisible) write. tests/tsan.supp cannot suppress that
// report: it has no RocksDB frame (the read is ours, the write's stack is unknown).
//
// Thread-safety: pure functions.

#ifndef SPOOL_UTIL_TSAN_H_
#define SPOOL_UTIL_TSAN_H_

#include <cstddef>
#include <string>
#include <string_view>

#if defined(__SANITIZE_THREAD__)
#define SPOOL_UTIL_TSAN_BUILD 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SPOOL_UTIL_TSAN_BUILD 1
#endif
#endif

#ifdef SPOOL_UTIL_TSAN_BUILD
extern "C" void AnnotateIgnoreReadsBegin(const char* file, int line);
extern "C" void AnnotateIgnoreReadsEnd(const char* file, int line);
#endif

namespace spool {

// The `size` bytes at `data`, owned by an uninstrumented library that synchronizes their
// hand-off itself (a RocksDB iterator's key or value), as a view that is safe to read:
// in a TSan build a copy in *scratch, made with TSan's checks off for this thread;
// otherwise the bytes themselves (no copy). Valid while both the bytes and *scratch are.
inline std::string_view LibraryOwnedBytes(const char* data, size_t size, std::string* scratch) {
#ifdef SPOOL_UTIL_TSAN_BUILD
  AnnotateIgnoreReadsBegin(__FILE__, __LINE__);
  scratch->assign(data, size);
  AnnotateIgnoreReadsEnd(__FILE__, __LINE__);
  return *scratch;
#else
  (void)scratch;
  return std::string_view(data, size);
#endif
}

}  // namespace spool

#endif  // SPOOL_UTIL_TSAN_H_
