// A fixed set of threads that run jobs in the order they were submitted: spool-smtpd's
// writes of streamed DATA (BodyWriter::Append and Commit block their thread for a group
// commit), kept off the event loop.
//
// Thread-safety: thread-safe. Submit may be called from any thread; the destructor must
// not run concurrently with Submit.

#ifndef SPOOL_TOOLS_SMTPD_WORKER_POOL_H_
#define SPOOL_TOOLS_SMTPD_WORKER_POOL_H_

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "util/mutex.h"

namespace spool::smtpd {

class WorkerPool {
 public:
  // Starts `threads` threads. REQUIRES: threads >= 1.
  explicit WorkerPool(int threads);
  // Runs every job already submitted, then joins the threads.
  ~WorkerPool();

  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Queues `job` to run on one of the threads. Never blocks for a job to finish. The queue
  // is not bounded here: the caller bounds what it has submitted and not seen finish.
  void Submit(std::function<void()> job);

 private:
  void Loop();

  Mutex mu_;
  std::deque<std::function<void()>> jobs_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace spool::smtpd

#endif  // SPOOL_TOOLS_SMTPD_WORKER_POOL_H_
