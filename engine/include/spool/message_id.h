// Message ids: unique for the life of a spool, time-ordered, naming their shard.
//
// 128 bits: `time` is a microsecond timestamp made strictly increasing within a process;
// `tag` holds the shard (high 16 bits) and a random per-process nonce (low 48 bits), so
// ids from two runs of a spool differ even if the clock went backwards in between.
// The canonical text (the "queue id" an MTA puts in its 250 reply) is 22 characters of
// [0-9A-Za-z]: the two halves in base 62, fixed width, so text order is time order.
//
// Thread-safety: a value type.

#ifndef SPOOL_MESSAGE_ID_H_
#define SPOOL_MESSAGE_ID_H_

#include <compare>
#include <cstdint>
#include <string>
#include <string_view>

#include "spool/status.h"

namespace spool {

class MessageId {
 public:
  static constexpr size_t kTextLength = 22;

  MessageId() = default;  // the invalid id (all zero)
  MessageId(uint64_t time, uint64_t tag) : time_(time), tag_(tag) {}

  // Parses the canonical text form: exactly kTextLength characters of [0-9A-Za-z] that
  // name a valid id. Errors: kInvalidArgument for anything else (the invalid id too).
  static StatusOr<MessageId> Parse(std::string_view text);

  // The canonical text form, kTextLength characters; Parse(ToString()) == *this for a
  // valid id.
  std::string ToString() const;
  // False only for the invalid id (time 0), which no spool hands out.
  bool valid() const { return time_ != 0; }
  uint64_t time() const { return time_; }
  uint64_t tag() const { return tag_; }
  // The number of the shard that stores the message (its SPOOL marker's).
  uint32_t shard() const { return static_cast<uint32_t>(tag_ >> 48); }
  // Arrival time of the message in microseconds since the epoch (from the id).
  uint64_t micros() const { return time_; }

  friend bool operator==(const MessageId&, const MessageId&) = default;
  friend auto operator<=>(const MessageId&, const MessageId&) = default;

 private:
  uint64_t time_ = 0;
  uint64_t tag_ = 0;
};

}  // namespace spool

#endif  // SPOOL_MESSAGE_ID_H_
