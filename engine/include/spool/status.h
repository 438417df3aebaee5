// Errors are values. Every fallible spool call returns a Status (or a StatusOr<T>);
// no exception crosses the public API.
//
// A Status carries a Code, which says what kind of failure it is and so which SMTP reply a
// front-end gives (spool/smtp_reply.h; the table with the causes of each class is in
// docs/errors.md), and a message for the operator's log. The message may name paths and
// errno values; it is never sent to an SMTP client.
//
// Thread-safety: Status and StatusOr are values; distinct objects may be used from
// distinct threads, a single object is thread-compatible (const methods may be called
// concurrently).

#ifndef SPOOL_STATUS_H_
#define SPOOL_STATUS_H_

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace spool {

enum class Code : int {
  kOk = 0,
  // The caller passed something wrong: an empty recipient list, a malformed id, a bad option.
  kInvalidArgument = 1,
  // The id names no message (never stored, or removed).
  kNotFound = 2,
  // The message is larger than the configured limit.
  kTooBig = 3,
  // The disk is full: ENOSPC, EDQUOT, or free space/inodes under the configured minimum.
  kStorageFull = 4,
  // The process may not write: EACCES, EPERM, EROFS.
  kPermission = 5,
  // An I/O error or failed sync (EIO and any errno not listed above).
  kIoError = 6,
  // Stored bytes failed their checksum or are structurally damaged.
  kCorruption = 7,
  // Too much is pending; try again later.
  kOverload = 8,
  // The spool (or shard) is not serving: latched unhealthy, opening, closing, closed.
  kUnavailable = 9,
  // The directory is not usable as a spool: not a spool, written by a newer format,
  // or held by another process.
  kFailedPrecondition = 10,
  // A bug or an impossible state; reported rather than crashing.
  kInternal = 11,
};

// Returns a stable, lower-case name of `code` ("storage_full"), for logs and JSON;
// "unknown" for a value outside the enum.
std::string_view CodeName(Code code);

class [[nodiscard]] Status {
 public:
  // An OK status.
  Status() = default;
  // A status of `code` with `message` (for the log) and the errno that caused it (0:
  // none). With Code::kOk the result is OK and `message` and `sys_errno` are dropped.
  Status(Code code, std::string_view message, int sys_errno = 0);

  static Status Ok() { return Status(); }

  bool ok() const { return rep_ == nullptr; }
  Code code() const { return rep_ ? rep_->code : Code::kOk; }
  // The operator-facing text; may contain paths and errno names. Empty when ok().
  std::string_view message() const { return rep_ ? std::string_view(rep_->message) : ""; }
  // The errno that caused this status, or 0.
  int sys_errno() const { return rep_ ? rep_->sys_errno : 0; }

  // "storage_full: write /spool/0/seg-000001: No space left on device (ENOSPC)"; "ok".
  std::string ToString() const;

  // Returns a copy whose message is prefixed with `context` and ": " (code and errno
  // kept); an OK status unchanged.
  Status WithContext(std::string_view context) const;

  // Marks a status as deliberately ignored (a best-effort cleanup, say).
  void IgnoreError() const {}

  // Equal codes and messages (the errno is not compared).
  friend bool operator==(const Status& a, const Status& b) {
    return a.code() == b.code() && a.message() == b.message();
  }

 private:
  struct Rep {
    Code code;
    int sys_errno;
    std::string message;
  };
  std::shared_ptr<const Rep> rep_;
};

// Convenience constructors, one per code.
Status InvalidArgumentError(std::string_view message);
Status NotFoundError(std::string_view message);
Status TooBigError(std::string_view message);
Status StorageFullError(std::string_view message, int sys_errno = 0);
Status PermissionError(std::string_view message, int sys_errno = 0);
Status IoError(std::string_view message, int sys_errno = 0);
Status CorruptionError(std::string_view message);
Status OverloadError(std::string_view message);
Status UnavailableError(std::string_view message);
Status FailedPreconditionError(std::string_view message);
Status InternalError(std::string_view message);

// Either a value of T or a non-OK Status.
template <typename T>
class [[nodiscard]] StatusOr {
 public:
  // REQUIRES: !status.ok(). An OK status is turned into a kInternal error, so that a
  // StatusOr always holds a value or an error.
  StatusOr(Status status) : status_(std::move(status)) {  // NOLINT: implicit by design
    if (status_.ok()) status_ = InternalError("StatusOr constructed from an OK status");
  }
  StatusOr(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  template <typename U>
  requires std::is_constructible_v<T, U&&> &&
      (!std::is_same_v<std::decay_t<U>, Status>)&&(!std::is_same_v<std::decay_t<U>, T>)
          StatusOr(U&& value)
      : value_(T(std::forward<U>(value))) {}  // NOLINT

  bool ok() const { return value_.has_value(); }
  // The error, or OK when ok().
  const Status& status() const& { return status_; }
  Status status() && { return std::move(status_); }

  // REQUIRES: ok().
  const T& value() const& { return *value_; }
  T& value() & { return *value_; }
  T&& value() && { return std::move(*value_); }
  const T& operator*() const& { return *value_; }
  T& operator*() & { return *value_; }
  T&& operator*() && { return std::move(*value_); }
  const T* operator->() const { return &*value_; }
  T* operator->() { return &*value_; }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace spool

#define SPOOL_STATUS_CONCAT_INNER_(a, b) a##b
#define SPOOL_STATUS_CONCAT_(a, b) SPOOL_STATUS_CONCAT_INNER_(a, b)

// Returns from the enclosing function if `expr` (a Status) is not OK.
#define SPOOL_RETURN_IF_ERROR(expr)                \
  do {                                             \
    ::spool::Status spool_status_ = (expr);        \
    if (!spool_status_.ok()) return spool_status_; \
  } while (0)

// `lhs = value of expr` (a StatusOr), or returns its status from the enclosing function.
#define SPOOL_ASSIGN_OR_RETURN(lhs, expr) \
  SPOOL_ASSIGN_OR_RETURN_IMPL_(SPOOL_STATUS_CONCAT_(spool_statusor_, __LINE__), lhs, expr)
#define SPOOL_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return std::move(tmp).status();     \
  lhs = std::move(tmp).value()

#endif  // SPOOL_STATUS_H_
