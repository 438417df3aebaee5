#include "spool/smtp_reply.h"

#include <string>

namespace spool {

std::string SmtpReply::ToString() const {
  std::string out = std::to_string(code);
  out += ' ';
  out += enhanced;
  out += ' ';
  out += text;
  return out;
}

SmtpReply SmtpReplyFor(const Status& status) {
  switch (status.code()) {
    case Code::kOk:
      return {250, "2.0.0", "Ok"};
    case Code::kStorageFull:
      return {452, "4.3.1", "Insufficient system storage"};
    case Code::kPermission:
      return {451, "4.3.5", "System incorrectly configured"};
    case Code::kOverload:
      return {451, "4.4.5", "Mail system congestion"};
    case Code::kUnavailable:
    case Code::kFailedPrecondition:
      // The spool cannot serve (not open, closing, latched, or not usable at all).
      return {421, "4.3.2", "Service not available"};
    case Code::kTooBig:
      return {552, "5.3.4", "Message too big for system"};
    case Code::kInvalidArgument:
      return {501, "5.5.4", "Invalid command arguments"};
    case Code::kIoError:
    case Code::kCorruption:
    case Code::kNotFound:
    case Code::kInternal:
      // An unknown id on the accept path is the front-end's bug, not the client's: defer.
      return {451, "4.3.0", "Local error in processing"};
  }
  return {451, "4.3.0", "Local error in processing"};
}

}  // namespace spool
