// The unprivileged side of the EACCES fault tests (tests/faults/faults_test.cc).
//
// Started as root by the test, it drops to nobody (uid and gid 65534, no supplementary
// groups) before it touches the spool, so that the kernel's permission checks apply (root
// would pass them with CAP_DAC_OVERRIDE). It reports on stdout, one line each:
//   RESULT <code> <smtp code> <enhanced> <message>   what a call returned
//   CHECK ok|FAIL <what> [detail]                    a check made in here
//   INFO <text>
// and exits 0 once it has reported (2 on a usage error, 3 if it cannot drop privileges).
//
//   faults_helper open DIR             Spool::Open(DIR) as nobody
//   faults_helper unwritable DIR       as nobody, on a spool directory nobody owns: open,
//                                      enqueue, make the shard unwritable (chmod 0555),
//                                      enqueue until refused, make it writable again,
//                                      wait for the spool to accept again, reopen, verify

#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <thread>

#include "spool/smtp_reply.h"
#include "spool/spool.h"

namespace {

constexpr uid_t kNobody = 65534;

bool DropPrivileges() {
  return setgroups(0, nullptr) == 0 && setgid(kNobody) == 0 && setuid(kNobody) == 0 &&
         geteuid() == kNobody && getegid() == kNobody;
}

// One line: newlines in a status message would break the line protocol.
std::string OneLine(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return out;
}

void Result(const spool::Status& s) {
  spool::SmtpReply r = spool::SmtpReplyFor(s);
  std::printf("RESULT %d %d %s %s\n", static_cast<int>(s.code()), r.code,
              std::string(r.enhanced).c_str(), OneLine(s.message()).c_str());
}

void Check(bool ok, const std::string& what, const std::string& detail = "") {
  std::printf("CHECK %s %s %s\n", ok ? "ok" : "FAIL", what.c_str(), OneLine(detail).c_str());
}

// About 30 KiB on average: a few hundred fill the pre-formatted segments.
std::string Body(int n) {
  return "message " + std::to_string(n) + " " +
         std::string(static_cast<size_t>(n % 16) * 4096, 'x');
}

spool::Envelope Env(int n) {
  spool::Envelope e;
  e.sender = "a@example.org";
  e.recipients = {"b@example.org"};
  e.metadata = std::to_string(n);
  return e;
}

int Open(const std::string& dir) {
  spool::Options o;
  o.dirs = {dir};
  o.min_free_bytes = 1 << 20;
  auto s = spool::Spool::Open(o);
  Result(s.ok() ? spool::Status::Ok() : s.status());
  return 0;
}

// Every acknowledged message reads back byte for byte.
void VerifyAll(spool::Spool& sp, const std::map<std::string, int>& acked, const char* when) {
  int bad = 0;
  std::string first;
  for (const auto& [id, n] : acked) {
    auto body = sp.ReadBody(*spool::MessageId::Parse(id));
    if (!body.ok() || *body != Body(n)) {
      if (bad++ == 0) first = id + ": " + (body.ok() ? "wrong bytes" : body.status().ToString());
    }
  }
  Check(bad == 0, std::string("acknowledged_readable_") + when,
        std::to_string(bad) + " of " + std::to_string(acked.size()) + " bad; " + first);
}

int Unwritable(const std::string& dir) {
  spool::Options o;
  o.dirs = {dir};
  o.segment_size = 1 << 20;
  o.min_free_bytes = 1 << 20;
  std::map<std::string, int> acked;
  int n = 0;
  {
    auto opened = spool::Spool::Open(o);
    if (!opened.ok()) {
      Check(false, "open_writable", opened.status().ToString());
      return 0;
    }
    spool::Spool& sp = **opened;
    for (int i = 0; i < 5; ++i, ++n) {
      auto id = sp.Enqueue(Env(n), Body(n));
      if (id.ok()) acked[id->ToString()] = n;
    }
    Check(acked.size() == 5, "enqueue_while_writable");

    // The fault: the shard's directories lose their write permission under the open spool.
    // Files already open stay writable; every new file (a segment, an index file) fails.
    for (const char* sub : {"", "/log", "/index"}) {
      if (chmod((dir + sub).c_str(), 0555) != 0) {
        Check(false, "chmod_0555", dir + sub + ": " + std::strerror(errno));
      }
    }
    // Enough bytes to need new segment files (1 MiB each) and index files.
    spool::Status refused;
    for (int i = 0; i < 400 && refused.ok(); ++i, ++n) {
      std::string body = Body(n);
      auto id = sp.Enqueue(Env(n), body);
      if (id.ok()) {
        acked[id->ToString()] = n;
      } else {
        refused = id.status();
      }
    }
    std::printf("INFO %zu acknowledged before the refusal\n", acked.size());
    Result(refused);
    Result(sp.Admission(4096));
    VerifyAll(sp, acked, "while_unwritable");

    for (const char* sub : {"", "/log", "/index"}) {
      if (chmod((dir + sub).c_str(), 0755) != 0) {
        Check(false, "chmod_0755", dir + sub + ": " + std::strerror(errno));
      }
    }
    // Self-recovery: a bounded wait for the re-probe, not a timing assertion.
    spool::Status admission;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    while (!(admission = sp.Admission(4096)).ok() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    Check(admission.ok(), "accepts_again_without_restart", admission.ToString());
    if (admission.ok()) {
      auto id = sp.Enqueue(Env(n), Body(n));
      Check(id.ok(), "enqueue_after_recovery", id.ok() ? "" : id.status().ToString());
      if (id.ok()) acked[id->ToString()] = n;
      ++n;
    }
  }
  auto reopened = spool::Spool::Open(o);
  if (!reopened.ok()) {
    Check(false, "reopen", reopened.status().ToString());
    return 0;
  }
  VerifyAll(**reopened, acked, "after_reopen");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: faults_helper open|unwritable DIR\n");
    return 2;
  }
  if (!DropPrivileges()) {
    std::fprintf(stderr, "faults_helper: cannot drop privileges to uid/gid %u: %s\n", kNobody,
                 std::strerror(errno));
    return 3;
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const std::string mode = argv[1];
  if (mode == "open") return Open(argv[2]);
  if (mode == "unwritable") return Unwritable(argv[2]);
  std::fprintf(stderr, "faults_helper: unknown mode %s\n", argv[1]);
  return 2;
}
