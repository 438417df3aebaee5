// Real-fault tests: the failure contract of docs/errors.md with faults the kernel makes,
// not only simulated ones.
//
// Each test makes a real fault with the kernel's own machinery: a small tmpfs that fills up
// (ENOSPC), a loop-mounted ext4 image that turns read-only under the running spool (EROFS),
// a directory the process may not write after dropping privileges (EACCES), a FUSE
// pass-through filesystem that fails writes, syncs and reads on command (EIO;
// tests/faults/faultfs.c), and bytes flipped in a segment file under a live spool. It then
// checks the reply of docs/errors.md, "The reply table", that nothing acknowledged is lost
// (every acknowledged message reads back byte for byte, before and after reopen), and where
// the contract asks for it that the spool recovers by itself once the cause is gone: a
// bounded wait (up to kRecoverySeconds) for Admission to accept again, never a timing
// assertion.
//
// Tests that need root, mount(2), loop devices or /dev/fuse skip with the reason when the
// machine forbids them. Mounts are undone in TearDown, lazily as a last resort, even when
// a test fails half-way.

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "spool/smtp_reply.h"
#include "spool/spool.h"
#include "test_util.h"

namespace spool {
namespace {

using ::spool::testing::RandomBytes;
using ::spool::testing::SameBytes;
using ::spool::testing::TempDir;

// How long a test waits for the spool to recover by itself (the re-probe runs about once a
// second). A bound for a wait, not a performance assertion.
constexpr int kRecoverySeconds = 15;
constexpr uint64_t kSegmentSize = 1 << 20;

std::string ErrnoText(int err) { return std::string(strerrordesc_np(err)); }

// A line for the reader of the test log, flushed at once: a fault may abort the process.
[[gnu::format(printf, 1, 2)]] void Info(const char* format, ...) {
  std::va_list args;
  va_start(args, format);
  std::fputs("[   info   ] ", stdout);
  std::vfprintf(stdout, format, args);
  va_end(args);
  std::fflush(stdout);
}

// Polls `done` until it holds or `seconds` pass; returns its last value.
bool WaitFor(const std::function<bool()>& done, int seconds = kRecoverySeconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return done();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return true;
}

// Runs a shell command; returns its exit status (-1 if it could not run) and its output.
int RunShell(const std::string& command, std::string* output = nullptr) {
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (p == nullptr) return -1;
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  int status = pclose(p);
  if (output != nullptr) *output = out;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

uint64_t FreeBytes(const std::string& path) {
  struct statvfs st;
  if (statvfs(path.c_str(), &st) != 0) return 0;
  return static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
}

// The reply of docs/errors.md for `s`, and a reply text free of internals.
::testing::AssertionResult HasReply(const Status& s, int code, std::string_view enhanced) {
  const SmtpReply r = SmtpReplyFor(s);
  const std::string text = r.ToString();
  for (const char* internal : {"/", "EIO", "ENOSPC", "EROFS", "EACCES", "errno"}) {
    if (text.find(internal) != std::string::npos) {
      return ::testing::AssertionFailure() << "reply '" << text << "' leaks '" << internal << "'";
    }
  }
  if (r.code == code && r.enhanced == enhanced) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "reply '" << text << "' for " << s.ToString() << ", want " << code << " " << enhanced;
}

// The reply for a fault, or 421 4.3.2 for a shard latched unhealthy by it (docs/errors.md:
// "not serving"), whose operator message must still name the cause.
::testing::AssertionResult HasReplyOrLatched(const Status& s, int code, std::string_view enhanced,
                                             std::string_view cause) {
  if (s.code() != Code::kUnavailable) return HasReply(s, code, enhanced);
  ::testing::AssertionResult latched = HasReply(s, 421, "4.3.2");
  if (!latched) return latched;
  if (s.message().find(cause) == std::string_view::npos) {
    return ::testing::AssertionFailure()
           << "latched status does not name the cause '" << cause << "': " << s.ToString();
  }
  return ::testing::AssertionSuccess();
}

// Samples `check` for `seconds`: it must hold every time (a latch that the re-probe must
// not clear while the cause is still there). Returns the first failure.
::testing::AssertionResult HoldsThroughout(const std::function<::testing::AssertionResult()>& check,
                                           int seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  do {
    ::testing::AssertionResult r = check();
    if (!r) return r;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  } while (std::chrono::steady_clock::now() < end);
  return ::testing::AssertionSuccess();
}

// The messages a test offered and the ones the spool acknowledged. Message n has a body
// derived from (seed, n) and carries n in its metadata, so that any message found in a
// spool can be checked: acknowledged ones must be there byte for byte, others absent or
// intact (docs/durability.md, contract item 2).
class Ledger {
 public:
  explicit Ledger(uint64_t seed) : seed_(seed) {}

  Envelope Env(int n) const {
    Envelope e;
    e.sender = "sender@example.org";
    e.recipients = {"rcpt" + std::to_string(n) + "@example.org"};
    e.metadata = std::to_string(n);
    return e;
  }
  std::string Body(int n) const { return RandomBytes(seed_ * 1000003 + n, sizes_.at(n)); }

  // Offers the next message; records it when acknowledged.
  StatusOr<MessageId> Enqueue(Spool& spool, size_t size) {
    const int n = next_++;
    sizes_[n] = size;
    StatusOr<MessageId> id = spool.Enqueue(Env(n), Body(n));
    if (id.ok()) acked_[*id] = n;
    return id;
  }

  const std::map<MessageId, int>& acked() const { return acked_; }
  bool Knows(int n) const { return sizes_.count(n) != 0; }

 private:
  uint64_t seed_;
  int next_ = 0;
  std::map<int, size_t> sizes_;
  std::map<MessageId, int> acked_;
};

// Every acknowledged message reads back byte for byte.
void ExpectAllReadable(Spool& spool, const Ledger& ledger, const std::string& when) {
  size_t bad = 0;
  for (const auto& [id, n] : ledger.acked()) {
    StatusOr<std::string> body = spool.ReadBody(id);
    if (!body.ok()) {
      ADD_FAILURE() << when << ": acknowledged " << id.ToString()
                    << " unreadable: " << body.status().ToString();
    } else if (const ::testing::AssertionResult same = SameBytes(*body, ledger.Body(n)); !same) {
      ADD_FAILURE() << when << ": acknowledged " << id.ToString()
                    << " has wrong bytes: " << same.message();
    } else {
      continue;
    }
    if (++bad >= 5) return;  // enough to diagnose
  }
}

// After a reopen: every acknowledged message intact, and every message the spool holds
// is one the test offered, complete and intact.
void ExpectIntact(Spool& spool, const Ledger& ledger, const std::string& when) {
  ExpectAllReadable(spool, ledger, when);
  size_t acked_seen = 0;
  std::vector<MessageInfo> infos;
  ASSERT_OK(spool.ForEach([&](const MessageInfo& info) {
    infos.push_back(info);
    return true;
  }));
  for (const MessageInfo& info : infos) {
    const int n = std::atoi(info.envelope.metadata.c_str());
    if (!ledger.Knows(n)) {
      ADD_FAILURE() << when << ": " << info.id.ToString() << " was never offered";
      continue;
    }
    if (ledger.acked().count(info.id) != 0) ++acked_seen;
    StatusOr<std::string> body = spool.ReadBody(info.id);
    EXPECT_TRUE(body.ok()) << when << ": " << info.id.ToString() << " (message " << n
                           << ") is not intact: " << body.status().ToString();
    if (body.ok()) {
      EXPECT_TRUE(SameBytes(*body, ledger.Body(n)))
          << when << ": " << info.id.ToString() << " (message " << n << ") is not intact";
    }
  }
  EXPECT_EQ(acked_seen, ledger.acked().size()) << when << ": acknowledged messages missing";
}

Options SmallOptions(std::vector<std::string> dirs) {
  Options o;
  o.dirs = std::move(dirs);
  o.segment_size = kSegmentSize;
  o.stream_chunk_size = 64 << 10;
  o.min_free_bytes = 1 << 20;
  o.min_free_inodes = 10;
  return o;
}

// Mounts still in place, for the last-resort cleanup below: a fatal signal (an abort in
// the engine or RocksDB) skips TearDown, and a mount left behind would outlive the test.
// Fixed storage: the handler may only call async-signal-safe functions.
constexpr int kMaxMounts = 8;
char g_mounts[kMaxMounts][512];

void DetachMountsAndDie(int sig) {
  for (int i = kMaxMounts - 1; i >= 0; --i) {
    if (g_mounts[i][0] != '\0') umount2(g_mounts[i], MNT_DETACH);
  }
  signal(sig, SIG_DFL);
  raise(sig);
}

void RememberMount(const std::string& path) {
  static const bool installed = [] {
    for (int sig : {SIGABRT, SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTERM}) {
      signal(sig, DetachMountsAndDie);
    }
    return true;
  }();
  (void)installed;
  for (auto& slot : g_mounts) {
    if (slot[0] == '\0' && path.size() < sizeof(slot)) {
      std::memcpy(slot, path.c_str(), path.size() + 1);
      return;
    }
  }
}

void ForgetMount(const std::string& path) {
  for (auto& slot : g_mounts) {
    if (path == slot) slot[0] = '\0';
  }
}

// The fixture: owns the spool, the mounts and a helper process, and undoes them in
// TearDown (spool first, so that no file on a mount is open when it is unmounted).
class FaultTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (fuse_pid_ > 0) Command("off");  // a test that failed half-way may leave a fault on
    spool_.reset();
    for (auto it = mounts_.rbegin(); it != mounts_.rend(); ++it) {
      if (umount2(it->c_str(), 0) != 0) {
        const int err = errno;
        std::fprintf(stderr, "faults_test: umount %s: %s; detaching lazily\n", it->c_str(),
                     ErrnoText(err).c_str());
        umount2(it->c_str(), MNT_DETACH);
      }
      ForgetMount(*it);
    }
    mounts_.clear();
    if (fuse_pid_ > 0) {
      // faultfs exits once its mount is gone; if not, it is stopped.
      bool exited = WaitFor([&] { return waitpid(fuse_pid_, nullptr, WNOHANG) == fuse_pid_; }, 5);
      if (!exited) {
        kill(fuse_pid_, SIGKILL);
        waitpid(fuse_pid_, nullptr, 0);
      }
      fuse_pid_ = -1;
    }
  }

  // Mounts a tmpfs of `size` (mount(8) syntax, "40m") on a fresh directory; "" if the
  // machine forbids it (the reason in *why).
  std::string MountTmpfs(const std::string& size, std::string* why) {
    const std::string dir = tmp_.Sub("tmpfs");
    mkdir(dir.c_str(), 0755);
    if (mount("tmpfs", dir.c_str(), "tmpfs", 0, ("size=" + size).c_str()) != 0) {
      *why = "mount -t tmpfs not permitted here: " + ErrnoText(errno);
      return "";
    }
    AddMount(dir);
    return dir;
  }

  void AddMount(const std::string& path) {
    mounts_.push_back(path);
    RememberMount(path);
  }

  Status OpenSpool(const Options& o) {
    spool_.reset();
    StatusOr<std::unique_ptr<Spool>> s = Spool::Open(o);
    if (!s.ok()) return s.status();
    spool_ = std::move(s).value();
    return Status::Ok();
  }

  // Sends a command to the running faultfs (see faultfs.c).
  bool Command(const std::string& line) {
    const int fd = open((fuse_mount_ + "/.faultfs").c_str(), O_WRONLY);
    if (fd < 0) return false;
    const bool ok = write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
    close(fd);
    return ok;
  }
  // One counter of the running faultfs ("write_failed"), or -1.
  long long Counter(const std::string& name) {
    std::ifstream in(fuse_mount_ + "/.faultfs");
    std::string key;
    long long value;
    while (in >> key >> value) {
      if (key == name) return value;
    }
    return -1;
  }

  TempDir tmp_;
  std::unique_ptr<Spool> spool_;
  std::vector<std::string> mounts_;
  pid_t fuse_pid_ = -1;
  std::string fuse_mount_;
};

// Mounting, chown and dropping privileges need root.
#define SKIP_UNLESS_ROOT()                                                   \
  do {                                                                       \
    if (geteuid() != 0) GTEST_SKIP() << "needs root (mount, chown, setuid)"; \
  } while (0)

// Grows a ballast file at `path` (fallocate: no page written) until the filesystem has
// about `leave` bytes free. Retries when the running spool takes space meanwhile (its
// pre-formatter creates segments in the background).
bool FillLeaving(const std::string& path, uint64_t leave, std::string* why) {
  const int fd = open(path.c_str(), O_CREAT | O_WRONLY, 0600);
  if (fd < 0) {
    *why = "create " + path + ": " + ErrnoText(errno);
    return false;
  }
  const std::string dir = path.substr(0, path.rfind('/'));
  off_t size = 0;
  bool ok = false;
  for (int attempt = 0; attempt < 50 && !ok; ++attempt) {
    const uint64_t free = FreeBytes(dir);
    if (free <= leave + (64 << 10)) {
      ok = true;
      break;
    }
    const off_t grow = static_cast<off_t>(free - leave);
    if (fallocate(fd, 0, size, grow) == 0) {
      size += grow;
      ok = true;
    } else if (errno != ENOSPC) {
      *why = "fallocate " + path + ": " + ErrnoText(errno);
      break;
    }
  }
  close(fd);
  if (!ok && why->empty()) *why = "could not fill " + dir + " (space kept changing)";
  return ok;
}

// ---- ENOSPC ------------------------------------------------------------------------------

// Real fault: a 40 MiB tmpfs holding the spool is filled by a ballast file until its free
// space is under the spool's configured minimum (16 MiB) while the disk still has room.
// Proves the "free space under the configured minimum" cell of the storage-full row:
// Admission and Enqueue give 452 4.3.1, the spool refuses, acknowledged mail stays
// readable, and once the ballast is deleted the spool accepts again by itself.
TEST_F(FaultTest, EnospcConfiguredMinimumGives452AndClearsWhenSpaceReturns) {
  SKIP_UNLESS_ROOT();
  std::string why;
  const std::string mnt = MountTmpfs("40m", &why);
  if (mnt.empty()) GTEST_SKIP() << why;
  Options o = SmallOptions({mnt + "/spool"});
  o.min_free_bytes = 16 << 20;
  ASSERT_OK(OpenSpool(o));
  Ledger ledger(testing::TestSeed(1));
  for (int i = 0; i < 10; ++i) ASSERT_OK(ledger.Enqueue(*spool_, 8 << 10).status());

  const uint64_t free_before = FreeBytes(mnt);
  ASSERT_GT(free_before, uint64_t{24} << 20) << "tmpfs unexpectedly full";
  ASSERT_TRUE(FillLeaving(mnt + "/ballast", 8 << 20, &why)) << why;
  const uint64_t free_now = FreeBytes(mnt);
  ASSERT_LT(free_now, uint64_t{16} << 20);
  ASSERT_GT(free_now, uint64_t{4} << 20) << "the disk itself should still have room";

  const Status admission = spool_->Admission(4096);
  EXPECT_EQ(admission.code(), Code::kStorageFull) << admission.ToString();
  EXPECT_TRUE(HasReply(admission, 452, "4.3.1"));
  StatusOr<MessageId> refused = ledger.Enqueue(*spool_, 4096);
  ASSERT_FALSE(refused.ok()) << "accepted under the configured minimum";
  EXPECT_TRUE(HasReply(refused.status(), 452, "4.3.1"));
  const Health health = spool_->GetHealth();
  EXPECT_EQ(health.state, HealthState::kRefusing);
  EXPECT_EQ(health.status.code(), Code::kStorageFull) << health.status.ToString();
  ExpectAllReadable(*spool_, ledger, "under the minimum");

  ASSERT_EQ(unlink((mnt + "/ballast").c_str()), 0);
  EXPECT_TRUE(WaitFor([&] { return spool_->Admission(4096).ok(); }))
      << "still refusing with space back: " << spool_->Admission(4096).ToString();
  for (int i = 0; i < 5; ++i) EXPECT_OK(ledger.Enqueue(*spool_, 8 << 10).status());

  ASSERT_OK(OpenSpool(o));
  ExpectIntact(*spool_, ledger, "after reopen");
}

// Real fault: the tmpfs itself runs out. The spool's minimum is 0, a ballast leaves
// 256 KiB free, and messages are enqueued until the disk refuses: the log needs a new
// 1 MiB segment (and RocksDB new files) that the filesystem cannot give (ENOSPC from the
// kernel). Proves the ENOSPC cell of the storage-full row: every refusal is 452 4.3.1,
// acknowledged mail stays readable on the full disk, growing the tmpfs
// (mount -o remount,size=...) makes the spool accept again without a restart, and after
// reopen everything acknowledged is intact.
TEST_F(FaultTest, EnospcFromFullTmpfsGives452AndRecoversAfterGrow) {
  SKIP_UNLESS_ROOT();
  std::string why;
  const std::string mnt = MountTmpfs("40m", &why);
  if (mnt.empty()) GTEST_SKIP() << why;
  Options o = SmallOptions({mnt + "/spool"});
  o.min_free_bytes = 0;
  o.min_free_inodes = 0;
  ASSERT_OK(OpenSpool(o));
  Ledger ledger(testing::TestSeed(2));
  for (int i = 0; i < 10; ++i) ASSERT_OK(ledger.Enqueue(*spool_, 8 << 10).status());

  const uint64_t leave = 256 << 10;
  ASSERT_TRUE(FillLeaving(mnt + "/ballast", leave, &why)) << why;

  std::vector<Status> refusals;
  int consecutive = 0;
  for (int i = 0; i < 600 && consecutive < 5; ++i) {
    StatusOr<MessageId> id = ledger.Enqueue(*spool_, 32 << 10);
    if (id.ok()) {
      consecutive = 0;
    } else {
      refusals.push_back(id.status());
      ++consecutive;
    }
  }
  ASSERT_FALSE(refusals.empty()) << "the full tmpfs never refused a message";
  bool kernel_enospc = false;
  for (const Status& s : refusals) {
    EXPECT_TRUE(HasReply(s, 452, "4.3.1"));
    if (s.sys_errno() == ENOSPC) kernel_enospc = true;
  }
  Info(
      "%zu acknowledged, %zu refused; first refusal: %s; ENOSPC from the kernel "
      "seen in a reply's status: %s\n",
      ledger.acked().size(), refusals.size(), refusals.front().ToString().c_str(),
      kernel_enospc ? "yes" : "no (refused by the free-space check first)");
  EXPECT_LT(FreeBytes(mnt), uint64_t{1} << 20) << "the disk should be (nearly) full now";
  EXPECT_TRUE(HasReply(spool_->Admission(32 << 10), 452, "4.3.1"));
  EXPECT_EQ(spool_->GetHealth().state, HealthState::kRefusing);
  ExpectAllReadable(*spool_, ledger, "on the full disk");

  ASSERT_EQ(mount(nullptr, mnt.c_str(), nullptr, MS_REMOUNT, "size=80m"), 0)
      << "remount,size=80m: " << ErrnoText(errno);
  // Self-recovery (docs/errors.md, "A latched shard": it accepts again by itself once
  // the cause is gone, without a restart): needs the engine's background re-probe.
  EXPECT_TRUE(WaitFor([&] { return spool_->Admission(32 << 10).ok(); }))
      << "ENGINE: no self-recovery after the tmpfs grew: Admission still says "
      << spool_->Admission(32 << 10).ToString();
  if (spool_->Admission(32 << 10).ok()) {
    for (int i = 0; i < 5; ++i) EXPECT_OK(ledger.Enqueue(*spool_, 32 << 10).status());
  }

  ASSERT_OK(OpenSpool(o));
  ExpectIntact(*spool_, ledger, "after reopen");
  EXPECT_OK(ledger.Enqueue(*spool_, 32 << 10).status());  // the reopened spool accepts
}

// ---- EROFS -------------------------------------------------------------------------------

// The loop device under `mountpoint` ("loop0"), from /proc/self/mounts; "" if none.
std::string LoopDeviceOf(const std::string& mountpoint) {
  std::ifstream in("/proc/self/mounts");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string dev, dir;
    fields >> dev >> dir;
    if (dir == mountpoint && dev.rfind("/dev/loop", 0) == 0) return dev.substr(5);
  }
  return "";
}

// Real fault: a spool on an ext4 image mounted through a loop device with
// errors=remount-ro; with the spool running, ext4 is told it found an error
// (/sys/fs/ext4/<loop>/trigger_fs_error), which aborts the journal and turns the
// filesystem read-only: the kernel fails every write with EROFS. Proves the read-only cell
// of the permission row: enqueues give 451 4.3.5 and nothing else, acknowledged mail stays
// readable from the running spool, and a read-only open (Options::read_only, what
// spool-ctl --read-only uses) still reads every acknowledged message.
TEST_F(FaultTest, ErofsFromExt4RemountedReadOnlyGives451_435) {
  SKIP_UNLESS_ROOT();
  const std::string img = tmp_.Sub("ext4.img");
  const std::string mnt = tmp_.Sub("ext4");
  mkdir(mnt.c_str(), 0755);
  std::string out;
  if (RunShell("truncate -s 256M " + img + " && mkfs.ext4 -q -F " + img, &out) != 0) {
    GTEST_SKIP() << "cannot make an ext4 image (mkfs.ext4 from e2fsprogs): " << out;
  }
  if (RunShell("mount -o loop,errors=remount-ro " + img + " " + mnt, &out) != 0) {
    GTEST_SKIP() << "loop mount not permitted here (no loop devices?): " << out;
  }
  AddMount(mnt);
  const std::string loop = LoopDeviceOf(mnt);
  ASSERT_FALSE(loop.empty()) << "no loop device found under " << mnt;

  Options o = SmallOptions({mnt + "/spool"});
  ASSERT_OK(OpenSpool(o));
  Ledger ledger(testing::TestSeed(3));
  for (int i = 0; i < 20; ++i) {
    ASSERT_OK(ledger.Enqueue(*spool_, i == 7 ? (600 << 10) : ((i + 1) * 3000)).status());
  }

  const std::string trigger = "/sys/fs/ext4/" + loop + "/trigger_fs_error";
  std::string how;
  if (access(trigger.c_str(), W_OK) == 0) {
    std::ofstream(trigger) << "1\n";
    how = "trigger_fs_error";
  } else if (RunShell("mount -o remount,ro " + mnt, &out) == 0) {
    how = "mount -o remount,ro";
  } else {
    GTEST_SKIP() << "cannot make ext4 read-only under the spool: no " << trigger
                 << ", and mount -o remount,ro failed: " << out;
  }
  // The fault is real: the kernel refuses a new file now.
  const int probe = open((mnt + "/probe").c_str(), O_CREAT | O_WRONLY, 0600);
  const int probe_errno = errno;
  if (probe >= 0) close(probe);
  ASSERT_LT(probe, 0) << "filesystem still writable after " << how;
  ASSERT_EQ(probe_errno, EROFS) << ErrnoText(probe_errno);
  Info("ext4 on %s made read-only with %s\n", loop.c_str(), how.c_str());

  // The first enqueue meets the fault itself; later ones may meet the latched shard.
  for (int i = 0; i < 5; ++i) {
    StatusOr<MessageId> id = ledger.Enqueue(*spool_, 4000);
    ASSERT_FALSE(id.ok()) << "acknowledged a message on a read-only filesystem";
    if (i == 0) {
      EXPECT_TRUE(HasReply(id.status(), 451, "4.3.5")) << "the enqueue that met EROFS";
    } else {
      EXPECT_TRUE(HasReplyOrLatched(id.status(), 451, "4.3.5", "EROFS")) << "enqueue " << i;
    }
  }
  // The re-probe runs meanwhile and must keep refusing: the disk is still read-only.
  EXPECT_TRUE(HoldsThroughout(
      [&]() -> ::testing::AssertionResult {
        const Status a = spool_->Admission(4000);
        if (a.ok()) return ::testing::AssertionFailure() << "Admission OK on a read-only disk";
        return HasReplyOrLatched(a, 451, "4.3.5", "EROFS");
      },
      3));
  EXPECT_EQ(spool_->GetHealth().state, HealthState::kRefusing);
  ExpectAllReadable(*spool_, ledger, "read-only disk, running spool");

  // A read-only open (spool-ctl --read-only) beside the failed writer reads everything.
  Options ro = o;
  ro.read_only = true;
  {
    StatusOr<std::unique_ptr<Spool>> reader = Spool::Open(ro);
    ASSERT_OK(reader.status());
    ExpectIntact(**reader, ledger, "read-only open beside the writer");
  }

  // ENGINE: closing on a read-only disk must neither hang nor crash. (Here RocksDB 7.8
  // aborts in a background flush when its info LOG file, in the index directory, is
  // written after a failed write: assertion `sync_without_flush_called_'.)
  spool_.reset();
  ASSERT_OK(OpenSpool(ro));
  ExpectIntact(*spool_, ledger, "read-only open after the writer closed");
}

// ---- EACCES ------------------------------------------------------------------------------

// What faults_helper reported.
struct HelperReport {
  int exit_code = -1;
  std::vector<std::string> results;  // "RESULT ..." lines, without the word
  std::vector<std::string> lines;
};

HelperReport RunHelper(const std::string& mode, const std::string& dir) {
  HelperReport r;
  std::string out;
  r.exit_code = RunShell(std::string(SPOOL_FAULTS_HELPER) + " " + mode + " " + dir, &out);
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    r.lines.push_back(line);
    if (line.rfind("RESULT ", 0) == 0) r.results.push_back(line.substr(7));
  }
  return r;
}

// "RESULT <code> <smtp> <enhanced> <message>" split.
struct HelperResult {
  int code = -1;
  int smtp = 0;
  std::string enhanced, message;
};
HelperResult ParseResult(const std::string& text) {
  HelperResult r;
  std::istringstream in(text);
  in >> r.code >> r.smtp >> r.enhanced;
  std::getline(in, r.message);
  if (!r.message.empty() && r.message[0] == ' ') r.message.erase(0, 1);
  return r;
}

// The helper's open as nobody was refused for want of permission: 451 4.3.5, and an
// operator message that says so and names `path` (the spool or a parent of it).
void ExpectOpenRefused(const HelperReport& r, const std::string& path) {
  ASSERT_EQ(r.exit_code, 0) << ::testing::PrintToString(r.lines);
  ASSERT_EQ(r.results.size(), 1u) << ::testing::PrintToString(r.lines);
  HelperResult res = ParseResult(r.results[0]);
  EXPECT_EQ(res.code, static_cast<int>(Code::kPermission)) << r.results[0];
  EXPECT_EQ(res.smtp, 451) << r.results[0];
  EXPECT_EQ(res.enhanced, "4.3.5") << r.results[0];
  EXPECT_NE(res.message.find(path), std::string::npos)
      << "operator message should name " << path << ": " << res.message;
  EXPECT_NE(res.message.find("ermission denied"), std::string::npos)
      << "operator message should say why: " << res.message;
  Info("operator message: %s\n", res.message.c_str());
}

class EaccesTest : public FaultTest {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root to drop privileges to nobody (65534)";
    // The test's directory must be traversable by nobody; everything in it stays root's.
    ASSERT_EQ(chmod(tmp_.path().c_str(), 0755), 0);
  }
};

// Real fault: the process runs as nobody (uid/gid 65534, privileges dropped in a child
// process) and opens a spool in a directory that root owns with mode 0755: the kernel
// refuses every file it would create with EACCES. Proves the permission row for a new
// spool: Open fails with 451 4.3.5 and an operator message that names the directory.
TEST_F(EaccesTest, OpenNewSpoolInRootOwnedDirGives451_435) {
  for (const std::string& dir : {tmp_.Sub("empty"), tmp_.Sub("missing/spool")}) {
    if (dir == tmp_.Sub("empty")) {
      ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);
    }
    ExpectOpenRefused(RunHelper("open", dir), tmp_.path());
  }
}

// Real fault: as above, on an existing spool that root created and wrote. Proves the
// permission row for an existing spool (Open: 451 4.3.5 with a clear operator message),
// and that the refused open changed nothing: root reopens and finds every message.
TEST_F(EaccesTest, OpenRootSpoolAsNobodyGives451_435AndLosesNothing) {
  const std::string dir = tmp_.Sub("spool");
  Options o = SmallOptions({dir});
  Ledger ledger(testing::TestSeed(4));
  ASSERT_OK(OpenSpool(o));
  for (int i = 0; i < 5; ++i) ASSERT_OK(ledger.Enqueue(*spool_, 5000).status());
  spool_.reset();

  ExpectOpenRefused(RunHelper("open", dir), dir);

  ASSERT_OK(OpenSpool(o));
  ExpectIntact(*spool_, ledger, "root reopens after the refused open");
}

// Real fault: a spool owned by nobody and opened by nobody loses the write permission of
// its directories (chmod 0555) while open: files already open stay writable, but the next
// segment file and index file cannot be created (EACCES). Proves the permission row
// while running: the refusal is 451 4.3.5, acknowledged mail stays readable, after chmod
// 0755 the spool accepts again by itself, and after reopen nothing acknowledged is lost.
TEST_F(EaccesTest, ShardDirBecomesUnwritableWhileOpen) {
  const std::string dir = tmp_.Sub("nobodys");
  ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);
  ASSERT_EQ(chown(dir.c_str(), 65534, 65534), 0);
  HelperReport r = RunHelper("unwritable", dir);
  ASSERT_EQ(r.exit_code, 0) << ::testing::PrintToString(r.lines);
  for (const std::string& line : r.lines) {
    Info("helper: %s\n", line.c_str());
    if (line.rfind("CHECK FAIL", 0) == 0) ADD_FAILURE() << line;
  }
  ASSERT_EQ(r.results.size(), 2u) << ::testing::PrintToString(r.lines);
  HelperResult refusal = ParseResult(r.results[0]);
  EXPECT_EQ(refusal.smtp, 451) << "enqueue into the unwritable shard: " << r.results[0];
  EXPECT_EQ(refusal.enhanced, "4.3.5") << "enqueue into the unwritable shard: " << r.results[0];
  HelperResult admission = ParseResult(r.results[1]);
  EXPECT_EQ(admission.smtp, 451) << "Admission while unwritable: " << r.results[1];
  EXPECT_EQ(admission.enhanced, "4.3.5") << "Admission while unwritable: " << r.results[1];
}

// ---- EIO (FUSE) --------------------------------------------------------------------------

class FuseTest : public FaultTest {
 protected:
  void SetUp() override {
#ifndef SPOOL_FAULTFS
    GTEST_SKIP() << "faultfs not built: libfuse3-dev (pkg-config fuse3) missing";
#else
    if (geteuid() != 0) GTEST_SKIP() << "needs root to mount FUSE";
    if (access("/dev/fuse", R_OK | W_OK) != 0) {
      GTEST_SKIP() << "/dev/fuse unusable: " << ErrnoText(errno);
    }
    const std::string backing = tmp_.Sub("backing");
    fuse_mount_ = tmp_.Sub("fuse");
    ASSERT_EQ(mkdir(backing.c_str(), 0755), 0);
    ASSERT_EQ(mkdir(fuse_mount_.c_str(), 0755), 0);
    const std::string log = tmp_.Sub("faultfs.log");
    fuse_pid_ = fork();
    ASSERT_GE(fuse_pid_, 0);
    if (fuse_pid_ == 0) {
      const int fd = open(log.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0600);
      if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
      }
      execl(SPOOL_FAULTFS, SPOOL_FAULTFS, backing.c_str(), fuse_mount_.c_str(), "-f",
            static_cast<char*>(nullptr));
      _exit(127);
    }
    const bool mounted = WaitFor(
        [&] {
          struct stat st;
          return stat((fuse_mount_ + "/.faultfs").c_str(), &st) == 0 ||
                 waitpid(fuse_pid_, nullptr, WNOHANG) == fuse_pid_;
        },
        10);
    struct stat st;
    if (!mounted || stat((fuse_mount_ + "/.faultfs").c_str(), &st) != 0) {
      std::string text;
      RunShell("cat " + log, &text);
      if (waitpid(fuse_pid_, nullptr, WNOHANG) == 0) kill(fuse_pid_, SIGKILL);
      waitpid(fuse_pid_, nullptr, 0);
      fuse_pid_ = -1;
      GTEST_SKIP() << "cannot mount the FUSE fault filesystem: " << text;
    }
    AddMount(fuse_mount_);
#endif
  }

  // The EIO scenario below, with the I/O backend `backend`.
  void EioScenario(const std::string& backend);

  // The health of the shard in `dir`.
  Status ShardStatus(const std::string& dir) {
    for (const ShardHealth& s : spool_->GetHealth().shards) {
      if (s.dir == dir) return s.status;
    }
    return InternalError("no shard " + dir);
  }
};

// Real fault: a spool with two shards, one on the FUSE fault filesystem (faultfs.c) and one
// on the normal disk. The FUSE side fails, on command, every write, then every fdatasync
// (dropping the unsynced writes, as Linux may after a failed writeback), then every read of
// the shard's files (RocksDB's files excepted, so that the log's handling is what is
// tested). Proves the I/O-error row and docs/durability.md, contract item 4: failed
// enqueues get 451 4.3.0 and never 250, every enqueue that succeeded is intact after
// reopen, the faulty shard latches (GetHealth: degraded) and the re-probe keeps it latched
// while the fault lasts, the other shard keeps accepting, a failed read is an error and
// never bytes, and the shard recovers by itself once the fault is switched off.
void FuseTest::EioScenario(const std::string& backend) {
  const std::string fuse_dir = fuse_mount_ + "/shard";
  const std::string disk_dir = tmp_.Sub("disk/shard");
  {
    // O_DIRECT through FUSE, for the report; the test uses buffered writes + fdatasync so
    // that the sync fault is an fdatasync the engine issues.
    const int fd = open((fuse_mount_ + "/odirect").c_str(), O_CREAT | O_WRONLY | O_DIRECT, 0600);
    Info("O_DIRECT on FUSE: %s\n", fd >= 0 ? "opens" : ErrnoText(errno).c_str());
    if (fd >= 0) close(fd);
    unlink((fuse_mount_ + "/odirect").c_str());
  }
  Options o = SmallOptions({fuse_dir, disk_dir});
  o.io_backend = backend;
  o.direct_io = false;
  ASSERT_OK(OpenSpool(o));
  Ledger ledger(testing::TestSeed(5));
  std::set<uint32_t> shards;
  for (int i = 0; i < 20; ++i) {
    StatusOr<MessageId> id = ledger.Enqueue(*spool_, 2000 + i * 700);
    ASSERT_OK(id.status());
    shards.insert(id->shard());
  }
  ASSERT_EQ(shards.size(), 2u) << "round robin should use both shards";
  ASSERT_EQ(spool_->GetHealth().state, HealthState::kHealthy);

  // The log and anything else of the FUSE shard but its RocksDB index.
  const std::string where = " match=/shard/ skip=/index/";
  auto run_fault = [&](const std::string& command, const char* counter) {
    SCOPED_TRACE(command);
    ASSERT_TRUE(Command(command + where));
    std::vector<Status> failures;
    for (int i = 0; i < 20; ++i) {
      StatusOr<MessageId> id = ledger.Enqueue(*spool_, 3000 + i * 500);
      if (!id.ok()) failures.push_back(id.status());
    }
    EXPECT_GT(Counter(counter), 0) << "the fault never fired";
    ASSERT_FALSE(failures.empty()) << "no enqueue failed: the FUSE shard kept acknowledging";
    for (const Status& s : failures) {
      EXPECT_EQ(s.code(), Code::kIoError) << s.ToString();
      EXPECT_TRUE(HasReply(s, 451, "4.3.0"));
    }
    Info("%s, %s: %zu of 20 enqueues failed (%lld bytes dropped); first: %s\n", backend.c_str(),
         command.c_str(), failures.size(), Counter("dropped_bytes"),
         failures.front().ToString().c_str());
    // The shard latched; the spool is degraded and keeps accepting on the other shard.
    const Health h = spool_->GetHealth();
    EXPECT_EQ(h.state, HealthState::kDegraded);
    const Status latched = ShardStatus(fuse_dir);
    EXPECT_TRUE(HasReplyOrLatched(latched, 451, "4.3.0", "EIO")) << "FUSE shard health";
    EXPECT_OK(ShardStatus(disk_dir));
    // The re-probe runs meanwhile and must not clear the latch: the fault is still on.
    EXPECT_TRUE(HoldsThroughout(
        [&]() -> ::testing::AssertionResult {
          const Health health = spool_->GetHealth();
          if (health.state != HealthState::kDegraded) {
            return ::testing::AssertionFailure() << "state " << static_cast<int>(health.state);
          }
          return ::testing::AssertionSuccess();
        },
        2));
    EXPECT_OK(spool_->Admission(4096));  // degraded still accepts
    for (int i = 0; i < 10; ++i) {
      StatusOr<MessageId> id = ledger.Enqueue(*spool_, 4000);
      EXPECT_OK(id.status());  // the healthy shard keeps accepting
    }
    ExpectAllReadable(*spool_, ledger, command + ", faulty");

    // The cause goes away: the shard recovers by itself (re-probe), or at least on reopen.
    ASSERT_TRUE(Command("off"));
    const bool recovered =
        WaitFor([&] { return spool_->GetHealth().state == HealthState::kHealthy; });
    EXPECT_TRUE(recovered) << "ENGINE: the FUSE shard did not recover by itself within "
                           << kRecoverySeconds
                           << " s of the fault going away: " << ShardStatus(fuse_dir).ToString();
    if (!recovered) ASSERT_OK(OpenSpool(o));
    ExpectAllReadable(*spool_, ledger, command + ", recovered");
  };
  run_fault("write EIO", "write_failed");
  if (HasFatalFailure()) return;
  run_fault("sync EIO drop", "sync_failed");
  if (HasFatalFailure()) return;

  // Reads: an error, or bytes that failed their checksum reported as corruption; never
  // bytes that differ from what was stored.
  for (const char* fault : {"read EIO"}) {
    SCOPED_TRACE(fault);
    ASSERT_TRUE(Command(std::string(fault) + " match=/shard/log/"));
    size_t on_fuse = 0, errors = 0;
    const uint32_t fuse_shard = [&] {
      // The shard whose reads fail is the FUSE one.
      for (const auto& [id, n] : ledger.acked()) {
        if (!spool_->ReadBody(id).ok()) return id.shard();
      }
      return ~0u;
    }();
    ASSERT_NE(fuse_shard, ~0u) << "no read failed under '" << fault << "'";
    for (const auto& [id, n] : ledger.acked()) {
      StatusOr<std::string> body = spool_->ReadBody(id);
      if (id.shard() != fuse_shard) {
        EXPECT_TRUE(body.ok()) << "other shard must serve reads: " << body.status().ToString();
        if (body.ok()) {
          EXPECT_TRUE(SameBytes(*body, ledger.Body(n))) << id.ToString();
        }
        continue;
      }
      ++on_fuse;
      if (body.ok()) {
        EXPECT_TRUE(SameBytes(*body, ledger.Body(n))) << id.ToString() << ": returned wrong bytes";
        continue;
      }
      ++errors;
      const Code want = std::string(fault) == "read EIO" ? Code::kIoError : Code::kCorruption;
      EXPECT_EQ(body.status().code(), want) << body.status().ToString();
      if (want == Code::kCorruption) {
        EXPECT_NE(body.status().message().find(id.ToString()), std::string::npos)
            << "corruption should name the message: " << body.status().ToString();
      }
    }
    EXPECT_EQ(errors, on_fuse) << "every read from the faulty shard should fail";
    EXPECT_GT(Counter("read_failed"), 0);
    ASSERT_TRUE(Command("off"));
  }
  ExpectAllReadable(*spool_, ledger, "reads back after the read faults");

  ASSERT_OK(OpenSpool(o));
  ExpectIntact(*spool_, ledger, "after reopen");
  EXPECT_EQ(spool_->GetHealth().state, HealthState::kHealthy);
}

TEST_F(FuseTest, EioLatchesOneShardOthersServeAndNothingAcknowledgedIsLost) {
  EioScenario("posix");
}

// The same through io_uring: writes and syncs are io_uring requests that FUSE serves.
TEST_F(FuseTest, EioThroughIoUringLatchesOneShardOthersServe) { EioScenario("io_uring"); }

// Real fault: on the FUSE shard, every write and sync of the RocksDB index files fails
// (EIO), the log's files stay healthy. Proves that index faults feed health
// (docs/errors.md, "The index fails": RocksDB's write and background errors latch the
// shard): an enqueue is either acknowledged (and then intact after reopen: the log is the
// truth) or refused with the reply of docs/errors.md; the FUSE shard is reported unhealthy
// while the other keeps accepting; once the fault is gone the shard recovers by itself, and
// nothing acknowledged is lost.
TEST_F(FuseTest, IndexEioFeedsHealthAndLosesNothing) {
  const std::string fuse_dir = fuse_mount_ + "/shard";
  const std::string disk_dir = tmp_.Sub("disk/shard");
  Options o = SmallOptions({fuse_dir, disk_dir});
  o.io_backend = "posix";
  o.direct_io = false;
  o.checkpoint_interval_ms = 100;  // index writes (flushes) happen soon
  ASSERT_OK(OpenSpool(o));
  Ledger ledger(testing::TestSeed(9));
  for (int i = 0; i < 10; ++i) ASSERT_OK(ledger.Enqueue(*spool_, 3000).status());

  // RocksDB's info LOG file is spared: a failed write to it makes RocksDB 7.8 abort the
  // process (see the EROFS test), which would hide everything this test checks.
  ASSERT_TRUE(Command("write EIO match=/shard/index/ skip=/LOG"));
  ASSERT_TRUE(Command("sync EIO match=/shard/index/ skip=/LOG"));
  // Keep offering mail until the FUSE shard reports its index fault (bounded).
  bool reported = false;
  for (int i = 0; i < 150 && !reported; ++i) {
    StatusOr<MessageId> id = ledger.Enqueue(*spool_, 3000);
    if (!id.ok()) {
      EXPECT_TRUE(id.status().code() == Code::kIoError || id.status().code() == Code::kUnavailable)
          << id.status().ToString();
    }
    reported = !ShardStatus(fuse_dir).ok();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_GT(Counter("write_failed") + Counter("sync_failed"), 0) << "the fault never fired";
  ASSERT_TRUE(reported) << "ENGINE: the index fault never showed in the shard's health";
  Info("index fault reported as: %s\n", ShardStatus(fuse_dir).ToString().c_str());
  EXPECT_TRUE(HasReplyOrLatched(ShardStatus(fuse_dir), 451, "4.3.0", "rror"));
  EXPECT_EQ(spool_->GetHealth().state, HealthState::kDegraded);
  for (int i = 0; i < 5; ++i) EXPECT_OK(ledger.Enqueue(*spool_, 3000).status());
  // ENGINE: a message acknowledged while its index write failed must stay readable (the
  // log holds it); here ReadBody returns the index's error for it until reopen.
  ExpectAllReadable(*spool_, ledger, "ENGINE: index faulty");

  ASSERT_TRUE(Command("off"));
  EXPECT_TRUE(WaitFor([&] { return spool_->GetHealth().state == HealthState::kHealthy; }))
      << "ENGINE: no self-recovery from the index fault (RocksDB Resume keeps failing?): "
      << ShardStatus(fuse_dir).ToString();
  ASSERT_OK(OpenSpool(o));
  ExpectIntact(*spool_, ledger, "after reopen");
}

// Real fault: every read of the log files on the FUSE shard returns its bytes with one byte
// inverted (corruption on the read path: a bad cable, controller or RAM; the stored bytes
// are intact). Proves docs/durability.md, contract item 3, on a real read path: ReadBody
// reports kCorruption naming the message and returns no body, a streamed read hands out
// nothing that differs from what was stored; and, once reads are clean again, every
// acknowledged message reads back byte for byte, also after reopen: a transient read fault
// loses nothing.
TEST_F(FuseTest, CorruptionOnTheReadPathIsReportedNeverReturned) {
  const std::string fuse_dir = fuse_mount_ + "/shard";
  Options o = SmallOptions({fuse_dir});
  o.io_backend = "posix";
  o.direct_io = false;
  ASSERT_OK(OpenSpool(o));
  Ledger ledger(testing::TestSeed(7));
  for (int i = 0; i < 8; ++i) {
    ASSERT_OK(ledger.Enqueue(*spool_, i == 3 ? (300 << 10) : (5000 + i * 1000)).status());
  }
  ASSERT_TRUE(Command("read flip match=/shard/log/"));
  for (const auto& [id, n] : ledger.acked()) {
    SCOPED_TRACE(id.ToString());
    StatusOr<std::string> body = spool_->ReadBody(id);
    if (body.ok()) {  // not read from the disk (no bytes of it were wrong)
      ASSERT_TRUE(SameBytes(*body, ledger.Body(n))) << "returned corrupted bytes";
      continue;
    }
    EXPECT_EQ(body.status().code(), Code::kCorruption) << body.status().ToString();
    EXPECT_NE(body.status().message().find(id.ToString()), std::string::npos)
        << "the report must name the message: " << body.status().ToString();
    std::string streamed;
    const Status s = spool_->ReadBodyStream(id, [&](std::string_view piece) {
      streamed.append(piece);
      return Status::Ok();
    });
    EXPECT_EQ(s.code(), Code::kCorruption) << s.ToString();
    EXPECT_TRUE(SameBytes(streamed, std::string_view(ledger.Body(n)).substr(0, streamed.size())))
        << "streamed corrupted bytes";
  }
  EXPECT_GT(Counter("read_failed"), 0) << "the fault never fired";
  ASSERT_TRUE(Command("off"));

  // ENGINE: a checksum mismatch seen once on the read path must not make an intact
  // message unreadable for good (here the engine quarantines it on the first mismatch,
  // persistently, without reading it again).
  ExpectAllReadable(*spool_, ledger, "clean reads again");
  ASSERT_OK(OpenSpool(o));
  ExpectIntact(*spool_, ledger, "after reopen");
}

// ---- Corruption --------------------------------------------------------------------------

// The segment files of a shard.
std::vector<std::string> SegmentFiles(const std::string& shard_dir) {
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(shard_dir + "/log")) {
    if (e.is_regular_file()) files.push_back(e.path().string());
  }
  return files;
}

// Flips `len` bytes at `at` within the first stored copy of `needle` in the shard's
// segment files; false if the needle is nowhere.
bool FlipStored(const std::string& shard_dir, const std::string& needle, size_t at, size_t len) {
  for (const std::string& path : SegmentFiles(shard_dir)) {
    std::ifstream in(path, std::ios::binary);
    std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const size_t pos = data.find(needle);
    if (pos == std::string::npos) continue;
    std::string flipped = data.substr(pos + at, len);
    for (char& c : flipped) c = static_cast<char>(~c);
    const int fd = open(path.c_str(), O_WRONLY);
    if (fd < 0) return false;
    const bool ok =
        pwrite(fd, flipped.data(), len, static_cast<off_t>(pos + at)) == static_cast<ssize_t>(len);
    close(fd);
    return ok;
  }
  return false;
}

// Real fault: bytes of stored messages are inverted in the segment files, under the running
// spool, with pwrite at the place where the body's bytes are found (a stored byte that
// changed on disk: bit rot, a misdirected write). Proves contract item 3 of
// docs/durability.md and the corruption cell of the I/O-error row: ReadBody reports
// kCorruption naming the message id and returns no body; the streamed read hands out
// nothing that differs from what was stored; the other messages still read back.
TEST_F(FaultTest, FlippedBytesUnderLiveSpoolAreReportedWithTheIdNeverReturned) {
  const std::string dir = tmp_.Sub("spool");
  ASSERT_OK(OpenSpool(SmallOptions({dir})));
  Ledger ledger(testing::TestSeed(6));
  std::vector<MessageId> ids;
  for (int i = 0; i < 6; ++i) {
    // Message 4 is large: stored as 64 KiB chunks.
    ASSERT_OK_AND_ASSIGN(MessageId id, ledger.Enqueue(*spool_, i == 4 ? (600 << 10) : (16 << 10)));
    ids.push_back(id);
  }
  struct Target {
    int index;
    size_t at;  // where in the body the bytes are flipped
  };
  for (const Target& t : {Target{2, 8000}, Target{4, 5 * (64 << 10) + 100}}) {
    const MessageId& id = ids[t.index];
    const std::string body = ledger.Body(ledger.acked().at(id));
    // A 64-byte piece of the body just before the flip locates the stored bytes.
    const size_t anchor = t.at - 64;
    ASSERT_TRUE(FlipStored(dir, body.substr(anchor, 64), 64, 8)) << "body bytes not found";

    StatusOr<std::string> read = spool_->ReadBody(id);
    ASSERT_FALSE(read.ok()) << id.ToString() << ": corrupted body returned as intact";
    EXPECT_EQ(read.status().code(), Code::kCorruption) << read.status().ToString();
    EXPECT_NE(read.status().message().find(id.ToString()), std::string::npos)
        << "the report must name the message: " << read.status().ToString();
    EXPECT_TRUE(HasReply(read.status(), 451, "4.3.0"));

    std::string streamed;
    const Status s = spool_->ReadBodyStream(id, [&](std::string_view piece) {
      streamed.append(piece);
      return Status::Ok();
    });
    EXPECT_EQ(s.code(), Code::kCorruption) << s.ToString();
    EXPECT_LE(streamed.size(), t.at) << "handed out bytes past the damage";
    EXPECT_TRUE(SameBytes(streamed, std::string_view(body).substr(0, streamed.size())))
        << "handed out corrupted bytes";
  }
  for (int i : {0, 1, 3, 5}) {
    StatusOr<std::string> read = spool_->ReadBody(ids[i]);
    ASSERT_OK(read.status());
    EXPECT_TRUE(SameBytes(*read, ledger.Body(ledger.acked().at(ids[i]))))
        << "untouched message " << i;
  }
}

// Real fault: bytes of a message in a cold segment (sealed: later segments hold newer
// messages) are inverted on disk under the running spool, and nobody reads that message.
// Proves the scrubber part of docs/durability.md, contract item 3 (damage is detected by
// checksum when read by the background scrubber): within a bounded wait the damaged message
// is found and quarantined (state kCorrupt, visible through Get), its neighbours stay
// intact.
TEST_F(FaultTest, ScrubberFindsFlippedBytesInAColdSegment) {
  const std::string dir = tmp_.Sub("spool");
  ASSERT_OK(OpenSpool(SmallOptions({dir})));
  Ledger ledger(testing::TestSeed(8));
  std::vector<MessageId> ids;
  // 100 KiB messages: about ten per 1 MiB segment, so the first segments are sealed.
  for (int i = 0; i < 30; ++i) {
    ASSERT_OK_AND_ASSIGN(MessageId id, ledger.Enqueue(*spool_, 100 << 10));
    ids.push_back(id);
  }
  const MessageId victim = ids[2];
  const std::string body = ledger.Body(ledger.acked().at(victim));
  ASSERT_TRUE(FlipStored(dir, body.substr(50000, 64), 64, 4)) << "body bytes not found";
  // ENGINE: needs the background scrubber (Options::scrub_bytes_per_sec) to reach the
  // cold segment; a bounded wait, not a timing assertion.
  const bool found = WaitFor([&] {
    StatusOr<MessageInfo> info = spool_->Get(victim);
    return info.ok() && info->state == MessageState::kCorrupt;
  });
  EXPECT_TRUE(found) << "ENGINE: the scrubber did not quarantine " << victim.ToString()
                     << " within " << kRecoverySeconds << " s";
  StatusOr<std::string> read = spool_->ReadBody(victim);
  ASSERT_FALSE(read.ok()) << "corrupted body returned as intact";
  EXPECT_EQ(read.status().code(), Code::kCorruption) << read.status().ToString();
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] == victim) continue;
    StatusOr<MessageInfo> info = spool_->Get(ids[i]);
    ASSERT_OK(info.status());
    EXPECT_EQ(info->state, MessageState::kQueued) << "neighbour " << i << " quarantined";
  }
}

}  // namespace
}  // namespace spool
