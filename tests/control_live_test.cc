// The control channel against a live spool: spool-smtpd accepting mail (Postfix's
// smtp-source sending) while spool-ctl holds, releases, requeues and deletes through the
// spool's control socket; the server killed (-9) in the middle of a large delete; a peer
// of another uid refused; two spool-ctl at once. Every acknowledged message is accounted
// for afterwards, from the files, after the server is gone.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "control/json.h"
#include "gtest/gtest.h"
#include "spool/c_control.h"
#include "spool/control.h"
#include "spool/spool.h"
#include "test_util.h"

#ifndef SPOOL_CTL_PATH
#error "SPOOL_CTL_PATH must name the spool-ctl binary"
#endif
#ifndef SPOOL_SMTPD_PATH
#error "SPOOL_SMTPD_PATH must name the spool-smtpd binary"
#endif

namespace spool {
namespace {

using testing::ProcessResult;
using testing::TempDir;

constexpr char kSmtpSource[] = "/usr/sbin/smtp-source";

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// A TCP port nobody listens on now.
int FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ::close(fd);
    return 0;
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

// Starts `args[0]` with its output into `log`; returns its pid (0 on failure).
pid_t Spawn(const std::vector<std::string>& args, const std::string& log) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  std::vector<std::string> copy = args;
  std::vector<char*> argv;
  for (std::string& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  return rc == 0 ? pid : 0;
}

// Waits for `pid`; its exit code, or 128 + the signal.
int Wait(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

class ControlLiveTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = tmp_.Sub("spool"); }
  void TearDown() override {
    if (smtpd_ != 0) {
      ::kill(smtpd_, SIGKILL);
      Wait(smtpd_);
    }
  }

  ProcessResult Ctl(std::vector<std::string> args) {
    args.insert(args.begin(), {"--spool", dir_});
    const std::string in = tmp_.Sub("stdin");
    testing::WriteFile(in, "");
    return testing::RunProcess(SPOOL_CTL_PATH, args, in, tmp_.Sub("ctl"));
  }

  // Starts spool-smtpd on the spool and waits until it serves its control socket.
  void StartSmtpd() {
    port_ = FreePort();
    ASSERT_NE(port_, 0);
    smtpd_ =
        Spawn({SPOOL_SMTPD_PATH, "--spool", dir_, "--listen", "127.0.0.1:" + std::to_string(port_)},
              tmp_.Sub("smtpd.log"));
    ASSERT_NE(smtpd_, 0);
    for (int i = 0; i < 500; ++i) {
      if (ControlClient::Connect({dir_}).ok()) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    FAIL() << "spool-smtpd did not start: " << testing::ReadFile(tmp_.Sub("smtpd.log"));
  }
  void KillSmtpd() {
    ::kill(smtpd_, SIGKILL);
    EXPECT_EQ(Wait(smtpd_), 128 + SIGKILL);
    smtpd_ = 0;
  }

  // Stores `n` messages of `queue` through the API (no server running).
  void Fill(size_t n, const std::string& queue = "default") {
    Options o;
    o.dirs = {dir_};
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Spool> spool, Spool::Open(o));
    std::atomic<size_t> next{0};
    std::atomic<int> failed{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
      threads.emplace_back([&] {
        Envelope e;
        e.sender = "a@example.com";
        e.recipients = {"b@example.net"};
        e.queue = queue;
        for (size_t i; (i = next.fetch_add(1)) < n;) {
          if (!spool->Enqueue(e, "body " + std::to_string(i)).ok()) ++failed;
        }
      });
    }
    for (std::thread& t : threads) t.join();
    ASSERT_EQ(failed.load(), 0);
  }

  // What the spool holds, read from its files (the server is gone): id -> state.
  std::map<std::string, MessageState> Contents() {
    Options o;
    o.dirs = {dir_};
    o.read_only = true;
    std::map<std::string, MessageState> out;
    StatusOr<std::unique_ptr<Spool>> spool = Spool::Open(o);
    EXPECT_TRUE(spool.ok()) << spool.status().ToString();
    if (!spool.ok()) return out;
    EXPECT_OK((*spool)->ForEach([&](const MessageInfo& m) {
      out[m.id.ToString()] = m.state;
      return true;
    }));
    return out;
  }

  TempDir tmp_;
  std::string dir_;
  int port_ = 0;
  pid_t smtpd_ = 0;
};

// Every mutating command while smtp-source sends: afterwards (and after a kill -9 of the
// server) the held ones are held, the deleted ones gone, the rest there.
TEST_F(ControlLiveTest, EveryMutatingCommandUnderLoad) {
  if (::access(kSmtpSource, X_OK) != 0) GTEST_SKIP() << kSmtpSource << " missing (postfix)";
  constexpr int kMessages = 6000;
  StartSmtpd();
  const pid_t source = Spawn({kSmtpSource, "-s", "10", "-m", std::to_string(kMessages), "-l",
                              "2048", "127.0.0.1:" + std::to_string(port_)},
                             tmp_.Sub("source.log"));
  ASSERT_NE(source, 0);
  // Wait for a first few hundred messages, then operate while the rest arrive.
  std::vector<std::string> ids;
  for (int i = 0; i < 1000 && ids.size() < 400; ++i) {
    ProcessResult r = Ctl({"list", "--ids"});
    ASSERT_EQ(r.code, 0) << r.err;
    ids = Lines(r.out);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_GE(ids.size(), 400u);
  const std::vector<std::string> held(ids.begin(), ids.begin() + 100);
  const std::vector<std::string> deleted(ids.begin() + 100, ids.begin() + 200);
  const std::vector<std::string> released(ids.begin() + 200, ids.begin() + 300);
  const std::vector<std::string> requeued(ids.begin() + 300, ids.begin() + 400);
  const auto run = [&](const std::string& command, std::vector<std::string> args) {
    args.insert(args.begin(), command);
    ProcessResult r = Ctl(args);
    EXPECT_EQ(r.code, 0) << command << ": " << r.err;
    EXPECT_EQ(r.err, "");
  };
  run("hold", held);
  run("hold", released);
  run("delete", deleted);
  run("release", released);
  run("requeue", requeued);
  ProcessResult r = Ctl({"release", "--state", "held", "--dry-run"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("release: 100 messages would change"), std::string::npos) << r.out;
  r = Ctl({"show", "--json", held[0]});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("\"state\":\"held\""), std::string::npos) << r.out;
  const bool still_sending = ::waitpid(source, nullptr, WNOHANG) == 0;
  EXPECT_EQ(Wait(source), 0) << testing::ReadFile(tmp_.Sub("source.log"));
  if (!still_sending) std::cerr << "note: smtp-source finished before the last command\n";
  r = Ctl({"stats", "--json"});
  EXPECT_NE(r.out.find("\"messages\":" + std::to_string(kMessages - 100)), std::string::npos)
      << r.out;

  KillSmtpd();
  const std::map<std::string, MessageState> contents = Contents();
  EXPECT_EQ(contents.size(), static_cast<size_t>(kMessages - 100));
  for (const std::string& id : held) EXPECT_EQ(contents.at(id), MessageState::kHeld) << id;
  for (const std::string& id : deleted) EXPECT_EQ(contents.count(id), 0u) << id;
  for (const std::string& id : released) EXPECT_EQ(contents.at(id), MessageState::kQueued) << id;
  for (const std::string& id : requeued) EXPECT_EQ(contents.at(id), MessageState::kQueued) << id;
}

// kill -9 of the server during a large delete: every group reported deleted stays
// deleted, and nothing past the groups under way is lost.
TEST_F(ControlLiveTest, KillDuringALargeDelete) {
  constexpr size_t kMessages = 12000;
  Fill(kMessages);
  std::vector<std::string> order;  // the order the delete goes in: the spool's
  for (const auto& [id, state] : Contents()) order.push_back(id);
  ASSERT_EQ(order.size(), kMessages);
  StartSmtpd();
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ControlClient> client, ControlClient::Connect({dir_}));
  uint64_t acknowledged = 0;
  StatusOr<std::string> result =
      client->Call(R"({"op":"delete","filter":{}})", [&](std::string_view line) {
        StatusOr<control::JsonValue> v = control::ParseJson(line);
        ASSERT_OK(v.status());
        if (v->Find("type")->str != "progress") return;
        acknowledged = v->Find("done")->Uint().value_or(0);
        if (acknowledged >= 3 * kControlGroupSize && smtpd_ != 0) KillSmtpd();
      });
  EXPECT_FALSE(result.ok()) << "the delete finished before the kill: " << *result;
  ASSERT_GE(acknowledged, 3 * kControlGroupSize);
  const std::map<std::string, MessageState> contents = Contents();
  // What was acknowledged is gone for good; what is left is the rest, in order, but for
  // at most the group under way.
  size_t first_left = order.size();
  for (size_t i = 0; i < order.size(); ++i) {
    if (contents.count(order[i]) != 0) {
      first_left = std::min(first_left, i);
    }
  }
  EXPECT_GE(first_left, acknowledged);
  const size_t group_start = first_left / kControlGroupSize * kControlGroupSize;
  for (size_t i = group_start + kControlGroupSize; i < order.size(); ++i) {
    EXPECT_EQ(contents.count(order[i]), 1u) << "lost " << order[i] << " at " << i;
  }
  for (size_t i = 0; i < group_start; ++i) {
    EXPECT_EQ(contents.count(order[i]), 0u) << "back " << order[i] << " at " << i;
  }
}

// A peer of another uid: refused by the socket's mode, and by its credentials where the
// mode would let it in. Nothing changes.
TEST_F(ControlLiveTest, PeerOfAnotherUidIsRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run spool-ctl as another uid";
  if (::access("/usr/bin/setpriv", X_OK) != 0) GTEST_SKIP() << "setpriv (util-linux) missing";
  Fill(3);
  const std::string id = Contents().begin()->first;
  Options o;
  o.dirs = {dir_};
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Spool> writer, Spool::Open(o));
  // Let uid 65534 reach the socket's directory (not list it).
  ASSERT_EQ(::chmod(tmp_.path().c_str(), 0711), 0);
  ASSERT_EQ(::chmod(dir_.c_str(), 0711), 0);
  const auto as_nobody = [&] {
    const std::string in = tmp_.Sub("stdin");
    testing::WriteFile(in, "");
    return testing::RunProcess("/usr/bin/setpriv",
                               {"--reuid=65534", "--regid=65534", "--clear-groups", SPOOL_CTL_PATH,
                                "--spool", dir_, "hold", id},
                               in, tmp_.Sub("nobody"));
  };
  ProcessResult r = as_nobody();
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_EQ(Lines(r.err).size(), 1u) << r.err;
  EXPECT_NE(r.err.find("control socket"), std::string::npos) << r.err;
  // A socket whose mode lets everyone in: the server still checks the peer.
  ASSERT_EQ(::chmod((dir_ + "/" + kControlSocketName).c_str(), 0666), 0);
  r = as_nobody();
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_EQ(Lines(r.err).size(), 1u) << r.err;
  EXPECT_NE(r.err.find("uid 65534 may not control this spool"), std::string::npos) << r.err;
  ASSERT_OK_AND_ASSIGN(MessageInfo m, writer->Get(*MessageId::Parse(id)));
  EXPECT_EQ(m.state, MessageState::kQueued);
}

// Two spool-ctl at once over one socket: each gets its own connection and answers.
TEST_F(ControlLiveTest, TwoConcurrentSpoolCtl) {
  Fill(1500, "a");
  Fill(1500, "b");
  StartSmtpd();
  const auto spawn = [&](std::vector<std::string> args, const std::string& log) {
    args.insert(args.begin(), {SPOOL_CTL_PATH, "--spool", dir_});
    return Spawn(args, log);
  };
  const pid_t hold = spawn({"hold", "--queue", "a"}, tmp_.Sub("hold.log"));
  const pid_t del = spawn({"delete", "--queue", "b"}, tmp_.Sub("delete.log"));
  ASSERT_NE(hold, 0);
  ASSERT_NE(del, 0);
  EXPECT_EQ(Wait(hold), 0) << testing::ReadFile(tmp_.Sub("hold.log"));
  EXPECT_EQ(Wait(del), 0) << testing::ReadFile(tmp_.Sub("delete.log"));
  KillSmtpd();
  const std::map<std::string, MessageState> contents = Contents();
  EXPECT_EQ(contents.size(), 1500u);
  for (const auto& [id, state] : contents) EXPECT_EQ(state, MessageState::kHeld) << id;
}

// The C API's client: the same requests and lines, for an MTA's own admin interface.
TEST_F(ControlLiveTest, CApiRequest) {
  Fill(5);
  Options o;
  o.dirs = {dir_};
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Spool> writer, Spool::Open(o));
  char* response = nullptr;
  spool_reply_t err;
  ASSERT_EQ(spool_control_request(dir_.c_str(), R"({"op":"hold","filter":{}})", &response, &err), 0)
      << err.code;
  ASSERT_NE(response, nullptr);
  std::vector<std::string> lines = Lines(response);
  spool_free(response);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_NE(lines[0].find(R"("type":"progress")"), std::string::npos) << lines[0];
  EXPECT_NE(lines[1].find(R"("done":5)"), std::string::npos) << lines[1];
  EXPECT_EQ(err.code, 0);
  // A filter matching nothing: -1, the answer still handed out.
  ASSERT_EQ(spool_control_request(dir_.c_str(), R"({"op":"delete","filter":{"queue":"x"}})",
                                  &response, &err),
            -1);
  ASSERT_NE(response, nullptr);
  EXPECT_NE(std::string(response).find("no message matches"), std::string::npos) << response;
  spool_free(response);
  EXPECT_EQ(err.code, 451);
  // Nobody serves a directory that is not a spool.
  ASSERT_EQ(spool_control_request(tmp_.path().c_str(), R"({"op":"stats"})", &response, &err), -1);
  EXPECT_EQ(response, nullptr);
  EXPECT_EQ(err.code, 421);
}

// spool_control: the same request on a spool_t of this process.
TEST_F(ControlLiveTest, CApiInProcess) {
  Fill(4);
  spool_reply_t err;
  spool_t* s = spool_open(dir_.c_str(), &err);
  ASSERT_NE(s, nullptr) << err.code;
  char* response = nullptr;
  ASSERT_EQ(spool_control(s, R"({"op":"delete","filter":{},"dry_run":true})", &response, &err), 0);
  ASSERT_NE(response, nullptr);
  EXPECT_NE(std::string(response).find(R"("matched":4)"), std::string::npos) << response;
  spool_free(response);
  ASSERT_EQ(spool_control(s, R"({"op":"nonsense"})", &response, &err), -1);
  EXPECT_EQ(err.code, 501);
  spool_free(response);
  ASSERT_EQ(spool_control(s, nullptr, &response, &err), -1);
  EXPECT_EQ(response, nullptr);
  spool_close(s);
}

}  // namespace
}  // namespace spool
