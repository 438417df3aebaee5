#include "io/errno_status.h"

#include <cerrno>
#include <cstring>
#include <string>

namespace spool::io {

Code CodeForErrno(int err) {
  switch (err) {
    case ENOSPC:
    case EDQUOT:
      return Code::kStorageFull;
    case EACCES:
    case EPERM:
    case EROFS:
      return Code::kPermission;
    default:
      return Code::kIoError;
  }
}

std::string_view ErrnoName(int err) {
  const char* name = strerrorname_np(err);
  if (name != nullptr) return name;
  return "unknown errno";
}

Status ErrnoToStatus(int err, std::string_view what, std::string_view path) {
  std::string message(what);
  if (!path.empty()) {
    message += ' ';
    message += path;
  }
  message += ": ";
  message += strerror(err);
  message += " (";
  message += ErrnoName(err);
  if (strerrorname_np(err) == nullptr) message += " " + std::to_string(err);
  message += ")";
  return Status(CodeForErrno(err), message, err);
}

}  // namespace spool::io
