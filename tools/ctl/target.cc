#include <optional>
#include <string>

#include "tools/ctl/internal.h"

namespace spool::ctl {

StatusOr<std::string> Target::Call(std::string_view request,
                                   const std::function<void(std::string_view line)>& on_line) {
  if (client_ != nullptr) return client_->Call(request, on_line);
  // In this process: the same request, the same lines. The last line is the result.
  std::optional<std::string> previous;
  RunControlRequest(*spool_, request, [&](std::string_view line) {
    if (previous && on_line) on_line(*previous);
    previous = std::string(line);
    return true;
  });
  if (!previous) return InternalError("the control request gave no answer");
  return *previous;
}

}  // namespace spool::ctl
