#include "tools/opensmtpd/envelopes.h"

#include <charconv>
#include <cstdio>

namespace spool::opensmtpd {
namespace {

constexpr std::string_view kMagic = "opensmtpd-queue 1 msgid ";
constexpr size_t kMsgidDigits = 8;
constexpr size_t kEvpidDigits = 16;

size_t DecimalDigits(size_t v) {
  size_t n = 1;
  while (v >= 10) {
    v /= 10;
    ++n;
  }
  return n;
}

// Parses a hexadecimal (base 16) or decimal (base 10) number that is all of `text`.
template <typename T>
bool ParseWhole(std::string_view text, int base, T* out) {
  if (text.empty()) return false;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *out, base);
  return ec == std::errc() && end == text.data() + text.size();
}

}  // namespace

size_t EncodedEnvelopeSize(size_t bytes) {
  return kEvpidDigits + 1 + DecimalDigits(bytes) + 1 + bytes + 1;
}

size_t EncodedSize(const QueuedMessage& m) {
  size_t n = kMagic.size() + kMsgidDigits + 1;
  for (const auto& [evpid, bytes] : m.envelopes) n += EncodedEnvelopeSize(bytes.size());
  return n;
}

std::string EncodeQueuedMessage(const QueuedMessage& m) {
  std::string out;
  out.reserve(EncodedSize(m));
  char line[64];
  out.append(kMagic);
  std::snprintf(line, sizeof(line), "%08x\n", m.msgid);
  out.append(line);
  for (const auto& [evpid, bytes] : m.envelopes) {
    std::snprintf(line, sizeof(line), "%016llx %zu\n", static_cast<unsigned long long>(evpid),
                  bytes.size());
    out.append(line);
    out.append(bytes);
    out.push_back('\n');
  }
  return out;
}

bool DecodeQueuedMessage(std::string_view in, QueuedMessage* m) {
  if (in.substr(0, kMagic.size()) != kMagic) return false;
  in.remove_prefix(kMagic.size());
  if (in.size() < kMsgidDigits + 1 || in[kMsgidDigits] != '\n' ||
      !ParseWhole(in.substr(0, kMsgidDigits), 16, &m->msgid)) {
    return false;
  }
  in.remove_prefix(kMsgidDigits + 1);
  m->envelopes.clear();
  while (!in.empty()) {
    const size_t eol = in.find('\n');
    if (eol == std::string_view::npos || eol <= kEvpidDigits + 1 || in[kEvpidDigits] != ' ') {
      return false;
    }
    uint64_t evpid;
    size_t size;
    if (!ParseWhole(in.substr(0, kEvpidDigits), 16, &evpid) ||
        !ParseWhole(in.substr(kEvpidDigits + 1, eol - kEvpidDigits - 1), 10, &size)) {
      return false;
    }
    in.remove_prefix(eol + 1);
    if (in.size() < size + 1 || in[size] != '\n' || MsgidOf(evpid) != m->msgid) return false;
    if (!m->envelopes.emplace(evpid, std::string(in.substr(0, size))).second) return false;
    in.remove_prefix(size + 1);
  }
  return true;
}

}  // namespace spool::opensmtpd
