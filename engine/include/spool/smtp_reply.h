// The SMTP reply a front-end sends for a Status (SPEC §3).
//
// The mapping is the contract between the engine and an MTA: a full disk defers with 452,
// a permission or read-only fault with 451 4.3.5, an I/O error or corruption with
// 451 4.3.0, overload with 451 4.4.5, a spool that is not serving with 421. Reply texts
// never carry paths, errno names or other internals; those stay in Status::message().
//
// Thread-safety: pure functions over values.

#ifndef SPOOL_SMTP_REPLY_H_
#define SPOOL_SMTP_REPLY_H_

#include <string>
#include <string_view>

#include "spool/status.h"

namespace spool {

struct SmtpReply {
  int code = 250;                       // 250, 421, 451, 452, 501, 552, ...
  std::string_view enhanced = "2.0.0";  // RFC 3463 enhanced status code
  std::string_view text = "Ok";         // human text, free of internals

  // "451 4.3.0 Local error in processing"
  std::string ToString() const;
  // True for 4xx replies: the client should retry later.
  bool transient() const { return code >= 400 && code < 500; }
};

// The reply for `status`. For an OK status: 250 2.0.0 Ok.
SmtpReply SmtpReplyFor(const Status& status);

}  // namespace spool

#endif  // SPOOL_SMTP_REPLY_H_
