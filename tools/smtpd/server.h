// The reference SMTP front-end's server (docs/smtpd.md): an RFC 5321 receiver
// that stores every message in a Spool before it answers 250.
//
// One epoll event loop serves every connection, non-blocking. A message's DATA is
// decoded (dot-unstuffed, nothing added) into memory and handed to Spool::EnqueueAsync;
// the completion runs on a spool thread, which only queues it and wakes the loop through
// an eventfd. The loop then answers "250 2.0.0 Ok: queued as ID" (the message is durable
// by then: docs/durability.md) or the reply of SmtpReplyFor(status), and only then goes on with the
// commands the client pipelined behind the data.
//
// Admission (Spool::Admission) is asked at connect (a spool that is not serving gets
// 421 and the connection is closed; a full or faulty one is refused at MAIL), at MAIL
// (with the SIZE the client declared) and at DATA.
//
// Thread-safety: Run is called once, from one thread (the loop). RequestStop may be
// called from any thread, any number of times.

#ifndef SPOOL_TOOLS_SMTPD_SERVER_H_
#define SPOOL_TOOLS_SMTPD_SERVER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "spool/message_id.h"
#include "spool/spool.h"
#include "spool/status.h"
#include "util/mutex.h"

namespace spool::smtpd {

struct ServerOptions {
  // HOST:PORT to listen on, each: an IPv4 address, [IPv6] or a host name; port 0 picks
  // a free one (listen_addresses() tells which).
  std::vector<std::string> listen;
  // The name in the greeting and the EHLO reply. Empty: gethostname().
  std::string hostname;
  // Connections beyond this get "421 4.7.0" and are closed.
  size_t max_connections = 1000;
  // RCPT beyond this many in one transaction gets "452 4.5.3" (RFC 5321 §4.5.3.1.8 asks
  // for at least 100).
  size_t max_recipients = 1000;
  // A client silent this long (outside a commit) gets "421 4.4.2" and is closed.
  // RFC 5321 §4.5.3.2.7: at least 5 minutes.
  int64_t idle_timeout_ms = 300'000;
  // After RequestStop, transactions in flight get this long to finish; then the rest are
  // closed (commits already handed to the spool are still waited for and answered).
  int64_t drain_timeout_ms = 30'000;
  // A client whose commands drew this many error replies gets "421 4.7.0" and is closed.
  int max_errors = 20;
  // Stored in each message's metadata as "client=ADDRESS helo=NAME" when true.
  bool record_client = true;
};

class Server {
 public:
  // Binds and listens on every address of options.listen. `spool` must outlive the
  // server; its options().max_message_size is the SIZE advertised and enforced.
  static StatusOr<std::unique_ptr<Server>> Create(Spool* spool, const ServerOptions& options);
  ~Server();

  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // The bound addresses, "127.0.0.1:2525" or "[::1]:2525", in the order of
  // options.listen.
  const std::vector<std::string>& listen_addresses() const { return bound_; }

  // Serves until RequestStop, then drains: stops accepting, answers 421 to sessions
  // without a transaction in flight, lets the others finish (at most drain_timeout_ms,
  // then closes them), waits for every commit handed to the spool, and returns OK.
  // Returns an error only if the loop itself fails (epoll).
  Status Run();

  // Asks Run to drain and return. Thread-safe; not async-signal-safe (use a signal
  // thread or signalfd).
  void RequestStop();

 private:
  struct Session;
  struct Completion {
    uint64_t serial;
    StatusOr<MessageId> result;
  };

  Server(Spool* spool, const ServerOptions& options);
  Status Listen();
  void Accept(int listen_fd);
  void OnSessionEvent(Session& s, uint32_t events);
  void ReadInput(Session& s);
  void ProcessInput(Session& s);
  void HandleLine(Session& s, std::string_view line);
  void HandleMail(Session& s, std::string_view arg);
  void HandleRcpt(Session& s, std::string_view arg);
  void HandleData(Session& s, std::string_view arg);
  void FinishData(Session& s);
  void DrainCompletions();
  void Reply(Session& s, std::string_view line);
  void ReplyError(Session& s, std::string_view line);
  void ReplyStatus(Session& s, const Status& status);
  bool RefusedByAdmission(Session& s, uint64_t expected_size);
  void ResetTransaction(Session& s);
  void CloseAfterReply(Session& s);
  void Flush(Session& s);
  void UpdateInterest(Session& s);
  // Closes the socket and forgets the session. Invalidates `s`.
  void Close(Session& s);
  void MaybeDrain(Session& s);
  void BeginDrain();
  void Sweep(int64_t now_ms);
  void SetListenersEnabled(bool enabled);

  Spool* const spool_;
  const ServerOptions options_;
  const uint64_t max_message_size_;
  std::string hostname_;
  std::vector<std::string> bound_;
  std::vector<int> listen_fds_;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;  // eventfd: completions queued, or a stop requested

  // Loop state: touched by the loop thread only.
  std::unordered_map<uint64_t, std::unique_ptr<Session>> sessions_;
  uint64_t next_serial_;
  size_t commits_in_flight_ = 0;
  bool listeners_enabled_ = true;
  bool draining_ = false;
  int64_t drain_deadline_ms_ = 0;
  std::vector<Completion> completions_scratch_;

  std::atomic<bool> stop_requested_{false};
  Mutex mu_;
  std::vector<Completion> completions_ ABSL_GUARDED_BY(mu_);
};

}  // namespace spool::smtpd

#endif  // SPOOL_TOOLS_SMTPD_SERVER_H_
