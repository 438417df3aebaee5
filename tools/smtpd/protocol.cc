#include "tools/smtpd/protocol.h"

#include <array>
#include <limits>

namespace spool::smtpd {
namespace {

char Upper(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c; }

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (Upper(a[i]) != Upper(b[i])) return false;
  }
  return true;
}

std::string_view TrimSpaces(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

struct VerbName {
  std::string_view name;
  Verb verb;
};

constexpr std::array<VerbName, 18> kVerbs = {{
    {"HELO", Verb::kHelo},
    {"EHLO", Verb::kEhlo},
    {"MAIL", Verb::kMail},
    {"RCPT", Verb::kRcpt},
    {"DATA", Verb::kData},
    {"RSET", Verb::kRset},
    {"NOOP", Verb::kNoop},
    {"QUIT", Verb::kQuit},
    {"VRFY", Verb::kVrfy},
    {"HELP", Verb::kHelp},
    // Known to RFC 5321 or common extensions, not offered here (502).
    {"EXPN", Verb::kNotImplemented},
    {"TURN", Verb::kNotImplemented},
    {"ETRN", Verb::kNotImplemented},
    {"BDAT", Verb::kNotImplemented},
    {"AUTH", Verb::kNotImplemented},
    {"STARTTLS", Verb::kNotImplemented},
    {"SEND", Verb::kNotImplemented},
    {"SAML", Verb::kNotImplemented},
}};

// An address byte outside a quoted string: printable ASCII except the specials that
// cannot stand unquoted in a path, or any 8-bit byte (accepted, stored as it came).
bool AddressByte(unsigned char c) {
  if (c >= 0x80) return true;
  if (c <= ' ' || c == 0x7F) return false;
  return c != '<' && c != '>' && c != '"' && c != '\\';
}

// Validates the inside of <...> and strips an obsolete source route ("@a,@b:").
bool ParseMailbox(std::string_view path, std::string* out) {
  if (!path.empty() && path.front() == '@') {
    const size_t colon = path.find(':');
    if (colon == std::string_view::npos) return false;
    path.remove_prefix(colon + 1);
  }
  bool quoted = false;
  for (size_t i = 0; i < path.size(); ++i) {
    const auto c = static_cast<unsigned char>(path[i]);
    if (quoted) {
      if (c == '\\') {
        if (++i == path.size()) return false;
        const auto e = static_cast<unsigned char>(path[i]);
        if (e < ' ' || e == 0x7F) return false;
      } else if (c == '"') {
        quoted = false;
      } else if (c < ' ' || c == 0x7F) {
        return false;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (!AddressByte(c)) {
      return false;
    }
  }
  if (quoted) return false;
  *out = std::string(path);
  return true;
}

bool ParseDecimal(std::string_view s, uint64_t* out) {
  if (s.empty() || s.size() > 20) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    const uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (std::numeric_limits<uint64_t>::max() - d) / 10) return false;
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

}  // namespace

Command ParseCommand(std::string_view line) {
  Command cmd;
  size_t end = 0;
  while (end < line.size() && line[end] != ' ' && line[end] != '\t') ++end;
  const std::string_view word = line.substr(0, end);
  for (const VerbName& v : kVerbs) {
    if (EqualsIgnoreCase(word, v.name)) {
      cmd.verb = v.verb;
      break;
    }
  }
  cmd.arg = TrimSpaces(line.substr(end));
  return cmd;
}

PathError ParsePathArg(std::string_view arg, std::string_view keyword, bool allow_params,
                       PathArg* out) {
  *out = PathArg();
  // "FROM:" / "TO:", case-insensitive, then optional spaces (tolerated, not RFC).
  if (arg.size() < keyword.size() + 1 ||
      !EqualsIgnoreCase(arg.substr(0, keyword.size()), keyword) || arg[keyword.size()] != ':') {
    return PathError::kSyntax;
  }
  arg = TrimSpaces(arg.substr(keyword.size() + 1));
  std::string_view path, rest;
  if (!arg.empty() && arg.front() == '<') {
    // The closing '>' is the first one outside a quoted string.
    bool quoted = false;
    size_t close = std::string_view::npos;
    for (size_t i = 1; i < arg.size(); ++i) {
      if (quoted && arg[i] == '\\') {
        ++i;
      } else if (arg[i] == '"') {
        quoted = !quoted;
      } else if (!quoted && arg[i] == '>') {
        close = i;
        break;
      }
    }
    if (close == std::string_view::npos) return PathError::kSyntax;
    path = arg.substr(1, close - 1);
    rest = arg.substr(close + 1);
    if (!rest.empty() && rest.front() != ' ') return PathError::kSyntax;
  } else {
    // A path without brackets (not RFC 5321, sent by old clients): up to the first space.
    const size_t sp = arg.find(' ');
    path = arg.substr(0, sp);
    rest = sp == std::string_view::npos ? std::string_view() : arg.substr(sp);
    if (path.empty()) return PathError::kSyntax;
  }
  if (path.size() + 2 > kMaxPath) return PathError::kSyntax;
  if (!ParseMailbox(path, &out->address)) return PathError::kSyntax;

  rest = TrimSpaces(rest);
  while (!rest.empty()) {
    const size_t sp = rest.find(' ');
    const std::string_view param = rest.substr(0, sp);
    rest = sp == std::string_view::npos ? std::string_view() : TrimSpaces(rest.substr(sp));
    if (!allow_params) return PathError::kBadParameter;
    const size_t eq = param.find('=');
    const std::string_view key = param.substr(0, eq);
    const std::string_view value =
        eq == std::string_view::npos ? std::string_view() : param.substr(eq + 1);
    if (EqualsIgnoreCase(key, "SIZE") && eq != std::string_view::npos) {
      uint64_t size = 0;
      if (!ParseDecimal(value, &size)) return PathError::kBadParameter;
      out->size = size;
    } else if (EqualsIgnoreCase(key, "BODY") && EqualsIgnoreCase(value, "8BITMIME")) {
      out->body_8bit = true;
    } else if (EqualsIgnoreCase(key, "BODY") && EqualsIgnoreCase(value, "7BIT")) {
      out->body_8bit = false;
    } else {
      return PathError::kBadParameter;
    }
  }
  return PathError::kNone;
}

void DataDecoder::AppendText(std::string_view text, std::string* body) {
  size_t bare = text.find_first_of("\r\n");
  if (bare != std::string_view::npos) saw_bare_ = true;
  if (body == nullptr) return;
  if (bare_ == BareLineEndings::kKeep) {
    body->append(text);
    return;
  }
  size_t start = 0;
  for (; bare != std::string_view::npos; bare = text.find_first_of("\r\n", start)) {
    body->append(text.data() + start, bare - start);
    body->append("\r\n");
    start = bare + 1;
  }
  body->append(text.data() + start, text.size() - start);
}

size_t DataDecoder::Feed(std::string_view in, std::string* body, bool* done) {
  *done = false;
  size_t i = 0;
  while (i < in.size()) {
    if (at_line_start_ && in[i] == '.') {
      const size_t left = in.size() - i;
      if (left < 2) break;  // "." alone: the next bytes decide
      if (in[i + 1] == '\r') {
        if (left < 3) break;  // ".\r": the end, or a stuffed line starting with CR
        if (in[i + 2] == '\n') {
          at_line_start_ = true;
          *done = true;
          return i + 3;
        }
      }
      ++i;  // dot-unstuffing: the first '.' of a line with more on it is dropped
    }
    at_line_start_ = false;
    const size_t crlf = in.find("\r\n", i);
    if (crlf == std::string_view::npos) {
      // Keep a trailing CR: it may start the CRLF that ends this line.
      size_t end = in.size();
      if (in[end - 1] == '\r') --end;
      AppendText(in.substr(i, end - i), body);
      i = end;
      break;
    }
    AppendText(in.substr(i, crlf - i), body);
    if (body != nullptr) body->append("\r\n");
    i = crlf + 2;
    at_line_start_ = true;
  }
  return i;
}

}  // namespace spool::smtpd
