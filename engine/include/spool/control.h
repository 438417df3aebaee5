// The control channel of a spool: operating the queue of a running MTA from outside it.
//
// A spool opened for writing (Options::control_socket, on by default) serves a UNIX
// socket, kControlSocketName in the directory of its shard 0, on threads of its own. Over
// it, one JSON object per line, an operator (spool-ctl) or the MTA's own admin interface
// holds, releases, requeues and deletes messages, by ids or by a filter, and lists and
// counts what the spool holds now, including what the writer has not yet indexed. The
// protocol (requests, response lines, versions, errors) is docs/operations.md, "The
// control channel". Only the spool's owner (the owner of the shard directory) and root may
// connect; the socket is 0600 and every peer is checked (SO_PEERCRED).
//
// A request is answered only once its changes are durable: a progress line after each
// group of changes, which is durable when it is sent, and a final line.
//
// Thread-safety: RunControlRequest and MessageFilter are safe to use from any thread; a
// ControlClient is used by one thread at a time.

#ifndef SPOOL_CONTROL_H_
#define SPOOL_CONTROL_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "spool/spool.h"
#include "spool/status.h"

namespace spool {

// The protocol version in the server's hello line. A client refuses another version.
inline constexpr int kControlProtocolVersion = 1;
// The socket's name in the directory of shard 0.
inline constexpr char kControlSocketName[] = "control.sock";
// A bulk change is applied, made durable and reported in groups of this many messages.
inline constexpr size_t kControlGroupSize = 1000;

// Which messages a bulk request or a listing means: every condition given must hold.
struct MessageFilter {
  std::optional<std::string> queue;      // exactly this queue
  std::optional<MessageState> state;     // in this state
  std::optional<int64_t> older_than_ms;  // arrived at least this long before now
  // The sender contains this (ASCII case-insensitive); "<>" means the null sender.
  std::optional<std::string> sender;
  // Some recipient contains this (ASCII case-insensitive).
  std::optional<std::string> recipient;

  // True when no condition is given (the filter matches every message).
  bool empty() const;
  bool Matches(const MessageInfo& message, int64_t now_ms) const;
  // The filter as a JSON object ({"queue":..,"state":..,"older_than_ms":..,"sender":..,
  // "recipient":..}, the conditions given only), as a request carries it.
  std::string ToJson() const;
};

// "queued", "held", "corrupt" -> the state; nullopt for anything else.
std::optional<MessageState> ParseMessageState(std::string_view name);

// Runs one control request (one JSON object, without its newline) against `spool`, in
// this process, exactly as the socket's server does for a line it reads: `emit` gets each
// response line (without newline) in order, the final one ("type":"result") last. For an
// MTA that offers the channel's operations in its own admin interface. Blocks until the
// request is done: a bulk change returns once every change it reports is durable. When
// `emit` returns false (the peer went away) the request stops after the group in progress.
void RunControlRequest(Spool& spool, std::string_view request,
                       const std::function<bool(std::string_view line)>& emit);

// A message from MessageInfoJson (spool/metrics.h) text, as list and show responses carry
// it. Errors: kInvalidArgument (not such an object).
StatusOr<MessageInfo> ParseMessageInfoJson(std::string_view json);

// A connection to the control socket of a running spool.
class ControlClient {
 public:
  // Connects to the spool over `dirs` (every shard, any order: the socket is looked for in
  // each) and reads the server's hello. Errors: kUnavailable (no socket, or nobody serves
  // it: a stale socket of a process that died); kPermission (the server refused this
  // peer: the message says why); kFailedPrecondition (another protocol version);
  // kIoError (the connection failed).
  static StatusOr<std::unique_ptr<ControlClient>> Connect(const std::vector<std::string>& dirs);
  ~ControlClient();
  ControlClient(const ControlClient&) = delete;
  ControlClient& operator=(const ControlClient&) = delete;

  // Sends `request` (one JSON object, no newline) and hands every response line but the
  // last to `on_line`; returns the final line. Errors: kIoError (the connection broke:
  // the server closed or died before the final line; what the progress lines reported
  // as done is durable, the rest is unknown).
  StatusOr<std::string> Call(std::string_view request,
                             const std::function<void(std::string_view line)>& on_line);
  // The server's hello line.
  const std::string& hello() const { return hello_; }

 private:
  explicit ControlClient(int fd) : fd_(fd) {}
  StatusOr<std::string> ReadLine();

  int fd_;
  std::string buffer_;
  std::string hello_;
};

}  // namespace spool

#endif  // SPOOL_CONTROL_H_
