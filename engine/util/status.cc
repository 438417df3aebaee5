#include "spool/status.h"

#include <string>

namespace spool {

std::string_view CodeName(Code code) {
  switch (code) {
    case Code::kOk:
      return "ok";
    case Code::kInvalidArgument:
      return "invalid_argument";
    case Code::kNotFound:
      return "not_found";
    case Code::kTooBig:
      return "too_big";
    case Code::kStorageFull:
      return "storage_full";
    case Code::kPermission:
      return "permission";
    case Code::kIoError:
      return "io_error";
    case Code::kCorruption:
      return "corruption";
    case Code::kOverload:
      return "overload";
    case Code::kUnavailable:
      return "unavailable";
    case Code::kFailedPrecondition:
      return "failed_precondition";
    case Code::kInternal:
      return "internal";
  }
  return "unknown";
}

Status::Status(Code code, std::string_view message, int sys_errno) {
  if (code == Code::kOk) return;
  rep_ = std::make_shared<const Rep>(Rep{code, sys_errno, std::string(message)});
}

std::string Status::ToString() const {
  if (ok()) return "ok";
  std::string out(CodeName(code()));
  if (!rep_->message.empty()) {
    out += ": ";
    out += rep_->message;
  }
  return out;
}

Status Status::WithContext(std::string_view context) const {
  if (ok()) return *this;
  std::string message(context);
  message += ": ";
  message += rep_->message;
  return Status(rep_->code, message, rep_->sys_errno);
}

Status InvalidArgumentError(std::string_view m) { return Status(Code::kInvalidArgument, m); }
Status NotFoundError(std::string_view m) { return Status(Code::kNotFound, m); }
Status TooBigError(std::string_view m) { return Status(Code::kTooBig, m); }
Status StorageFullError(std::string_view m, int e) { return Status(Code::kStorageFull, m, e); }
Status PermissionError(std::string_view m, int e) { return Status(Code::kPermission, m, e); }
Status IoError(std::string_view m, int e) { return Status(Code::kIoError, m, e); }
Status CorruptionError(std::string_view m) { return Status(Code::kCorruption, m); }
Status OverloadError(std::string_view m) { return Status(Code::kOverload, m); }
Status UnavailableError(std::string_view m) { return Status(Code::kUnavailable, m); }
Status FailedPreconditionError(std::string_view m) { return Status(Code::kFailedPrecondition, m); }
Status InternalError(std::string_view m) { return Status(Code::kInternal, m); }

}  // namespace spool
