// Helpers of the tests that run a Spool in-process: small options and a plain envelope.
// Tests that need other sizes on purpose (crash_test's torture, tests/faults/) keep their
// own.

#ifndef SPOOL_TESTS_SPOOL_TEST_UTIL_H_
#define SPOOL_TESTS_SPOOL_TEST_UTIL_H_

#include <string>
#include <utility>
#include <vector>

#include "spool/spool.h"

namespace spool::testing {

// Options for a spool under test: 1 MiB segments and 64 KiB stream chunks, so that a
// little data fills segments and streams bodies; 1 MiB of free space kept; checkpoints
// every 100 ms. A loaded CI machine can stall syncs for seconds, and overload is not what
// these tests check: commits may wait a minute.
inline Options SmallSpoolOptions(std::vector<std::string> dirs) {
  Options o;
  o.dirs = std::move(dirs);
  o.segment_size = 1 << 20;
  o.stream_chunk_size = 64 << 10;
  o.min_free_bytes = 1 << 20;
  o.checkpoint_interval_ms = 100;
  o.max_commit_wait_ms = 60000;
  return o;
}

// An envelope from alice@example.org to `recipients` recipients (rcpt0@example.net, ...)
// in `queue`, with some metadata.
inline Envelope MakeEnvelope(int recipients = 2, std::string queue = "default") {
  Envelope e;
  e.sender = "alice@example.org";
  for (int i = 0; i < recipients; ++i) {
    e.recipients.push_back("rcpt" + std::to_string(i) + "@example.net");
  }
  e.queue = std::move(queue);
  e.metadata = "helo=mx.example.org";
  return e;
}

}  // namespace spool::testing

#endif  // SPOOL_TESTS_SPOOL_TEST_UTIL_H_
