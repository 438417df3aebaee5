// Private to the C API (spool/c.h): the definitions of its opaque types and the helpers
// that the files implementing it share. Included only by engine/capi/c_api*.cc.
//
// The C API, one file per concern:
//   c_api.cc        open and close, enqueue (whole and streamed), read, remove, errors,
//                   options, the log callback; the helpers declared here
//   c_api_async.cc  asynchronous calls and their completions (the completion fd)
//   c_api_queue.cc  envelope and state, state updates, scans, admission, health,
//                   statistics and metrics
//   c_api_control.cc  the control channel (spool/c_control.h)
//
// Every entry point catches what the C++ side may throw (std::bad_alloc) and turns it into
// a -1 with a reply (Guard): no exception crosses into C. Failures are recorded per thread
// for spool_last_error_code/spool_last_error_detail (Record).

#ifndef SPOOL_CAPI_C_API_INTERNAL_H_
#define SPOOL_CAPI_C_API_INTERNAL_H_

#include <cstddef>
#include <deque>
#include <exception>
#include <memory>
#include <new>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "spool/c.h"
#include "spool/message_id.h"
#include "spool/spool.h"
#include "spool/status.h"
#include "util/mutex.h"

namespace spool::capi {

// *reply for `status` ({0, "", ""} when OK). `reply` may be null.
void FillReply(const Status& status, spool_reply_t* reply);
// Records `status` as this thread's last outcome and fills *err (may be null).
void Record(const Status& status, spool_reply_t* err);
// Record, then the int result of a failed call (-1) or of a successful one (0).
int Fail(const Status& status, spool_reply_t* err);
int Succeed(spool_reply_t* err);
// kInvalidArgument "function: what".
Status Invalid(const char* function, const char* what);

// Runs `body` (which returns an int result), turning an escaping exception into -1.
template <typename F>
int Guard(spool_reply_t* err, F&& body) {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return Fail(InternalError("out of memory"), err);
  } catch (const std::exception& e) {
    return Fail(InternalError(std::string("unexpected exception: ") + e.what()), err);
  }
}

// The directories of a comma-separated `dirs` (none empty).
StatusOr<std::vector<std::string>> SplitDirs(const char* function, const char* dirs);
// Arguments: a message id's text, an output buffer for one, an envelope, a body.
StatusOr<MessageId> ParseId(const char* function, const char* id);
Status CheckIdBuffer(const char* function, const char* id_out, size_t id_out_len);
// Writes the id's text and a NUL. REQUIRES: `out` holds SPOOL_ID_SIZE bytes.
void WriteId(const MessageId& id, char* out);
StatusOr<Envelope> ToEnvelope(const char* function, const spool_envelope_t* e);
Status CheckBody(const char* function, const void* body, size_t len);
inline std::string_view BodyView(const void* body, size_t len) {
  return len == 0 ? std::string_view() : std::string_view(static_cast<const char*>(body), len);
}

// spool_message_info_t in one allocation (PackedSize bytes, aligned for a pointer): the
// struct, the recipient pointers, the recipient statuses, then the strings.
size_t PackedSize(const MessageInfo& info);
void Pack(const MessageInfo& info, void* memory);

// One finished asynchronous call, waiting for spool_run_completions.
struct Completion {
  spool_enqueue_cb cb = nullptr;
  void* arg = nullptr;
  int rc = 0;
  char id[SPOOL_ID_SIZE] = {};
  spool_reply_t reply = {};
};

// Completions handed over from spool threads to the application's thread. The eventfd is
// readable exactly while the queue is not empty: the first push signals it, the swap that
// empties the queue drains it, both under the mutex. Thread-safe. Defined in
// c_api_async.cc.
class CompletionQueue {
 public:
  CompletionQueue() = default;
  ~CompletionQueue();
  CompletionQueue(const CompletionQueue&) = delete;
  CompletionQueue& operator=(const CompletionQueue&) = delete;

  Status Init();
  int fd() const { return fd_; }
  void Push(const Completion& c);
  // Runs the completions ready now on the calling thread; returns how many ran.
  size_t Run();

 private:
  int fd_ = -1;
  Mutex mu_;
  std::deque<Completion> ready_ ABSL_GUARDED_BY(mu_);
};

}  // namespace spool::capi

struct spool_options_t {
  spool::Options options;
};

struct spool_writer_t {
  spool_t* owner = nullptr;  // nullptr once the spool closed under it
  std::unique_ptr<spool::BodyWriter> writer;
};

struct spool_t {
  // Declared first, destroyed last: the spool's callbacks push into it until it is gone.
  spool::capi::CompletionQueue completions;
  spool::Mutex writers_mu;
  std::set<spool_writer_t*> writers ABSL_GUARDED_BY(writers_mu);
  std::unique_ptr<spool::Spool> spool;
};

namespace spool::capi {

// The spool of `s`, or why there is none (a NULL `s`, a closed spool).
StatusOr<Spool*> SpoolOf(const char* function, spool_t* s);

// A call over one id that answers one Status (hold, release, requeue, remove).
template <typename F>
int IdCall(const char* function, spool_t* s, const char* id, spool_reply_t* err, F&& call) {
  return Guard(err, [&]() -> int {
    StatusOr<Spool*> sp = SpoolOf(function, s);
    if (!sp.ok()) return Fail(sp.status(), err);
    StatusOr<MessageId> parsed = ParseId(function, id);
    if (!parsed.ok()) return Fail(parsed.status(), err);
    Status st = call(**sp, *parsed);
    if (!st.ok()) return Fail(st, err);
    return Succeed(err);
  });
}

}  // namespace spool::capi

#endif  // SPOOL_CAPI_C_API_INTERNAL_H_
