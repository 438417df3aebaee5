// The C API of the control channel (spool/c_control.h) over ControlClient.

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <new>
#include <string>
#include <string_view>
#include <vector>

#include "control/json.h"
#include "spool/c_control.h"
#include "spool/control.h"
#include "spool/smtp_reply.h"
#include "spool/status.h"

namespace {

using spool::Status;
using spool::StatusOr;

int Reply(const Status& status, spool_reply_t* err) {
  if (err == nullptr) return status.ok() ? 0 : -1;
  if (status.ok()) {
    *err = spool_reply_t{0, "", ""};
    return 0;
  }
  const spool::SmtpReply r = spool::SmtpReplyFor(status);
  err->code = r.code;
  std::snprintf(err->enhanced, sizeof(err->enhanced), "%.*s", static_cast<int>(r.enhanced.size()),
                r.enhanced.data());
  std::snprintf(err->text, sizeof(err->text), "%.*s", static_cast<int>(r.text.size()),
                r.text.data());
  return -1;
}

// The status of a final line {"type":"result","ok":false,"code":...,"message":...}.
Status ResultStatus(const std::string& line) {
  StatusOr<spool::control::JsonValue> v = spool::control::ParseJson(line);
  if (!v.ok()) return v.status();
  const spool::control::JsonValue* ok = v->Find("ok");
  if (ok != nullptr && ok->boolean) return Status::Ok();
  const spool::control::JsonValue* code = v->Find("code");
  const spool::control::JsonValue* message = v->Find("message");
  const std::string text = message != nullptr ? message->str : line;
  for (int c = 1; c <= static_cast<int>(spool::Code::kInternal); ++c) {
    if (code != nullptr && spool::CodeName(static_cast<spool::Code>(c)) == code->str) {
      return Status(static_cast<spool::Code>(c), text);
    }
  }
  return spool::InternalError(text);
}

Status Request(const char* dirs, const char* request_json, std::string* response) {
  if (dirs == nullptr || request_json == nullptr) {
    return spool::InvalidArgumentError("spool_control_request: dirs or request_json is NULL");
  }
  std::vector<std::string> list;
  for (std::string_view rest(dirs);;) {
    const size_t comma = rest.find(',');
    list.emplace_back(rest.substr(0, comma));
    if (list.back().empty()) {
      return spool::InvalidArgumentError("spool_control_request: empty directory in dirs");
    }
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  StatusOr<std::unique_ptr<spool::ControlClient>> client = spool::ControlClient::Connect(list);
  if (!client.ok()) {
    // Nobody to answer, or not this user: the spool is not serving this caller.
    if (client.status().code() == spool::Code::kPermission) {
      return spool::UnavailableError(client.status().message());
    }
    return client.status();
  }
  StatusOr<std::string> last = (*client)->Call(request_json, [&](std::string_view line) {
    response->append(line);
    response->push_back('\n');
  });
  if (!last.ok()) return last.status();
  *response += *last + "\n";
  return ResultStatus(*last);
}

}  // namespace

extern "C" int spool_control_request(const char* dirs, const char* request_json,
                                     char** response_out, spool_reply_t* err) {
  if (response_out != nullptr) *response_out = nullptr;
  try {
    std::string response;
    Status s = Request(dirs, request_json, &response);
    if (response_out != nullptr && (s.ok() || !response.empty())) {
      char* out = static_cast<char*>(std::malloc(response.size() + 1));
      if (out == nullptr) return Reply(spool::InternalError("out of memory"), err);
      std::memcpy(out, response.data(), response.size() + 1);
      *response_out = out;
    }
    return Reply(s, err);
  } catch (const std::exception& e) {
    return Reply(spool::InternalError(std::string("unexpected exception: ") + e.what()), err);
  }
}
