// spool-opensmtpd-queue: OpenSMTPD's queue on a spool. smtpd starts it as
// /usr/libexec/opensmtpd/queue-spool when run with `-B queue=spool:ARG`; docs/opensmtpd.md.

#ifndef SPOOL_TOOLS_OPENSMTPD_QUEUE_TOOL_H_
#define SPOOL_TOOLS_OPENSMTPD_QUEUE_TOOL_H_

#include <string>
#include <string_view>

#include "spool/spool.h"

namespace spool::opensmtpd {

// Exit codes: 0 after smtpd closed the socket, 1 on any failure (logged), 2 for a usage
// error.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;
inline constexpr int kExitUsage = 2;

// Reads the argument smtpd passes (what follows "queue=spool:"): comma-separated items,
// each a spool directory (a shard) or an option NAME=VALUE: segment_size, min_free_bytes,
// max_message_size (bytes, with an optional K, M or G suffix), io_backend
// (auto|io_uring|posix), direct_io (0|1). Returns a usage error, or "".
std::string ParseQueueArgument(std::string_view argument, Options* options);

// The program: argv as smtpd gives it ({"queue-proc", ARG}), the socket on fd 0.
int QueueMain(int argc, char** argv);

}  // namespace spool::opensmtpd

#endif  // SPOOL_TOOLS_OPENSMTPD_QUEUE_TOOL_H_
