// A small JSON reader for the control channel's requests and responses (one object per
// line, docs/operations.md, "The control channel"). Writing JSON is spool/metrics.h's
// JsonQuote and MessageInfoJson.
//
// Thread-safety: pure functions over values.

#ifndef SPOOL_CONTROL_JSON_H_
#define SPOOL_CONTROL_JSON_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "spool/status.h"

namespace spool::control {

// Nesting deeper than this is refused: a request is a flat object with a filter in it.
inline constexpr int kMaxJsonDepth = 16;

struct JsonValue {
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };
  Type type = Type::kNull;
  bool boolean = false;
  double number = 0;
  std::string str;                                        // kString, decoded
  std::vector<JsonValue> items;                           // kArray
  std::map<std::string, JsonValue, std::less<>> members;  // kObject
  // The value's own text in the parsed input, for passing a nested object on unchanged.
  // REQUIRES: the input outlives it.
  std::string_view raw;

  // The member `name` of an object, or null when absent (or this is no object).
  const JsonValue* Find(std::string_view name) const;
  // A whole number in [0, 2^53] (exact in a double), else nullopt.
  std::optional<uint64_t> Uint() const;
  // A whole number in [-2^53, 2^53], else nullopt.
  std::optional<int64_t> Int() const;
};

// Parses exactly one JSON value (RFC 8259; whitespace around it allowed). Errors:
// kInvalidArgument naming the offset of the first problem.
StatusOr<JsonValue> ParseJson(std::string_view text);

}  // namespace spool::control

#endif  // SPOOL_CONTROL_JSON_H_
