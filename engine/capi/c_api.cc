// The C API (spool/c.h) over the C++ API (spool/spool.h).
//
// Every entry point catches what the C++ side may throw (std::bad_alloc) and turns it into
// a -1 with a reply: no exception crosses into C. Failures are recorded per thread for
// spool_last_error_code/spool_last_error_detail.

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <memory>
#include <new>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "io/errno_status.h"
#include "spool/c.h"
#include "spool/logging.h"
#include "spool/message_id.h"
#include "spool/metrics.h"
#include "spool/smtp_reply.h"
#include "spool/spool.h"
#include "spool/status.h"
#include "util/mutex.h"

namespace {

using spool::Code;
using spool::MessageId;
using spool::Status;
using spool::StatusOr;

static_assert(SPOOL_ID_LEN == MessageId::kTextLength, "SPOOL_ID_LEN is MessageId::kTextLength");
static_assert(SPOOL_CODE_OK == static_cast<int>(Code::kOk));
static_assert(SPOOL_CODE_INVALID_ARGUMENT == static_cast<int>(Code::kInvalidArgument));
static_assert(SPOOL_CODE_NOT_FOUND == static_cast<int>(Code::kNotFound));
static_assert(SPOOL_CODE_TOO_BIG == static_cast<int>(Code::kTooBig));
static_assert(SPOOL_CODE_STORAGE_FULL == static_cast<int>(Code::kStorageFull));
static_assert(SPOOL_CODE_PERMISSION == static_cast<int>(Code::kPermission));
static_assert(SPOOL_CODE_IO_ERROR == static_cast<int>(Code::kIoError));
static_assert(SPOOL_CODE_CORRUPTION == static_cast<int>(Code::kCorruption));
static_assert(SPOOL_CODE_OVERLOAD == static_cast<int>(Code::kOverload));
static_assert(SPOOL_CODE_UNAVAILABLE == static_cast<int>(Code::kUnavailable));
static_assert(SPOOL_CODE_FAILED_PRECONDITION == static_cast<int>(Code::kFailedPrecondition));
static_assert(SPOOL_CODE_INTERNAL == static_cast<int>(Code::kInternal));
static_assert(SPOOL_STATE_QUEUED == static_cast<int>(spool::MessageState::kQueued));
static_assert(SPOOL_STATE_HELD == static_cast<int>(spool::MessageState::kHeld));
static_assert(SPOOL_STATE_CORRUPT == static_cast<int>(spool::MessageState::kCorrupt));
static_assert(SPOOL_RCPT_PENDING == static_cast<int>(spool::RecipientStatus::kPending));
static_assert(SPOOL_RCPT_DELIVERED == static_cast<int>(spool::RecipientStatus::kDelivered));
static_assert(SPOOL_RCPT_FAILED == static_cast<int>(spool::RecipientStatus::kFailed));
static_assert(SPOOL_RCPT_DEFERRED == static_cast<int>(spool::RecipientStatus::kDeferred));
static_assert(SPOOL_LOG_DEBUG == static_cast<int>(spool::LogLevel::kDebug));
static_assert(SPOOL_LOG_ERROR == static_cast<int>(spool::LogLevel::kError));

// The last outcome on this thread (spool_last_error_*).
thread_local int tls_code = SPOOL_CODE_OK;
thread_local std::string tls_detail;

void FillReply(const Status& status, spool_reply_t* reply) {
  if (reply == nullptr) return;
  if (status.ok()) {
    reply->code = 0;
    reply->enhanced[0] = '\0';
    reply->text[0] = '\0';
    return;
  }
  const spool::SmtpReply r = spool::SmtpReplyFor(status);
  reply->code = r.code;
  std::snprintf(reply->enhanced, sizeof(reply->enhanced), "%.*s",
                static_cast<int>(r.enhanced.size()), r.enhanced.data());
  std::snprintf(reply->text, sizeof(reply->text), "%.*s", static_cast<int>(r.text.size()),
                r.text.data());
}

void Record(const Status& status, spool_reply_t* err) {
  tls_code = static_cast<int>(status.code());
  if (status.ok()) {
    tls_detail.clear();
  } else {
    try {
      tls_detail = status.ToString();
    } catch (const std::exception&) {
      tls_detail.clear();  // out of memory: the code alone must do
    }
  }
  FillReply(status, err);
}

int Fail(const Status& status, spool_reply_t* err) {
  Record(status, err);
  return -1;
}

int Succeed(spool_reply_t* err) {
  Record(Status::Ok(), err);
  return 0;
}

Status Invalid(const char* function, const char* what) {
  return spool::InvalidArgumentError(std::string(function) + ": " + what);
}

// Runs `body` (which returns an int result), turning an escaping exception into -1.
template <typename F>
int Guard(spool_reply_t* err, F&& body) {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return Fail(spool::InternalError("out of memory"), err);
  } catch (const std::exception& e) {
    return Fail(spool::InternalError(std::string("unexpected exception: ") + e.what()), err);
  }
}

StatusOr<MessageId> ParseId(const char* function, const char* id) {
  if (id == nullptr) return Invalid(function, "the message id is NULL");
  StatusOr<MessageId> parsed = MessageId::Parse(id);
  if (!parsed.ok()) return parsed.status().WithContext(function);
  return parsed;
}

Status CheckIdBuffer(const char* function, const char* id_out, size_t id_out_len) {
  if (id_out == nullptr) return Invalid(function, "id_out is NULL");
  if (id_out_len < SPOOL_ID_SIZE) {
    return Invalid(function, ("id_out_len " + std::to_string(id_out_len) +
                              " is under SPOOL_ID_SIZE (" + std::to_string(SPOOL_ID_SIZE) + ")")
                                 .c_str());
  }
  return Status::Ok();
}

void WriteId(const MessageId& id, char* out) {
  const std::string text = id.ToString();
  std::memcpy(out, text.data(), text.size());
  out[text.size()] = '\0';
}

StatusOr<spool::Envelope> ToEnvelope(const char* function, const spool_envelope_t* e) {
  if (e == nullptr) return Invalid(function, "the envelope is NULL");
  if (e->sender == nullptr) return Invalid(function, "the sender is NULL (use \"\" for <>)");
  if (e->n_recipients == 0) return Invalid(function, "a message needs a recipient");
  if (e->recipients == nullptr) return Invalid(function, "recipients is NULL");
  if (e->metadata == nullptr && e->metadata_len != 0) {
    return Invalid(function, "metadata is NULL but metadata_len is not 0");
  }
  spool::Envelope out;
  out.sender = e->sender;
  out.recipients.reserve(e->n_recipients);
  for (size_t i = 0; i < e->n_recipients; ++i) {
    if (e->recipients[i] == nullptr) {
      return Invalid(function, ("recipient " + std::to_string(i) + " is NULL").c_str());
    }
    out.recipients.emplace_back(e->recipients[i]);
  }
  if (e->queue != nullptr) out.queue = e->queue;
  if (e->metadata_len != 0) {
    out.metadata.assign(static_cast<const char*>(e->metadata), e->metadata_len);
  }
  return out;
}

Status CheckBody(const char* function, const void* body, size_t len) {
  if (body == nullptr && len != 0) return Invalid(function, "body is NULL but body_len is not 0");
  return Status::Ok();
}

std::string_view BodyView(const void* body, size_t len) {
  return len == 0 ? std::string_view() : std::string_view(static_cast<const char*>(body), len);
}

// spool_message_info_t in one allocation: the struct, the recipient pointers, the recipient
// statuses, then the strings (sender, queue, metadata, recipients), each NUL-terminated.
size_t PackedSize(const spool::MessageInfo& info) {
  const size_t n = info.envelope.recipients.size();
  size_t size = sizeof(spool_message_info_t) + n * sizeof(const char*) + n * sizeof(int);
  size += info.envelope.sender.size() + 1 + info.envelope.queue.size() + 1 +
          info.envelope.metadata.size() + 1;
  for (const std::string& r : info.envelope.recipients) size += r.size() + 1;
  return size;
}

void Pack(const spool::MessageInfo& info, void* memory) {
  static_assert(sizeof(spool_message_info_t) % alignof(const char*) == 0);
  static_assert(alignof(const char*) % alignof(int) == 0);
  const size_t n = info.envelope.recipients.size();
  auto* out = new (memory) spool_message_info_t{};
  auto** recipients = reinterpret_cast<const char**>(out + 1);
  int* status = reinterpret_cast<int*>(recipients + n);
  char* chars = reinterpret_cast<char*>(status + n);
  auto put = [&chars](std::string_view s) {
    char* at = chars;
    if (!s.empty()) std::memcpy(at, s.data(), s.size());
    at[s.size()] = '\0';
    chars += s.size() + 1;
    return at;
  };
  WriteId(info.id, out->id);
  out->sender = put(info.envelope.sender);
  out->queue = put(info.envelope.queue);
  out->metadata = put(info.envelope.metadata);
  out->metadata_len = info.envelope.metadata.size();
  for (size_t i = 0; i < n; ++i) {
    recipients[i] = put(info.envelope.recipients[i]);
    status[i] = i < info.recipient_status.size() ? static_cast<int>(info.recipient_status[i])
                                                 : SPOOL_RCPT_PENDING;
  }
  out->recipients = recipients;
  out->recipient_status = status;
  out->n_recipients = n;
  out->state = static_cast<int>(info.state);
  out->size = info.size;
  out->arrival_ms = info.arrival_ms;
  out->next_attempt_ms = info.next_attempt_ms;
  out->attempts = info.attempts;
}

// One finished asynchronous enqueue, waiting for spool_run_completions.
struct Completion {
  spool_enqueue_cb cb = nullptr;
  void* arg = nullptr;
  int rc = 0;
  char id[SPOOL_ID_SIZE] = {};
  spool_reply_t reply = {};
};

// Completions handed over from spool threads to the application's thread. The eventfd is
// readable exactly while the queue is not empty: the first push signals it, the swap that
// empties the queue drains it, both under the mutex. Thread-safe.
class CompletionQueue {
 public:
  CompletionQueue() = default;
  ~CompletionQueue() {
    if (fd_ >= 0) close(fd_);
  }
  CompletionQueue(const CompletionQueue&) = delete;
  CompletionQueue& operator=(const CompletionQueue&) = delete;

  Status Init() {
    fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd_ < 0) return spool::io::ErrnoToStatus(errno, "eventfd", "the completion fd");
    return Status::Ok();
  }
  int fd() const { return fd_; }

  void Push(const Completion& c) {
    spool::MutexLock l(&mu_);
    const bool was_empty = ready_.empty();
    ready_.push_back(c);
    if (was_empty) {
      const uint64_t one = 1;
      // Cannot fail: the counter is at most 1 and fd_ is a valid eventfd.
      ssize_t n = write(fd_, &one, sizeof(one));
      (void)n;
    }
  }

  size_t Run() {
    std::deque<Completion> batch;
    {
      spool::MutexLock l(&mu_);
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

 private:
  int fd_ = -1;
  spool::Mutex mu_;
  std::deque<Completion> ready_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

struct spool_options_t {
  spool::Options options;
};

struct spool_writer_t {
  spool_t* owner = nullptr;  // nullptr once the spool closed under it
  std::unique_ptr<spool::BodyWriter> writer;
};

struct spool_t {
  // Declared first, destroyed last: the spool's callbacks push into it until it is gone.
  CompletionQueue completions;
  spool::Mutex writers_mu;
  std::set<spool_writer_t*> writers ABSL_GUARDED_BY(writers_mu);
  std::unique_ptr<spool::Spool> spool;
};

namespace {

StatusOr<spool::Spool*> SpoolOf(const char* function, spool_t* s) {
  if (s == nullptr) return Invalid(function, "the spool is NULL");
  if (s->spool == nullptr)
    return spool::UnavailableError(std::string(function) + ": the spool is closed");
  return s->spool.get();
}

StatusOr<std::vector<std::string>> SplitDirs(const char* dirs) {
  if (dirs == nullptr) return Invalid("spool_open", "dirs is NULL");
  std::vector<std::string> out;
  std::string_view rest(dirs);
  for (;;) {
    const size_t comma = rest.find(',');
    std::string_view dir = rest.substr(0, comma);
    if (dir.empty()) {
      return Invalid("spool_open",
                     ("empty directory name in dirs \"" + std::string(dirs) + "\"").c_str());
    }
    out.emplace_back(dir);
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return out;
}

spool_t* Open(const char* dirs, const spool_options_t* o, spool_reply_t* err) {
  spool_t* result = nullptr;
  Guard(err, [&]() -> int {
    StatusOr<std::vector<std::string>> list = SplitDirs(dirs);
    if (!list.ok()) return Fail(list.status(), err);
    spool::Options options = o != nullptr ? o->options : spool::Options();
    options.dirs = std::move(*list);
    auto s = std::make_unique<spool_t>();
    if (Status st = s->completions.Init(); !st.ok()) return Fail(st, err);
    StatusOr<std::unique_ptr<spool::Spool>> opened = spool::Spool::Open(options);
    if (!opened.ok()) return Fail(opened.status(), err);
    s->spool = std::move(*opened);
    result = s.release();
    return Succeed(err);
  });
  return result;
}

// Hold, release, requeue, remove: one id, one Status.
template <typename F>
int IdCall(const char* function, spool_t* s, const char* id, spool_reply_t* err, F&& call) {
  return Guard(err, [&]() -> int {
    StatusOr<spool::Spool*> sp = SpoolOf(function, s);
    if (!sp.ok()) return Fail(sp.status(), err);
    StatusOr<MessageId> parsed = ParseId(function, id);
    if (!parsed.ok()) return Fail(parsed.status(), err);
    Status st = call(**sp, *parsed);
    if (!st.ok()) return Fail(st, err);
    return Succeed(err);
  });
}

}  // namespace

extern "C" {

// ---- Open, enqueue, read, remove: the core calls -------------------------------------------

spool_t* spool_open(const char* dirs, spool_reply_t* err) { return Open(dirs, nullptr, err); }

spool_t* spool_open_with_options(const char* dirs, const spool_options_t* o, spool_reply_t* err) {
  return Open(dirs, o, err);
}

void spool_close(spool_t* s) {
  if (s == nullptr) return;
  {
    spool::MutexLock l(&s->writers_mu);
    for (spool_writer_t* w : s->writers) {
      w->writer.reset();  // aborts: a writer must not outlive its Spool
      w->owner = nullptr;
    }
    s->writers.clear();
  }
  // Finishes the commits in flight: their callbacks land in the completion queue.
  s->spool.reset();
  s->completions.Run();
  delete s;
}

int spool_enqueue(spool_t* s, const char* sender, const char* const* recipients,
                  size_t n_recipients, const void* body, size_t body_len, char* id_out,
                  size_t id_out_len, spool_reply_t* err) {
  spool_envelope_t e = {};
  e.sender = sender;
  e.recipients = recipients;
  e.n_recipients = n_recipients;
  return spool_enqueue_envelope(s, &e, body, body_len, id_out, id_out_len, err);
}

int spool_enqueue_envelope(spool_t* s, const spool_envelope_t* envelope, const void* body,
                           size_t body_len, char* id_out, size_t id_out_len, spool_reply_t* err) {
  static const char kFn[] = "spool_enqueue";
  return Guard(err, [&]() -> int {
    StatusOr<spool::Spool*> sp = SpoolOf(kFn, s);
    if (!sp.ok()) return Fail(sp.status(), err);
    StatusOr<spool::Envelope> env = ToEnvelope(kFn, envelope);
    if (!env.ok()) return Fail(env.status(), err);
    if (Status st = CheckBody(kFn, body, body_len); !st.ok()) return Fail(st, err);
    // Checked before anything is stored: a stored message whose id cannot be returned
    // would be accepted by nobody.
    if (Status st = CheckIdBuffer(kFn, id_out, id_out_len); !st.ok()) return Fail(st, err);
    StatusOr<MessageId> id = (*sp)->Enqueue(*env, BodyView(body, body_len));
    if (!id.ok()) return Fail(id.status(), err);
    WriteId(*id, id_out);
    return Succeed(err);
  });
}

int spool_read_body(spool_t* s, const char* id, void** body_out, size_t* len_out,
                    spool_reply_t* err) {
  static const char kFn[] = "spool_read_body";
  return Guard(err, [&]() -> int {
    StatusOr<spool::Spool*> sp = SpoolOf(kFn, s);
    if (!sp.ok()) return Fail(sp.status(), err);
    if (body_out == nullptr || len_out == nullptr) {
      return Fail(Invalid(kFn, "body_out or len_out is NULL"), err);
    }
    *body_out = nullptr;
    *len_out = 0;
    StatusOr<MessageId> parsed = ParseId(kFn, id);
    if (!parsed.ok()) return Fail(parsed.status(), err);
    StatusOr<std::string> body = (*sp)->ReadBody(*parsed);
    if (!body.ok()) return Fail(body.status(), err);
    char* out = static_cast<char*>(std::malloc(body->size() + 1));
    if (out == nullptr) return Fail(spool::InternalError("out of memory"), err);
    if (!body->empty()) std::memcpy(out, body->data(), body->size());
    out[body->size()] = '\0';
    *body_out = out;
    *len_out = body->size();
    return Succeed(err);
  });
}

int spool_remove(spool_t* s, const char* id, spool_reply_t* err) {
  return IdCall("spool_remove", s, id, err,
                [](spool::Spool& sp, const MessageId& m) { return sp.Remove(m); });
}

void spool_free(void* p) { std::free(p); }

// ---- Errors ------------------------------------------------------------------------------

int spool_last_error_code(void) { return tls_code; }
const char* spool_last_error_detail(void) { return tls_detail.c_str(); }

// ---- Options -----------------------------------------------------------------------------

spool_options_t* spool_options_create(void) { return new spool_options_t(); }
void spool_options_destroy(spool_options_t* o) { delete o; }
void spool_options_set_create_if_missing(spool_options_t* o, int on) {
  if (o != nullptr) o->options.create_if_missing = on != 0;
}
void spool_options_set_read_only(spool_options_t* o, int on) {
  if (o != nullptr) o->options.read_only = on != 0;
}
void spool_options_set_max_message_size(spool_options_t* o, uint64_t bytes) {
  if (o != nullptr) o->options.max_message_size = bytes;
}
void spool_options_set_segment_size(spool_options_t* o, uint64_t bytes) {
  if (o != nullptr) o->options.segment_size = bytes;
}
void spool_options_set_stream_chunk_size(spool_options_t* o, uint64_t bytes) {
  if (o != nullptr) o->options.stream_chunk_size = bytes;
}
void spool_options_set_io_backend(spool_options_t* o, const char* backend) {
  if (o != nullptr) o->options.io_backend = backend != nullptr ? backend : "auto";
}
void spool_options_set_direct_io(spool_options_t* o, int on) {
  if (o != nullptr) o->options.direct_io = on != 0;
}
void spool_options_set_max_commit_wait_ms(spool_options_t* o, int64_t ms) {
  if (o != nullptr) o->options.max_commit_wait_ms = ms;
}

void spool_options_set_async_commit_wait_ms(spool_options_t* o, int64_t ms) {
  if (o != nullptr) o->options.async_commit_wait_ms = ms;
}
void spool_options_set_min_free_bytes(spool_options_t* o, uint64_t bytes) {
  if (o != nullptr) o->options.min_free_bytes = bytes;
}
void spool_options_set_min_free_inodes(spool_options_t* o, uint64_t inodes) {
  if (o != nullptr) o->options.min_free_inodes = inodes;
}
void spool_options_set_checkpoint_interval_ms(spool_options_t* o, int64_t ms) {
  if (o != nullptr) o->options.checkpoint_interval_ms = ms;
}
void spool_options_set_reclaim(spool_options_t* o, int on) {
  if (o != nullptr) o->options.reclaim = on != 0;
}
void spool_options_set_reprobe_interval_ms(spool_options_t* o, int64_t ms) {
  if (o != nullptr) o->options.reprobe_interval_ms = ms;
}
void spool_options_set_scrub_bytes_per_sec(spool_options_t* o, uint64_t bytes) {
  if (o != nullptr) o->options.scrub_bytes_per_sec = bytes;
}
void spool_options_set_lock_holder(spool_options_t* o, const char* holder) {
  if (o != nullptr) o->options.lock_holder = holder != nullptr ? holder : "";
}

uint64_t spool_max_message_size(const spool_t* s) {
  if (s == nullptr || s->spool == nullptr) return 0;
  return s->spool->options().max_message_size;
}

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

// ---- Streamed bodies ---------------------------------------------------------------------

spool_writer_t* spool_begin(spool_t* s, const spool_envelope_t* envelope, spool_reply_t* err) {
  static const char kFn[] = "spool_begin";
  spool_writer_t* result = nullptr;
  Guard(err, [&]() -> int {
    StatusOr<spool::Spool*> sp = SpoolOf(kFn, s);
    if (!sp.ok()) return Fail(sp.status(), err);
    StatusOr<spool::Envelope> env = ToEnvelope(kFn, envelope);
    if (!env.ok()) return Fail(env.status(), err);
    auto w = std::make_unique<spool_writer_t>();
    StatusOr<std::unique_ptr<spool::BodyWriter>> writer = (*sp)->BeginMessage(*env);
    if (!writer.ok()) return Fail(writer.status(), err);
    w->writer = std::move(*writer);
    w->owner = s;
    {
      spool::MutexLock l(&s->writers_mu);
      s->writers.insert(w.get());
    }
    result = w.release();
    return Succeed(err);
  });
  return result;
}

int spool_append(spool_writer_t* w, const void* data, size_t len, spool_reply_t* err) {
  static const char kFn[] = "spool_append";
  return Guard(err, [&]() -> int {
    if (w == nullptr) return Fail(Invalid(kFn, "the writer is NULL"), err);
    if (w->writer == nullptr) {
      return Fail(spool::UnavailableError("spool_append: the spool was closed"), err);
    }
    if (Status st = CheckBody(kFn, data, len); !st.ok()) return Fail(st, err);
    if (Status st = w->writer->Append(BodyView(data, len)); !st.ok()) return Fail(st, err);
    return Succeed(err);
  });
}

namespace {

// Ends a writer: unregisters it from its spool and frees it.
void FreeWriter(spool_writer_t* w) {
  if (w->owner != nullptr) {
    spool::MutexLock l(&w->owner->writers_mu);
    w->owner->writers.erase(w);
  }
  delete w;
}

}  // namespace

int spool_commit(spool_writer_t* w, char* id_out, size_t id_out_len, spool_reply_t* err) {
  static const char kFn[] = "spool_commit";
  std::unique_ptr<spool_writer_t, void (*)(spool_writer_t*)> owned(w, FreeWriter);
  return Guard(err, [&]() -> int {
    if (w == nullptr) {
      owned.release();
      return Fail(Invalid(kFn, "the writer is NULL"), err);
    }
    if (w->writer == nullptr) {
      return Fail(spool::UnavailableError("spool_commit: the spool was closed"), err);
    }
    if (Status st = CheckIdBuffer(kFn, id_out, id_out_len); !st.ok()) {
      w->writer->Abort();
      return Fail(st, err);
    }
    StatusOr<MessageId> id = w->writer->Commit();
    if (!id.ok()) return Fail(id.status(), err);
    WriteId(*id, id_out);
    return Succeed(err);
  });
}

void spool_abort(spool_writer_t* w) {
  if (w == nullptr) return;
  if (w->writer != nullptr) w->writer->Abort();
  FreeWriter(w);
}

// ---- Envelope and state ------------------------------------------------------------------

int spool_get(spool_t* s, const char* id, spool_message_info_t** info_out, spool_reply_t* err) {
  static const char kFn[] = "spool_get";
  return Guard(err, [&]() -> int {
    StatusOr<spool::Spool*> sp = SpoolOf(kFn, s);
    if (!sp.ok()) return Fail(sp.status(), err);
    if (info_out == nullptr) return Fail(Invalid(kFn, "info_out is NULL"), err);
    *info_out = nullptr;
    StatusOr<MessageId> parsed = ParseId(kFn, id);
    if (!parsed.ok()) return Fail(parsed.status(), err);
    StatusOr<spool::MessageInfo> info = (*sp)->Get(*parsed);
    if (!info.ok()) return Fail(info.status(), err);
    void* memory = std::malloc(PackedSize(*info));
    if (memory == nullptr) return Fail(spool::InternalError("out of memory"), err);
    Pack(*info, memory);
    *info_out = static_cast<spool_message_info_t*>(memory);
    return Succeed(err);
  });
}

void spool_message_info_free(spool_message_info_t* info) { std::free(info); }

int spool_read_body_stream(spool_t* s, const char* id, spool_body_sink sink, void* arg,
                           spool_reply_t* err) {
  static const char kFn[] = "spool_read_body_stream";
  return Guard(err, [&]() -> int {
    StatusOr<spool::Spool*> sp = SpoolOf(kFn, s);
    if (!sp.ok()) return Fail(sp.status(), err);
    if (sink == nullptr) return Fail(Invalid(kFn, "the sink is NULL"), err);
    StatusOr<MessageId> parsed = ParseId(kFn, id);
    if (!parsed.ok()) return Fail(parsed.status(), err);
    bool stopped = false;
    Status st = (*sp)->ReadBodyStream(*parsed, [&](std::string_view piece) -> Status {
      if (sink(arg, piece.data(), piece.size()) != 0) {
        stopped = true;
        return spool::InternalError("stopped by the sink");  // not an error: see below
      }
      return Status::Ok();
    });
    if (!st.ok() && !stopped) return Fail(st, err);
    return Succeed(err);
  });
}

// ---- State updates -----------------------------------------------------------------------

int spool_record_attempt(spool_t* s, const char* id, const spool_rcpt_result_t* results,
                         size_t n_results, int64_t next_attempt_ms, int count_attempt,
                         spool_reply_t* err) {
  static const char kFn[] = "spool_record_attempt";
  return Guard(err, [&]() -> int {
    StatusOr<spool::Spool*> sp = SpoolOf(kFn, s);
    if (!sp.ok()) return Fail(sp.status(), err);
    StatusOr<MessageId> parsed = ParseId(kFn, id);
    if (!parsed.ok()) return Fail(parsed.status(), err);
    if (results == nullptr && n_results != 0) {
      return Fail(Invalid(kFn, "results is NULL but n_results is not 0"), err);
    }
    spool::AttemptResult result;
    for (size_t i = 0; i < n_results; ++i) {
      const int status = results[i].status;
      if (status < SPOOL_RCPT_PENDING || status > SPOOL_RCPT_DEFERRED) {
        return Fail(Invalid(kFn, ("results[" + std::to_string(i) + "].status " +
                                  std::to_string(status) + " is not a SPOOL_RCPT_ value")
                                     .c_str()),
                    err);
      }
      result.recipients.emplace_back(results[i].index, static_cast<spool::RecipientStatus>(status));
    }
    if (next_attempt_ms >= 0) result.next_attempt_ms = next_attempt_ms;
    result.count_attempt = count_attempt != 0;
    if (Status st = (*sp)->RecordAttempt(*parsed, result); !st.ok()) return Fail(st, err);
    return Succeed(err);
  });
}

int spool_hold(spool_t* s, const char* id, spool_reply_t* err) {
  return IdCall("spool_hold", s, id, err,
                [](spool::Spool& sp, const MessageId& m) { return sp.Hold(m); });
}

int spool_release(spool_t* s, const char* id, spool_reply_t* err) {
  return IdCall("spool_release", s, id, err,
                [](spool::Spool& sp, const MessageId& m) { return sp.Release(m); });
}

int spool_requeue(spool_t* s, const char* id, spool_reply_t* err) {
  return IdCall("spool_requeue", s, id, err,
                [](spool::Spool& sp, const MessageId& m) { return sp.Requeue(m); });
}

// ---- Scans -------------------------------------------------------------------------------

int64_t spool_now_ms(void) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int spool_scan_due(spool_t* s, const char* queue, int64_t now_ms, spool_id_t* ids, size_t capacity,
                   size_t* n_out, spool_reply_t* err) {
  static const char kFn[] = "spool_scan_due";
  return Guard(err, [&]() -> int {
    StatusOr<spool::Spool*> sp = SpoolOf(kFn, s);
    if (!sp.ok()) return Fail(sp.status(), err);
    if (n_out == nullptr) return Fail(Invalid(kFn, "n_out is NULL"), err);
    *n_out = 0;
    if (ids == nullptr && capacity != 0) return Fail(Invalid(kFn, "ids is NULL"), err);
    if (capacity == 0) return Succeed(err);
    StatusOr<std::vector<MessageId>> due =
        (*sp)->ScanDue(queue != nullptr ? queue : "default", now_ms, capacity);
    if (!due.ok()) return Fail(due.status(), err);
    const size_t n = std::min(capacity, due->size());
    for (size_t i = 0; i < n; ++i) WriteId((*due)[i], ids[i].text);
    *n_out = n;
    return Succeed(err);
  });
}

int spool_foreach(spool_t* s, spool_visit_cb visit, void* arg, spool_reply_t* err) {
  static const char kFn[] = "spool_foreach";
  return Guard(err, [&]() -> int {
    StatusOr<spool::Spool*> sp = SpoolOf(kFn, s);
    if (!sp.ok()) return Fail(sp.status(), err);
    if (visit == nullptr) return Fail(Invalid(kFn, "the visitor is NULL"), err);
    std::vector<std::max_align_t> buffer;
    Status st = (*sp)->ForEach([&](const spool::MessageInfo& info) {
      const size_t size = PackedSize(info);
      buffer.resize((size + sizeof(std::max_align_t) - 1) / sizeof(std::max_align_t));
      Pack(info, buffer.data());
      return visit(arg, reinterpret_cast<const spool_message_info_t*>(buffer.data())) == 0;
    });
    if (!st.ok()) return Fail(st, err);
    return Succeed(err);
  });
}

// ---- Admission, health, statistics -------------------------------------------------------

int spool_admission(spool_t* s, uint64_t expected_size, spool_reply_t* err) {
  static const char kFn[] = "spool_admission";
  return Guard(err, [&]() -> int {
    StatusOr<spool::Spool*> sp = SpoolOf(kFn, s);
    if (!sp.ok()) return Fail(sp.status(), err);
    if (Status st = (*sp)->Admission(expected_size); !st.ok()) return Fail(st, err);
    return Succeed(err);
  });
}

int spool_get_health(spool_t* s, spool_health_t* out, spool_reply_t* err) {
  static const char kFn[] = "spool_get_health";
  return Guard(err, [&]() -> int {
    StatusOr<spool::Spool*> sp = SpoolOf(kFn, s);
    if (!sp.ok()) return Fail(sp.status(), err);
    if (out == nullptr) return Fail(Invalid(kFn, "out is NULL"), err);
    const spool::Health h = (*sp)->GetHealth();
    *out = spool_health_t{};
    switch (h.state) {
      case spool::HealthState::kHealthy:
        out->state = SPOOL_HEALTHY;
        break;
      case spool::HealthState::kDegraded:
        out->state = SPOOL_DEGRADED;
        break;
      case spool::HealthState::kRefusing:
        out->state = SPOOL_REFUSING;
        break;
    }
    FillReply(h.status, &out->reply);
    out->shards = h.shards.size();
    for (const spool::ShardHealth& shard : h.shards) {
      if (!shard.status.ok()) ++out->shards_failed;
    }
    return Succeed(err);
  });
}

int spool_get_stats(spool_t* s, spool_stats_t* out, spool_reply_t* err) {
  static const char kFn[] = "spool_get_stats";
  return Guard(err, [&]() -> int {
    StatusOr<spool::Spool*> sp = SpoolOf(kFn, s);
    if (!sp.ok()) return Fail(sp.status(), err);
    if (out == nullptr) return Fail(Invalid(kFn, "out is NULL"), err);
    const spool::Stats st = (*sp)->GetStats();
    *out = spool_stats_t{};
    out->messages = st.messages;
    out->body_bytes = st.body_bytes;
    out->oldest_arrival_ms = st.oldest_arrival_ms;
    out->segments_live = st.segments_live;
    out->segments_free = st.segments_free;
    out->segment_bytes = st.segment_bytes;
    out->live_bytes = st.live_bytes;
    out->disk_free_bytes = st.disk_free_bytes;
    out->enqueued = st.enqueued;
    out->removed = st.removed;
    out->batches = st.batches;
    out->log_bytes_written = st.log_bytes_written;
    out->reclaimed_segments = st.reclaimed_segments;
    out->relocated_bytes = st.relocated_bytes;
    out->sync_p50_us = st.sync_p50_us;
    out->sync_p99_us = st.sync_p99_us;
    out->sync_p999_us = st.sync_p999_us;
    out->mean_batch_records = st.mean_batch_records;
    out->mean_batch_bytes = st.mean_batch_bytes;
    out->faults = st.faults;
    out->recoveries = st.recoveries;
    out->scrubbed_bytes = st.scrubbed_bytes;
    out->corrupt_found = st.corrupt_found;
    out->quarantined = st.quarantined;
    return Succeed(err);
  });
}

int spool_metrics(spool_t* s, int format, char** text_out, spool_reply_t* err) {
  static const char kFn[] = "spool_metrics";
  return Guard(err, [&]() -> int {
    StatusOr<spool::Spool*> sp = SpoolOf(kFn, s);
    if (!sp.ok()) return Fail(sp.status(), err);
    if (text_out == nullptr) return Fail(Invalid(kFn, "text_out is NULL"), err);
    *text_out = nullptr;
    StatusOr<std::string> text = Invalid(kFn, "format is not SPOOL_METRICS_PROMETHEUS or _JSON");
    if (format == SPOOL_METRICS_PROMETHEUS) text = spool::FormatPrometheus(**sp);
    if (format == SPOOL_METRICS_JSON) text = spool::FormatStatsJson(**sp);
    if (!text.ok()) return Fail(text.status(), err);
    char* out = static_cast<char*>(std::malloc(text->size() + 1));
    if (out == nullptr) return Fail(spool::InternalError("out of memory"), err);
    std::memcpy(out, text->c_str(), text->size() + 1);
    *text_out = out;
    return Succeed(err);
  });
}

// ---- Log ---------------------------------------------------------------------------------

void spool_set_log_callback(spool_log_cb fn, void* arg) {
  if (fn == nullptr) {
    spool::SetLogSink(nullptr);
    return;
  }
  spool::SetLogSink([fn, arg](spool::LogLevel level, std::string_view message) {
    const std::string text(message);
    fn(arg, static_cast<int>(level), text.c_str());
  });
}

}  // extern "C"
