// The SMTP reply a front-end sends for a Status: the reply table of docs/errors.md.
//
// The mapping is the contract between the engine and an MTA:
//   kOk                                          250 2.0.0 Ok
//   kStorageFull                                 452 4.3.1 Insufficient system storage
//   kPermission                                  451 4.3.5 System incorrectly configured
//   kIoError, kCorruption, kNotFound, kInternal  451 4.3.0 Local error in processing
//   kOverload                                    451 4.4.5 Mail system congestion
//   kUnavailable, kFailedPrecondition            421 4.3.2 Service not available
//   kTooBig                                      552 5.3.4 Message too big for system
//   kInvalidArgument                             501 5.5.4 Invalid command arguments
// Every storage fault is a 4xx: the client keeps the message and retries. Reply texts
// never carry paths, errno names or other internals; those stay in Status::message().
//
// Thread-safety: pure functions over values.

#ifndef SPOOL_SMTP_REPLY_H_
#define SPOOL_SMTP_REPLY_H_

#include <string>
#include <string_view>

#include "spool/status.h"

namespace spool {

// A reply. SmtpReplyFor's strings are static: valid for the life of the program.
struct SmtpReply {
  int code = 250;                       // 250, 421, 451, 452, 501, 552, ...
  std::string_view enhanced = "2.0.0";  // RFC 3463 enhanced status code
  std::string_view text = "Ok";         // human text, free of internals

  // "451 4.3.0 Local error in processing"
  std::string ToString() const;
  // True for 4xx replies: the client should retry later.
  bool transient() const { return code >= 400 && code < 500; }
};

// The reply for `status` (the table above). For an OK status: 250 2.0.0 Ok.
SmtpReply SmtpReplyFor(const Status& status);

}  // namespace spool

#endif  // SPOOL_SMTP_REPLY_H_
