// Strict readers of the formats that spool writes for other programs, for tests: JSON
// (RFC 8259, including that the text is valid UTF-8) and the Prometheus text exposition
// format 0.0.4. They reject what a real consumer would reject, so a test that parses
// output also checks that it is valid.

#ifndef SPOOL_TESTS_FORMAT_TEST_UTIL_H_
#define SPOOL_TESTS_FORMAT_TEST_UTIL_H_

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace spool::testing {

// A parsed JSON value.
struct Json {
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };
  Type type = Type::kNull;
  bool boolean = false;
  std::string number;  // the literal, so that 64-bit integers compare exactly
  std::string str;     // decoded
  std::vector<Json> array;
  std::vector<std::pair<std::string, Json>> object;

  bool is_null() const { return type == Type::kNull; }
  // The member `key` of an object; a null value if there is none.
  const Json& operator[](std::string_view key) const {
    static const Json kNull;
    for (const auto& [k, v] : object) {
      if (k == key) return v;
    }
    return kNull;
  }
  bool Has(std::string_view key) const {
    for (const auto& [k, v] : object) {
      if (k == key) return true;
    }
    return false;
  }
  int64_t Int() const { return std::strtoll(number.c_str(), nullptr, 10); }
  uint64_t Uint() const { return std::strtoull(number.c_str(), nullptr, 10); }
  double Double() const { return std::strtod(number.c_str(), nullptr); }
};

class JsonParser {
 public:
  // Parses exactly one JSON value (surrounding whitespace allowed). Returns false and
  // sets *error on anything else.
  static bool Parse(std::string_view text, Json* out, std::string* error) {
    JsonParser p(text);
    if (!p.ParseValue(out, 0) || (p.SkipSpace(), p.pos_ != text.size())) {
      *error = p.error_.empty() ? "trailing characters at " + std::to_string(p.pos_) : p.error_;
      return false;
    }
    return true;
  }

 private:
  static constexpr int kMaxDepth = 64;

  explicit JsonParser(std::string_view text) : s_(text) {}

  bool Fail(const std::string& what) {
    if (error_.empty()) error_ = what + " at offset " + std::to_string(pos_);
    return false;
  }
  void SkipSpace() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) {
      ++pos_;
    }
  }
  bool Literal(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) return Fail("bad literal");
    pos_ += word.size();
    return true;
  }
  bool ParseValue(Json* out, int depth) {
    if (depth > kMaxDepth) return Fail("too deep");
    SkipSpace();
    if (pos_ >= s_.size()) return Fail("unexpected end");
    const char c = s_[pos_];
    if (c == '{') return ParseObject(out, depth);
    if (c == '[') return ParseArray(out, depth);
    if (c == '"') {
      out->type = Json::Type::kString;
      return ParseString(&out->str);
    }
    if (c == 't' || c == 'f') {
      out->type = Json::Type::kBool;
      out->boolean = c == 't';
      return Literal(c == 't' ? "true" : "false");
    }
    if (c == 'n') {
      out->type = Json::Type::kNull;
      return Literal("null");
    }
    return ParseNumber(out);
  }
  bool ParseObject(Json* out, int depth) {
    out->type = Json::Type::kObject;
    ++pos_;
    SkipSpace();
    if (pos_ < s_.size() && s_[pos_] == '}') {
      ++pos_;
      return true;
    }
    for (;;) {
      SkipSpace();
      if (pos_ >= s_.size() || s_[pos_] != '"') return Fail("expected a key");
      std::string key;
      if (!ParseString(&key)) return false;
      SkipSpace();
      if (pos_ >= s_.size() || s_[pos_] != ':') return Fail("expected ':'");
      ++pos_;
      Json v;
      if (!ParseValue(&v, depth + 1)) return false;
      for (const auto& [k, unused] : out->object) {
        if (k == key) return Fail("duplicate key '" + key + "'");
      }
      out->object.emplace_back(std::move(key), std::move(v));
      SkipSpace();
      if (pos_ < s_.size() && s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < s_.size() && s_[pos_] == '}') {
        ++pos_;
        return true;
      }
      return Fail("expected ',' or '}'");
    }
  }
  bool ParseArray(Json* out, int depth) {
    out->type = Json::Type::kArray;
    ++pos_;
    SkipSpace();
    if (pos_ < s_.size() && s_[pos_] == ']') {
      ++pos_;
      return true;
    }
    for (;;) {
      Json v;
      if (!ParseValue(&v, depth + 1)) return false;
      out->array.push_back(std::move(v));
      SkipSpace();
      if (pos_ < s_.size() && s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < s_.size() && s_[pos_] == ']') {
        ++pos_;
        return true;
      }
      return Fail("expected ',' or ']'");
    }
  }
  bool ParseNumber(Json* out) {
    const size_t start = pos_;
    const auto digits = [&] {
      const size_t d = pos_;
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
      return pos_ > d;
    };
    if (pos_ < s_.size() && s_[pos_] == '-') ++pos_;
    if (pos_ < s_.size() && s_[pos_] == '0') {
      ++pos_;
    } else if (!digits()) {
      return Fail("bad number");
    }
    if (pos_ < s_.size() && s_[pos_] == '.') {
      ++pos_;
      if (!digits()) return Fail("bad fraction");
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      ++pos_;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      if (!digits()) return Fail("bad exponent");
    }
    out->type = Json::Type::kNumber;
    out->number = std::string(s_.substr(start, pos_ - start));
    return true;
  }
  static void AppendUtf8(uint32_t cp, std::string* out) {
    if (cp < 0x80) {
      *out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      *out += static_cast<char>(0xC0 | (cp >> 6));
      *out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      *out += static_cast<char>(0xE0 | (cp >> 12));
      *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      *out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      *out += static_cast<char>(0xF0 | (cp >> 18));
      *out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      *out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  bool Hex4(uint32_t* v) {
    if (pos_ + 4 > s_.size()) return Fail("short \\u escape");
    *v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = s_[pos_++];
      *v <<= 4;
      if (c >= '0' && c <= '9') {
        *v |= static_cast<uint32_t>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        *v |= static_cast<uint32_t>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        *v |= static_cast<uint32_t>(c - 'A' + 10);
      } else {
        return Fail("bad \\u escape");
      }
    }
    return true;
  }
  // A raw UTF-8 sequence of 2 to 4 bytes; strict (no overlongs, surrogates, > U+10FFFF).
  bool Utf8(std::string* out) {
    const auto b = [&](size_t k) { return static_cast<unsigned char>(s_[k]); };
    const unsigned char c = b(pos_);
    size_t n;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
      n = 2;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 3;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 4;
      cp = c & 0x07;
    } else {
      return Fail("invalid UTF-8");
    }
    if (pos_ + n > s_.size()) return Fail("truncated UTF-8");
    for (size_t k = 1; k < n; ++k) {
      if ((b(pos_ + k) & 0xC0) != 0x80) return Fail("invalid UTF-8");
      cp = (cp << 6) | (b(pos_ + k) & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF)) {
      return Fail("invalid UTF-8");
    }
    out->append(s_.substr(pos_, n));
    pos_ += n;
    return true;
  }
  bool ParseString(std::string* out) {
    ++pos_;  // the opening quote
    for (;;) {
      if (pos_ >= s_.size()) return Fail("unterminated string");
      const unsigned char c = static_cast<unsigned char>(s_[pos_]);
      if (c == '"') {
        ++pos_;
        return true;
      }
      if (c < 0x20) return Fail("raw control character in a string");
      if (c >= 0x80) {
        if (!Utf8(out)) return false;
        continue;
      }
      ++pos_;
      if (c != '\\') {
        *out += static_cast<char>(c);
        continue;
      }
      if (pos_ >= s_.size()) return Fail("unterminated escape");
      const char e = s_[pos_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          *out += e;
          break;
        case 'b':
          *out += '\b';
          break;
        case 'f':
          *out += '\f';
          break;
        case 'n':
          *out += '\n';
          break;
        case 'r':
          *out += '\r';
          break;
        case 't':
          *out += '\t';
          break;
        case 'u': {
          uint32_t cp = 0;
          if (!Hex4(&cp)) return false;
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            uint32_t lo = 0;
            if (s_.substr(pos_, 2) != "\\u") return Fail("lone high surrogate");
            pos_ += 2;
            if (!Hex4(&lo) || lo < 0xDC00 || lo > 0xDFFF) return Fail("bad low surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return Fail("lone low surrogate");
          }
          AppendUtf8(cp, out);
          break;
        }
        default:
          return Fail("bad escape");
      }
    }
  }

  std::string_view s_;
  size_t pos_ = 0;
  std::string error_;
};

// One sample of a Prometheus text exposition.
struct PromSample {
  std::string name;
  std::map<std::string, std::string> labels;  // values unescaped
  std::string value;                          // as written: "12", "0.5", "NaN"
};

// A parsed exposition: its samples, and each family's # TYPE.
struct PromText {
  std::vector<PromSample> samples;
  std::map<std::string, std::string> types;
  std::set<std::string> helps;

  // The value of the sample `name` with exactly `labels`; "" if there is none.
  std::string Value(const std::string& name,
                    const std::map<std::string, std::string>& labels = {}) const {
    for (const PromSample& s : samples) {
      if (s.name == name && s.labels == labels) return s.value;
    }
    return "";
  }
  bool HasFamily(const std::string& name) const { return types.count(name) != 0; }
};

// Parses the text exposition format 0.0.4 strictly: metric and label names well formed,
// every sample after its family's # TYPE (and # HELP), label values properly escaped,
// values numbers or NaN/+Inf/-Inf, no series twice, a final newline.
inline bool ParsePrometheus(std::string_view text, PromText* out, std::string* error) {
  const auto name_ok = [](std::string_view n, bool colon) {
    if (n.empty()) return false;
    for (size_t i = 0; i < n.size(); ++i) {
      const char c = n[i];
      const bool alpha =
          (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':');
      if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
    }
    return true;
  };
  if (!text.empty() && text.back() != '\n') {
    *error = "no final newline";
    return false;
  }
  std::set<std::string> series;
  size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    const size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl + 1);
    const std::string where = "line " + std::to_string(line_no) + ": ";
    if (line.empty()) continue;
    if (line.starts_with("# HELP ") || line.starts_with("# TYPE ")) {
      std::string_view rest = line.substr(7);
      const size_t sp = rest.find(' ');
      const std::string name(rest.substr(0, sp));
      if (sp == std::string_view::npos || !name_ok(name, true)) {
        *error = where + "bad comment";
        return false;
      }
      if (line[2] == 'H') {
        out->helps.insert(name);
      } else {
        const std::string type(rest.substr(sp + 1));
        static const std::set<std::string> kTypes = {"counter", "gauge", "summary", "histogram",
                                                     "untyped"};
        if (kTypes.count(type) == 0 || out->types.count(name) != 0) {
          *error = where + "bad or repeated TYPE";
          return false;
        }
        out->types[name] = type;
      }
      continue;
    }
    if (line.starts_with("#")) continue;
    PromSample s;
    size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    s.name = std::string(line.substr(0, i));
    if (!name_ok(s.name, true)) {
      *error = where + "bad metric name";
      return false;
    }
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        const size_t eq = line.find('=', i);
        if (eq == std::string_view::npos) {
          *error = where + "bad label";
          return false;
        }
        const std::string label(line.substr(i, eq - i));
        if (!name_ok(label, false) || eq + 1 >= line.size() || line[eq + 1] != '"') {
          *error = where + "bad label name";
          return false;
        }
        std::string value;
        size_t j = eq + 2;
        for (; j < line.size() && line[j] != '"'; ++j) {
          if (line[j] == '\\') {
            if (++j >= line.size()) break;
            if (line[j] == 'n') {
              value += '\n';
            } else if (line[j] == '\\' || line[j] == '"') {
              value += line[j];
            } else {
              *error = where + "bad escape in a label value";
              return false;
            }
          } else {
            value += line[j];
          }
        }
        if (j >= line.size()) {
          *error = where + "unterminated label value";
          return false;
        }
        s.labels[label] = value;
        i = j + 1;
        if (i < line.size() && line[i] == ',') ++i;
      }
      if (i >= line.size()) {
        *error = where + "unterminated labels";
        return false;
      }
      ++i;
    }
    if (i >= line.size() || line[i] != ' ') {
      *error = where + "no value";
      return false;
    }
    s.value = std::string(line.substr(i + 1));
    if (s.value != "NaN" && s.value != "+Inf" && s.value != "-Inf") {
      char* end = nullptr;
      std::strtod(s.value.c_str(), &end);
      if (s.value.empty() || *end != '\0') {
        *error = where + "bad value '" + s.value + "'";
        return false;
      }
    }
    std::string family = s.name;
    for (const char* suffix : {"_sum", "_count", "_bucket"}) {
      const std::string_view sv(suffix);
      if (family.ends_with(sv) && out->types.count(family) == 0 &&
          out->types.count(family.substr(0, family.size() - sv.size())) != 0) {
        family = family.substr(0, family.size() - sv.size());
      }
    }
    if (out->types.count(family) == 0 || out->helps.count(family) == 0) {
      *error = where + "sample of " + s.name + " before its # HELP and # TYPE";
      return false;
    }
    std::string key = s.name;
    for (const auto& [k, v] : s.labels) key += "|" + k + "=" + v;
    if (!series.insert(key).second) {
      *error = where + "series repeated";
      return false;
    }
    out->samples.push_back(std::move(s));
  }
  return true;
}

}  // namespace spool::testing

#endif  // SPOOL_TESTS_FORMAT_TEST_UTIL_H_
