// MessageFilter (spool/control.h): which messages a listing or a bulk request means.

#include <algorithm>
#include <string>

#include "spool/control.h"
#include "spool/metrics.h"

namespace spool {
namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

bool ContainsNoCase(std::string_view haystack, std::string_view needle) {
  return Lower(haystack).find(Lower(needle)) != std::string::npos;
}

}  // namespace

std::optional<MessageState> ParseMessageState(std::string_view name) {
  for (MessageState s : {MessageState::kQueued, MessageState::kHeld, MessageState::kCorrupt}) {
    if (MessageStateName(s) == name) return s;
  }
  return std::nullopt;
}

bool MessageFilter::empty() const {
  return !queue && !state && !older_than_ms && !sender && !recipient;
}

bool MessageFilter::Matches(const MessageInfo& m, int64_t now_ms) const {
  if (queue && m.envelope.queue != *queue) return false;
  if (state && m.state != *state) return false;
  if (older_than_ms && m.arrival_ms > now_ms - *older_than_ms) return false;
  if (sender) {
    if (*sender == "<>") {
      if (!m.envelope.sender.empty()) return false;
    } else if (!ContainsNoCase(m.envelope.sender, *sender)) {
      return false;
    }
  }
  if (recipient) {
    const bool any =
        std::any_of(m.envelope.recipients.begin(), m.envelope.recipients.end(),
                    [&](const std::string& r) { return ContainsNoCase(r, *recipient); });
    if (!any) return false;
  }
  return true;
}

std::string MessageFilter::ToJson() const {
  std::string out = "{";
  const auto add = [&](std::string_view name, const std::string& value) {
    if (out.size() > 1) out += ',';
    out += JsonQuote(name) + ":" + value;
  };
  if (queue) add("queue", JsonQuote(*queue));
  if (state) add("state", JsonQuote(MessageStateName(*state)));
  if (older_than_ms) add("older_than_ms", std::to_string(*older_than_ms));
  if (sender) add("sender", JsonQuote(*sender));
  if (recipient) add("recipient", JsonQuote(*recipient));
  return out + "}";
}

}  // namespace spool
