// The SMTP receiver's grammar (RFC 5321, RFC 1870 SIZE, RFC 6152 8BITMIME): command lines
// split into verb and argument, MAIL and RCPT arguments parsed into a path and parameters,
// and the DATA decoder that finds the end of the data and undoes dot-stuffing. Pure
// functions over bytes, without sockets, so that tests can drive them directly.
//
// Line endings. A command line ends at LF; a CR before it is dropped (lenient, like most
// receivers: a person typing into nc gets answers). Inside DATA only CRLF ends a line,
// and the data ends at <CRLF>.<CRLF> only, so "<LF>.<LF>" or "<CRLF>.<LF>" never ends a
// message early (no SMTP smuggling). Dot-unstuffing applies to a '.' that starts a
// CRLF-delimited line. A bare LF or bare CR in DATA is noticed (the server refuses the
// message: docs/smtpd.md) and, in BareLineEndings::kNormalize, stored as CRLF.
//
// Thread-safety: the functions are pure; a DataDecoder is thread-compatible.

#ifndef SPOOL_TOOLS_SMTPD_PROTOCOL_H_
#define SPOOL_TOOLS_SMTPD_PROTOCOL_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace spool::smtpd {

// RFC 5321 §4.5.3.1.4: a command line is at most 512 octets with its CRLF; §4.5.3.1.6: a
// text line at most 1000. Command lines longer than 1000 get 500 5.5.2 (the larger limit:
// MAIL and RCPT with parameters may exceed 512 under extensions).
inline constexpr size_t kMaxCommandLine = 1000;
// RFC 5321 §4.5.3.1.3: a reverse- or forward-path is at most 256 octets with its brackets.
inline constexpr size_t kMaxPath = 256;

enum class Verb {
  kHelo,
  kEhlo,
  kMail,
  kRcpt,
  kData,
  kRset,
  kNoop,
  kQuit,
  kVrfy,
  kHelp,
  kNotImplemented,  // known verbs this receiver does not offer: EXPN, TURN, ETRN, ...
  kUnknown,
};

struct Command {
  Verb verb = Verb::kUnknown;
  std::string_view arg;  // the text after the verb and its separating spaces
};

// Splits a command line (without its line ending) into verb and argument. The verb is
// case-insensitive.
Command ParseCommand(std::string_view line);

// The parsed argument of MAIL FROM: or RCPT TO:.
struct PathArg {
  std::string address;           // without angle brackets or source route; "" for <>
  std::optional<uint64_t> size;  // SIZE=n (MAIL only)
  bool body_8bit = false;        // BODY=8BITMIME (MAIL only)
};

enum class PathError {
  kNone,
  kSyntax,        // 501 5.5.4 (malformed path or "FROM:"/"TO:" missing)
  kBadParameter,  // 555 5.5.4 (unknown or malformed ESMTP parameter)
};

// Parses `arg` of "MAIL FROM:<path> [params]" (`keyword` "FROM") or "RCPT TO:<path>
// [params]" (`keyword` "TO", where no parameters are accepted). Spaces after the colon
// are tolerated. The null path <> parses (the caller refuses it for RCPT).
PathError ParsePathArg(std::string_view arg, std::string_view keyword, bool allow_params,
                       PathArg* out);

// What the DataDecoder stores for a bare LF or bare CR (one not part of a CRLF).
enum class BareLineEndings {
  kKeep,       // the byte as it came
  kNormalize,  // CRLF in its place
};

// Consumes the bytes of DATA after the 354 reply. Thread-compatible.
class DataDecoder {
 public:
  explicit DataDecoder(BareLineEndings bare = BareLineEndings::kKeep) : bare_(bare) {}

  // Resets to the start of a message (at the start of a line).
  void Reset() {
    at_line_start_ = true;
    saw_bare_ = false;
  }

  // Whether a bare LF or bare CR has been consumed since Reset.
  bool saw_bare_line_ending() const { return saw_bare_; }

  // Consumes a prefix of `in`, appending the body bytes it holds (dot-unstuffed, bare line
  // endings as BareLineEndings says) to *body, or discarding them if body is null. The
  // bytes appended are at most twice those consumed (kNormalize). Returns the
  // number of bytes consumed and sets *done once the terminating <CRLF>.<CRLF> (the
  // CRLF before the dot belongs to the body) has been consumed; bytes after it are not
  // consumed. Unconsumed bytes (at most 2: a trailing CR, or a line-start '.' whose
  // meaning the next bytes decide) must be offered again with what follows.
  size_t Feed(std::string_view in, std::string* body, bool* done);

 private:
  // Appends the text of a line without its CRLF, where any CR or LF is bare.
  void AppendText(std::string_view text, std::string* body);

  BareLineEndings bare_;
  bool at_line_start_ = true;
  bool saw_bare_ = false;
};

}  // namespace spool::smtpd

#endif  // SPOOL_TOOLS_SMTPD_PROTOCOL_H_
