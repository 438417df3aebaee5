// Spool::Open: the core's open (core/spool_open.cc), then, for a writable spool, the
// control channel's server beside it. It lives here, above the core, because the server
// calls the spool's public API: the core knows nothing of it but an Attachment to destroy
// first when it closes.

#include <memory>
#include <string>
#include <utility>

#include "control/control_server.h"
#include "core/internal.h"
#include "core/spool_impl.h"
#include "spool/logging.h"
#include "spool/spool.h"

namespace spool {
namespace {

// The server, owned by the spool it serves.
class ServerAttachment : public internal::Attachment {
 public:
  explicit ServerAttachment(std::unique_ptr<control::ControlServer> server)
      : server_(std::move(server)) {}

 private:
  std::unique_ptr<control::ControlServer> server_;
};

}  // namespace

StatusOr<std::unique_ptr<Spool>> Spool::Open(const Options& options) {
  SPOOL_ASSIGN_OR_RETURN(std::unique_ptr<Spool> spool,
                         internal::OpenWithFileSystem(options, nullptr));
  if (options.read_only || !options.control_socket) return spool;
  auto* impl = static_cast<internal::SpoolImpl*>(spool.get());
  const std::string& dir = impl->FirstShardDir();  // shard 0's, whatever the order of dirs
  StatusOr<std::unique_ptr<control::ControlServer>> server =
      control::ControlServer::Start(spool.get(), dir);
  if (!server.ok()) {
    Log(LogLevel::kWarning, dir + ": no control socket (spool-ctl cannot reach this process): " +
                                server.status().ToString());
    return spool;
  }
  impl->Attach(std::make_unique<ServerAttachment>(std::move(server).value()));
  return spool;
}

}  // namespace spool
