// The C API of the control channel (spool/c_control.h): a request run on a spool_t in this
// process, or sent to the control socket of the process that holds a spool.

#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "capi/c_api_internal.h"
#include "control/json.h"
#include "spool/c_control.h"
#include "spool/control.h"

namespace spool::capi {
namespace {

// The status of a final line {"type":"result","ok":false,"code":...,"message":...}: the
// code it names, so that the reply is the one the failure deserves.
Status ResultStatus(const std::string& line) {
  StatusOr<control::JsonValue> v = control::ParseJson(line);
  if (!v.ok()) return InternalError("unreadable control answer: " + line);
  const control::JsonValue* ok = v->Find("ok");
  if (ok != nullptr && ok->boolean) return Status::Ok();
  const control::JsonValue* code = v->Find("code");
  const control::JsonValue* message = v->Find("message");
  const std::string text = message != nullptr ? message->str : line;
  for (int c = 1; c <= static_cast<int>(Code::kInternal); ++c) {
    if (code != nullptr && CodeName(static_cast<Code>(c)) == code->str) {
      return Status(static_cast<Code>(c), text);
    }
  }
  return InternalError(text);
}

// Hands `response` to the caller in memory from malloc (*out may be null: not wanted).
Status HandOut(const std::string& response, char** out) {
  if (out == nullptr) return Status::Ok();
  char* copy = static_cast<char*>(std::malloc(response.size() + 1));
  if (copy == nullptr) return InternalError("out of memory");
  std::memcpy(copy, response.c_str(), response.size() + 1);
  *out = copy;
  return Status::Ok();
}

// Runs `call` (which collects the response lines), hands them out and answers with the
// final line's status.
int Answer(const char* function, const char* request_json, char** response_out, spool_reply_t* err,
           const std::function<Status(std::string_view request, std::string* response,
                                      std::string* last)>& call) {
  if (response_out != nullptr) *response_out = nullptr;
  return Guard(err, [&]() -> int {
    if (request_json == nullptr) return Fail(Invalid(function, "request_json is NULL"), err);
    std::string response, last;
    Status s = call(request_json, &response, &last);
    if (!s.ok() && response.empty()) return Fail(s, err);
    if (s.ok()) s = ResultStatus(last);
    if (Status h = HandOut(response, response_out); !h.ok()) return Fail(h, err);
    return s.ok() ? Succeed(err) : Fail(s, err);
  });
}

}  // namespace
}  // namespace spool::capi

using spool::Status;
using spool::StatusOr;

extern "C" {

int spool_control(spool_t* s, const char* request_json, char** response_out, spool_reply_t* err) {
  return spool::capi::Answer(
      "spool_control", request_json, response_out, err,
      [&](std::string_view request, std::string* response, std::string* last) -> Status {
        SPOOL_ASSIGN_OR_RETURN(spool::Spool * spool, spool::capi::SpoolOf("spool_control", s));
        spool::RunControlRequest(*spool, request, [&](std::string_view line) {
          response->append(line);
          response->push_back('\n');
          *last = std::string(line);
          return true;
        });
        return Status::Ok();
      });
}

int spool_control_request(const char* dirs, const char* request_json, char** response_out,
                          spool_reply_t* err) {
  return spool::capi::Answer(
      "spool_control_request", request_json, response_out, err,
      [&](std::string_view request, std::string* response, std::string* last) -> Status {
        SPOOL_ASSIGN_OR_RETURN(std::vector<std::string> list,
                               spool::capi::SplitDirs("spool_control_request", dirs));
        StatusOr<std::unique_ptr<spool::ControlClient>> client =
            spool::ControlClient::Connect(list);
        if (!client.ok()) {
          // Nobody to answer, or not this user: the spool does not serve this caller.
          return client.status().code() == spool::Code::kPermission
                     ? spool::UnavailableError(client.status().message())
                     : client.status();
        }
        StatusOr<std::string> final_line = (*client)->Call(request, [&](std::string_view line) {
          response->append(line);
          response->push_back('\n');
        });
        if (!final_line.ok()) return final_line.status();
        *response += *final_line + "\n";
        *last = *final_line;
        return Status::Ok();
      });
}

}  // extern "C"
