// spool-smtpd: the reference SMTP front-end (docs/smtpd.md). tools/spool_smtpd.cc is one
// line over SmtpdMain; the server itself is tools/smtpd/server.h.
//
// Thread-safety: SmtpdMain is a program's main: call it once, from one thread.

#ifndef SPOOL_TOOLS_SMTPD_SMTPD_H_
#define SPOOL_TOOLS_SMTPD_SMTPD_H_

#include <cstdint>
#include <string_view>

namespace spool::smtpd {

// Exit codes (documented in docs/smtpd.md and in `spool-smtpd --help`).
inline constexpr int kExitOk = 0;          // stopped by SIGTERM/SIGINT after draining
inline constexpr int kExitFailed = 1;      // cannot listen, or the event loop failed
inline constexpr int kExitUsage = 2;       // the command line is wrong
inline constexpr int kExitCannotOpen = 3;  // the spool cannot be opened

// Runs `spool-smtpd` with the command line `argv`. Prints "spool-smtpd: listening on
// ADDRESS" on stdout once per bound address when it accepts connections (port 0 picks a
// free port: the line tells which), logs to stderr. Returns the exit code.
int SmtpdMain(int argc, char** argv);

// Parses a byte count: digits, optionally followed by K, M, G or T (powers of 1024, an
// optional "iB" or "B" after it). False for anything else or an overflow.
bool ParseByteSize(std::string_view text, uint64_t* bytes);

}  // namespace spool::smtpd

#endif  // SPOOL_TOOLS_SMTPD_SMTPD_H_
