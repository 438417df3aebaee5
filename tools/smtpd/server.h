// The reference SMTP front-end's server (docs/smtpd.md): an RFC 5321 receiver
// that stores every message in a Spool before it answers 250.
//
// One epoll event loop serves every connection, non-blocking; it never waits for the
// disk. A message's DATA is decoded (dot-unstuffed, nothing added) into a buffer of at
// most stream_chunk_size bytes. A message that ends within it goes to
// Spool::EnqueueAsync (with Options::async_commit_wait_ms 0: a full commit queue is
// answered 451 4.4.5 at once). A longer one is streamed: each full buffer goes to a
// BodyWriter (Spool::BeginMessage, Options::stream_write_through) on a small pool of
// write threads, the session reading nothing more until it is durable, and the last
// piece and the commit go there too. So a session holds at most one buffer and its input
// (kMaxBufferedInput); the bytes received and not yet durable, over all sessions, are
// kept under max_pending_bytes (docs/smtpd.md, "Limits"). Completions (of EnqueueAsync
// on a spool thread, of the write threads) only queue their result and wake the loop
// through an eventfd. The loop then answers "250 2.0.0 Ok: queued as ID" (the message
// is durable by then: docs/durability.md) or the reply of SmtpReplyFor(status), and only
// then goes on with the commands the client pipelined behind the data.
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
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "spool/message_id.h"
#include "spool/spool.h"
#include "spool/status.h"
#include "tools/smtpd/worker_pool.h"
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
  // Connections from one client address (IPv4 address, or IPv6 address) beyond this get
  // "421 4.7.0" and are closed.
  size_t max_connections_per_client = 50;
  // New connections from one client address per minute (a token bucket of this many,
  // refilled evenly over a minute); beyond it "421 4.7.0". 0: no limit.
  size_t max_connection_rate_per_client = 0;
  // RCPT beyond this many in one transaction gets "452 4.5.3" (RFC 5321 §4.5.3.1.8 asks
  // for at least 100). So does a RCPT that would make the envelope larger than
  // kMaxEnvelopeBytes.
  size_t max_recipients = 1000;
  // A client silent this long (no byte at all, outside a commit) gets "421 4.4.2" and is
  // closed. RFC 5321 §4.5.3.2.7: at least 5 minutes.
  int64_t idle_timeout_ms = 300'000;
  // Deadlines that bytes trickling in do not extend, each answered "421 4.4.2" and the
  // connection closed: a command line must be complete this long after the previous
  // reply (or the greeting); the DATA of a message must end this long after its 354; a
  // session lasts at most session_timeout_ms.
  int64_t command_timeout_ms = 300'000;
  int64_t data_timeout_ms = 600'000;
  int64_t session_timeout_ms = 1'800'000;
  // A message with the spool this long without a result gets "451 4.3.0" and the
  // connection is closed (the commit may still succeed: the client's retry then makes a
  // second copy, never a loss).
  int64_t commit_timeout_ms = 120'000;
  // After RequestStop, transactions in flight get this long to finish; then the rest are
  // closed (commits already handed to the spool are still waited for and answered).
  int64_t drain_timeout_ms = 30'000;
  // A client whose commands drew this many error replies gets "421 4.7.0" and is closed.
  int max_errors = 20;
  // Stored in each message's metadata as "client=ADDRESS helo=NAME" when true (NAME
  // with every byte outside '!'..'~' replaced by '?', at most kMaxHeloInMetadata bytes).
  bool record_client = true;
  // What a bare LF or bare CR in DATA gets: refused (false: "550 5.5.2" and the
  // connection closed, as Postfix and Exim do) or stored as CRLF (true).
  bool normalize_bare_line_endings = false;
  // DATA is buffered and written in pieces of at most this size (the spool's
  // stream_write_through must be on: smtpd.cc sets it). A body that ends within one piece
  // is one record. REQUIRES: >= kMinStreamChunk.
  size_t stream_chunk_size = 128 << 10;
  // Bytes of DATA received and not yet durable, over all sessions. At or over it, DATA
  // gets "452 4.3.1", and every session in DATA holding at least stream_chunk_size / 8
  // bytes writes them out (reading nothing more until they are durable) until it drops.
  uint64_t max_pending_bytes = 64ull << 20;
  // Threads that write streamed DATA. REQUIRES: >= 1.
  int write_threads = 4;
};

// Room for the envelope the spool guarantees besides an inline body (spool/spool.h:
// the inline limit is "less 64 KiB for the envelope"), less a margin for the record's
// own fields; RCPTs that would pass it are refused with 452 4.5.3.
inline constexpr size_t kMaxEnvelopeBytes = 60 << 10;
// The smallest and largest ServerOptions::stream_chunk_size.
inline constexpr size_t kMinStreamChunk = 4 << 10;
inline constexpr size_t kMaxStreamChunk = 4 << 20;
// The longest HELO/EHLO argument kept in the metadata.
inline constexpr size_t kMaxHeloInMetadata = 100;

// Sockets bound and listening, before the server that serves them (and its spool) exists,
// so that a process can bind as root, give up root, then open its spool as the user that
// owns it. Closes them unless a Server took them. Thread-compatible.
class Listeners {
 public:
  // Binds and listens on every address of `addresses` (ServerOptions::listen).
  static StatusOr<Listeners> Bind(const std::vector<std::string>& addresses);
  Listeners() = default;
  Listeners(Listeners&& other) noexcept { *this = std::move(other); }
  Listeners& operator=(Listeners&& other) noexcept;
  ~Listeners();

  // The bound addresses, "127.0.0.1:2525" or "[::1]:2525", in the order given.
  const std::vector<std::string>& addresses() const { return bound_; }

 private:
  friend class Server;
  std::vector<int> fds_;
  std::vector<std::string> bound_;
};

class Server {
 public:
  // Serves `listeners` (Listeners::Bind(options.listen)). `spool` must outlive the
  // server; its options().max_message_size is the SIZE advertised and enforced.
  static StatusOr<std::unique_ptr<Server>> Create(Spool* spool, const ServerOptions& options,
                                                  Listeners listeners);
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
  // What a spool thread or a write thread hands back to the loop.
  struct Completion {
    enum class Kind {
      kCommit,  // the message's result
      kChunk,   // a piece of a streamed body is durable (status OK) or failed
    };
    uint64_t serial;
    Kind kind;
    size_t bytes;  // pending bytes (max_pending_bytes) this work held
    StatusOr<MessageId> result;
  };
  // What the loop knows of one client address.
  struct Client {
    size_t connections = 0;
    double tokens = 0;  // the rate's bucket
    int64_t refilled_ms = 0;
  };

  Server(Spool* spool, const ServerOptions& options);
  void Accept(int listen_fd);
  // Whether a connection from `host` may be served now; counts it if so.
  bool AdmitClient(const std::string& host, int64_t now_ms);
  void OnSessionEvent(Session& s, uint32_t events);
  void ProcessSession(Session& s, uint32_t events);
  void ReadInput(Session& s);
  void ProcessInput(Session& s);
  // Decodes DATA from s.in at *pos; false when the session must wait (for input or a
  // write).
  bool ProcessData(Session& s, size_t* pos);
  void HandleLine(Session& s, std::string_view line);
  void HandleMail(Session& s, std::string_view arg);
  void HandleRcpt(Session& s, std::string_view arg);
  void HandleData(Session& s, std::string_view arg);
  void FinishData(Session& s);
  Envelope MakeEnvelope(Session& s);
  // Hands s.body to the write threads: appended to the message's BodyWriter (begun now if
  // need be), and committed when `commit`.
  void WriteBody(Session& s, bool commit);
  void Post(Completion c);
  void DrainCompletions();
  void Reply(Session& s, std::string_view line);
  void ReplyError(Session& s, std::string_view line);
  void ReplyStatus(Session& s, const Status& status);
  bool RefusedByAdmission(Session& s, uint64_t expected_size);
  void ResetTransaction(Session& s);
  void CloseAfterReply(Session& s);
  // Answers a session whose allocation failed (451) and closes it.
  void OutOfMemory(Session& s);
  void Flush(Session& s);
  void UpdateInterest(Session& s);
  // Closes the socket and forgets the session. Invalidates `s`.
  void Close(Session& s);
  void MaybeDrain(Session& s);
  void BeginDrain();
  void Sweep(int64_t now_ms);
  void SetListenersEnabled(bool enabled);
  bool OverBudget() const { return pending_bytes_ >= options_.max_pending_bytes; }
  // Frees `bytes` of the budget (the bytes are durable or dropped).
  void ReleasePending(size_t bytes);
  // Over the budget: hands what sessions in DATA hold (a fraction of a chunk or more) to
  // the write threads, so that the budget frees itself.
  void RelieveBudget();

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
  std::unordered_map<std::string, Client> clients_;
  uint64_t next_serial_;
  size_t work_in_flight_ = 0;  // commits and chunk writes not yet completed
  uint64_t pending_bytes_ = 0;
  bool listeners_enabled_ = true;
  bool draining_ = false;
  int64_t drain_deadline_ms_ = 0;
  std::vector<Completion> completions_scratch_;

  std::atomic<bool> stop_requested_{false};
  Mutex mu_;
  std::vector<Completion> completions_ ABSL_GUARDED_BY(mu_);
  // The write threads; their jobs post to completions_ and wake_fd_. ~Server stops them
  // first.
  std::unique_ptr<WorkerPool> writers_;
};

}  // namespace spool::smtpd

#endif  // SPOOL_TOOLS_SMTPD_SERVER_H_
