// The asynchronous calls of the C API (spool/c.h) and their completions: a callback's
// outcome is queued by the spool's thread and run by the application's thread in
// spool_run_completions, which the completion fd (an eventfd) wakes.

#include "spool/c.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <deque>
#include <utility>

#include "capi/c_api_internal.h"
#include "io/errno_status.h"
#include "spool/logging.h"
#include "spool/message_id.h"
#include "spool/spool.h"
#include "spool/status.h"
#include "util/mutex.h"

namespace spool::capi {

CompletionQueue::~CompletionQueue() {
  if (fd_ >= 0) close(fd_);
}

Status CompletionQueue::Init() {
  fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd_ < 0) return io::ErrnoToStatus(errno, "eventfd", "the completion fd");
  return Status::Ok();
}

void CompletionQueue::Push(const Completion& c) {
  MutexLock l(&mu_);
  const bool was_empty = ready_.empty();
  ready_.push_back(c);
  if (was_empty) {
    const uint64_t one = 1;
    // Cannot fail: the counter is at most 1 and fd_ is a valid eventfd.
    ssize_t n = write(fd_, &one, sizeof(one));
    (void)n;
  }
}

size_t CompletionQueue::Run() {
  std::deque<Completion> batch;
  {
    MutexLock l(&mu_);
    batch.swap(ready_);
    if (!batch.empty()) {
      uint64_t value = 0;
      ssize_t n = read(fd_, &value, sizeof(value));  // resets the counter to 0
      (void)n;
    }
  }
  for (const Completion& c : batch) c.cb(c.arg, c.rc, c.rc == 0 ? c.id : nullptr, &c.reply);
  return batch.size();
}

}  // namespace spool::capi

using spool::MessageId;
using spool::Status;
using spool::StatusOr;
using spool::capi::BodyView;
using spool::capi::CheckBody;
using spool::capi::Completion;
using spool::capi::CompletionQueue;
using spool::capi::Fail;
using spool::capi::FillReply;
using spool::capi::Guard;
using spool::capi::Invalid;
using spool::capi::SpoolOf;
using spool::capi::Succeed;
using spool::capi::ToEnvelope;
using spool::capi::WriteId;

extern "C" {

// ---- Asynchronous enqueue ----------------------------------------------------------------

int spool_enqueue_async(spool_t* s, const spool_envelope_t* envelope, const void* body,
                        size_t body_len, spool_enqueue_cb cb, void* arg, spool_reply_t* err) {
  static const char kFn[] = "spool_enqueue_async";
  return Guard(err, [&]() -> int {
    if (s == nullptr) return Fail(Invalid(kFn, "the spool is NULL"), err);
    if (cb == nullptr) return Fail(Invalid(kFn, "the callback is NULL"), err);
    if (envelope == nullptr) return Fail(Invalid(kFn, "the envelope is NULL"), err);
    if (Status st = CheckBody(kFn, body, body_len); !st.ok()) return Fail(st, err);
    CompletionQueue* queue = &s->completions;
    auto complete = [queue, cb, arg](const StatusOr<MessageId>& id) {
      Completion c;
      c.cb = cb;
      c.arg = arg;
      if (id.ok()) {
        WriteId(*id, c.id);
      } else {
        c.rc = -1;
        FillReply(id.status(), &c.reply);
        spool::Log(spool::LogLevel::kDebug, "spool_enqueue_async: " + id.status().ToString());
      }
      queue->Push(c);
    };
    // From here on every outcome, bad envelopes included, reaches the callback.
    StatusOr<spool::Spool*> sp = SpoolOf(kFn, s);
    if (!sp.ok()) {
      complete(sp.status());
      return Succeed(err);
    }
    StatusOr<spool::Envelope> env = ToEnvelope(kFn, envelope);
    if (!env.ok()) {
      complete(env.status());
      return Succeed(err);
    }
    (*sp)->EnqueueAsync(*env, BodyView(body, body_len), std::move(complete));
    return Succeed(err);
  });
}

int spool_completion_fd(const spool_t* s) { return s == nullptr ? -1 : s->completions.fd(); }

size_t spool_run_completions(spool_t* s) { return s == nullptr ? 0 : s->completions.Run(); }

}  // extern "C"
