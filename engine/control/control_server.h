// The server of a spool's control channel (spool/control.h): a UNIX socket in a shard
// directory, served on threads of its own. Private to the engine; Spool::Open starts one
// for a writable spool when Options::control_socket is set, and ~Spool stops it first.
//
// Threads: one accepts connections and checks each peer (SO_PEERCRED: the directory's
// owner or root); each accepted connection gets a thread of its own (at most
// kMaxConnections at once) that reads request lines and runs them with RunControlRequest.
// The requests use the spool's public API only, and its asynchronous calls where there
// are any, so they wait for the disk on these threads, never on the write path's.
//
// Thread-safety: Start and the destructor are called by the spool's open and close, once
// each; nothing else is public.

#ifndef SPOOL_CONTROL_CONTROL_SERVER_H_
#define SPOOL_CONTROL_CONTROL_SERVER_H_

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <list>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "spool/spool.h"
#include "spool/status.h"
#include "util/mutex.h"

namespace spool::control {

// Connections served at once; one more is told so and closed.
inline constexpr size_t kMaxConnections = 8;
// The longest request line (a bulk request may carry many ids: about 1.3 M of them).
inline constexpr size_t kMaxRequestBytes = 32u << 20;

// The path of the socket in `dir`, short enough for sockaddr_un: the plain path when it
// fits, else through /proc/self/fd/DIRFD with *dir_fd opened on `dir` (the caller closes
// it once bound or connected).
StatusOr<std::string> SocketAddressPath(const std::string& dir, int* dir_fd);

class ControlServer {
 public:
  // Binds kControlSocketName in `dir` (replacing a stale socket left by a process that
  // died: the caller holds the spool's lock, so nobody else serves it), makes it 0600, and
  // starts accepting. REQUIRES: `spool` outlives the server.
  // Errors: kIoError, kPermission (socket, bind, listen).
  static StatusOr<std::unique_ptr<ControlServer>> Start(Spool* spool, const std::string& dir);

  // Stops accepting, removes the socket, ends every connection (a request under way
  // finishes the group of changes it is applying; what it reported is durable) and joins
  // the threads.
  ~ControlServer();

 private:
  struct Connection {
    int fd = -1;
    std::thread thread;
    std::atomic<bool> finished{false};
  };

  ControlServer(Spool* spool, std::string path, int listen_fd, int wake_fd, uid_t owner)
      : spool_(spool),
        path_(std::move(path)),
        listen_fd_(listen_fd),
        wake_fd_(wake_fd),
        owner_(owner) {}
  void AcceptLoop();
  void Serve(Connection* c);
  // Joins and drops the connections whose threads are done.
  void Reap() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Spool* const spool_;
  const std::string path_;
  const int listen_fd_;
  const int wake_fd_;  // an eventfd: readable once the server stops
  const uid_t owner_;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
  Mutex mu_;
  std::list<Connection> connections_ ABSL_GUARDED_BY(mu_);
};

}  // namespace spool::control

#endif  // SPOOL_CONTROL_CONTROL_SERVER_H_
