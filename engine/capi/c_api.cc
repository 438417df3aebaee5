// The C API (spool/c.h) over the C++ API (spool/spool.h): open and close, enqueue (whole
// and streamed), read, remove, errors, options, the log callback; and the helpers that
// the other files of the C API share (capi/c_api_internal.h).

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "capi/c_api_internal.h"
#include "spool/c.h"
#include "spool/logging.h"
#include "spool/message_id.h"
#include "spool/smtp_reply.h"
#include "spool/spool.h"
#include "spool/status.h"
#include "util/mutex.h"

namespace spool::capi {
namespace {

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

}  // namespace

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

StatusOr<Envelope> ToEnvelope(const char* function, const spool_envelope_t* e) {
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

// spool_message_info_t in one allocation: the struct, the recipient pointers, the recipient
// statuses, then the strings (sender, queue, metadata, recipients), each NUL-terminated.
size_t PackedSize(const MessageInfo& info) {
  const size_t n = info.envelope.recipients.size();
  size_t size = sizeof(spool_message_info_t) + n * sizeof(const char*) + n * sizeof(int);
  size += info.envelope.sender.size() + 1 + info.envelope.queue.size() + 1 +
          info.envelope.metadata.size() + 1;
  for (const std::string& r : info.envelope.recipients) size += r.size() + 1;
  return size;
}

void Pack(const MessageInfo& info, void* memory) {
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

StatusOr<Spool*> SpoolOf(const char* function, spool_t* s) {
  if (s == nullptr) return Invalid(function, "the spool is NULL");
  if (s->spool == nullptr)
    return spool::UnavailableError(std::string(function) + ": the spool is closed");
  return s->spool.get();
}

StatusOr<std::vector<std::string>> SplitDirs(const char* function, const char* dirs) {
  if (dirs == nullptr) return Invalid(function, "dirs is NULL");
  std::vector<std::string> out;
  std::string_view rest(dirs);
  for (;;) {
    const size_t comma = rest.find(',');
    std::string_view dir = rest.substr(0, comma);
    if (dir.empty()) {
      return Invalid(function,
                     ("empty directory name in dirs \"" + std::string(dirs) + "\"").c_str());
    }
    out.emplace_back(dir);
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return out;
}

namespace {

spool_t* Open(const char* dirs, const spool_options_t* o, spool_reply_t* err) {
  spool_t* result = nullptr;
  Guard(err, [&]() -> int {
    StatusOr<std::vector<std::string>> list = SplitDirs("spool_open", dirs);
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

}  // namespace
}  // namespace spool::capi

using spool::MessageId;
using spool::Status;
using spool::StatusOr;
using spool::capi::BodyView;
using spool::capi::CheckBody;
using spool::capi::CheckIdBuffer;
using spool::capi::Fail;
using spool::capi::Guard;
using spool::capi::IdCall;
using spool::capi::Invalid;
using spool::capi::ParseId;
using spool::capi::SpoolOf;
using spool::capi::Succeed;
using spool::capi::ToEnvelope;
using spool::capi::WriteId;

extern "C" {

// ---- Open, enqueue, read, remove: the core calls -------------------------------------------

spool_t* spool_open(const char* dirs, spool_reply_t* err) {
  return spool::capi::Open(dirs, nullptr, err);
}

spool_t* spool_open_with_options(const char* dirs, const spool_options_t* o, spool_reply_t* err) {
  return spool::capi::Open(dirs, o, err);
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

int spool_last_error_code(void) { return spool::capi::tls_code; }
const char* spool_last_error_detail(void) { return spool::capi::tls_detail.c_str(); }

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
