#include "spool/message_id.h"

namespace spool {
namespace {

constexpr char kAlphabet[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
constexpr int kHalfDigits = 11;  // 62^11 > 2^64

void AppendBase62(uint64_t v, std::string* out) {
  char digits[kHalfDigits];
  for (int i = kHalfDigits - 1; i >= 0; --i) {
    digits[i] = kAlphabet[v % 62];
    v /= 62;
  }
  out->append(digits, kHalfDigits);
}

bool ParseBase62(std::string_view s, uint64_t* out) {
  unsigned __int128 v = 0;
  for (char c : s) {
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'A' && c <= 'Z') {
      d = c - 'A' + 10;
    } else if (c >= 'a' && c <= 'z') {
      d = c - 'a' + 36;
    } else {
      return false;
    }
    v = v * 62 + static_cast<unsigned>(d);
  }
  if (v > UINT64_MAX) return false;
  *out = static_cast<uint64_t>(v);
  return true;
}

}  // namespace

std::string MessageId::ToString() const {
  std::string out;
  out.reserve(kTextLength);
  AppendBase62(time_, &out);
  AppendBase62(tag_, &out);
  return out;
}

StatusOr<MessageId> MessageId::Parse(std::string_view text) {
  uint64_t time = 0;
  uint64_t tag = 0;
  if (text.size() != kTextLength || !ParseBase62(text.substr(0, kHalfDigits), &time) ||
      !ParseBase62(text.substr(kHalfDigits), &tag) || time == 0) {
    std::string shown(text.substr(0, 40));
    return InvalidArgumentError("'" + shown + "' is not a message id (22 characters of " +
                                "[0-9A-Za-z])");
  }
  return MessageId(time, tag);
}

}  // namespace spool
