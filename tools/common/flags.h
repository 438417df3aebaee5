// The one way the tools read a command line (spool-bench, spool-ctl and each of its
// commands, spool-fsck, spool-smtpd): a Flags declares what a command line takes, parses
// it by the rules below, and reports a usage error in one form.
//
//   --name VALUE, --name=VALUE  an option with a value; the argument after --name is its
//                               value whatever it looks like
//   --name                      a flag (--name=VALUE is an error)
//   -h, --help                  the help text is asked for: parsing stops there
//   --                          ends the options: what follows is positional
//   -                           positional (stdin, by convention)
//   -anything else              an unknown option
// Everything else is positional. An option given again replaces the earlier value unless
// it is declared Repeat::kOnce.
//
// A usage error is one line on stderr,
//   TOOL: [COMMAND: ]MESSAGE (see 'TOOL [COMMAND ]--help')
// and the tool then exits with its usage exit code.
//
//   bool json = false;
//   std::optional<std::string> spool;
//   cli::Flags flags("spool-fsck", kExitUsage);
//   flags.Value("--spool", &spool, cli::Repeat::kOnce).Flag("--json", &json);
//   switch (flags.Parse(args)) { ... }
//   if (!spool) return flags.UsageError("--spool DIR[,DIR...] is needed");
//
// Thread-safety: a Flags is thread-compatible; its setters run on the thread that parses.

#ifndef SPOOL_TOOLS_COMMON_FLAGS_H_
#define SPOOL_TOOLS_COMMON_FLAGS_H_

#include <cstddef>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace spool::cli {

// Takes a value (of an option, or a positional argument) after checking it. Returns a
// usage error ("unknown engine 'x'"), or "" when the value is taken.
using Setter = std::function<std::string(const std::string& value)>;

// What a second occurrence of an option does.
enum class Repeat {
  kLastWins,  // it is taken as well: a later value replaces an earlier one
  kOnce,      // it is a usage error: "option --spool given twice"
};

// What Flags::Parse found.
enum class Parsed {
  kOk,          // the arguments are taken
  kHelp,        // -h or --help: the caller prints its help text
  kUsageError,  // the error line is printed: the caller exits with its usage exit code
};

class Flags {
 public:
  // `tool` is the program's name ("spool-ctl"); `command`, when the arguments are a
  // command's, its name ("list"). Both go into the usage error line.
  Flags(std::string_view tool, int usage_exit_code, std::string_view command = "");

  Flags(const Flags&) = delete;
  Flags& operator=(const Flags&) = delete;

  // Declares an option with a value ("--name", with its dashes); `set` takes each value
  // given, in order.
  Flags& Value(std::string_view name, Setter set, Repeat repeat = Repeat::kLastWins);
  // Declares an option whose value is stored in *value.
  Flags& Value(std::string_view name, std::string* value, Repeat repeat = Repeat::kLastWins);
  Flags& Value(std::string_view name, std::optional<std::string>* value,
               Repeat repeat = Repeat::kLastWins);
  // Declares a flag: `given` runs each time it is given.
  Flags& Flag(std::string_view name, std::function<void()> given,
              Repeat repeat = Repeat::kLastWins);
  // Declares a flag that sets *on.
  Flags& Flag(std::string_view name, bool* on, Repeat repeat = Repeat::kLastWins);

  // Positional arguments go to `add`, in order. Without it, one is a usage error
  // ("unexpected argument 'x'").
  Flags& Positional(Setter add);

  // Parsing stops before the first positional argument (a command's name) and leaves it
  // and what follows to the caller: consumed() tells where.
  Flags& StopAtPositional();

  // Said in parentheses after an unknown option's error: where the option might belong.
  Flags& UnknownOptionHint(std::string_view hint);

  // Parses `args`: the arguments after the program's name, or after the command's.
  // Prints the error line of a usage error. Call it once, after the declarations.
  Parsed Parse(std::span<const std::string> args);
  Parsed Parse(int argc, char** argv);

  // After Parse: how many of its arguments it consumed.
  size_t consumed() const { return consumed_; }

  // Prints the usage error line for `message`; returns the usage exit code.
  int UsageError(std::string_view message) const;

 private:
  struct Option {
    std::string name;
    bool takes_value = false;
    Repeat repeat = Repeat::kLastWins;
    Setter set;  // for a flag, called with ""
    int given = 0;
  };

  Option* Find(std::string_view name);
  // Takes one option argument, args[*i] (and its value, which may advance *i). Returns a
  // usage error, or "".
  std::string TakeOption(std::span<const std::string> args, size_t* i);

  const std::string tool_;
  const int usage_exit_code_;
  const std::string command_;
  std::vector<Option> options_;
  Setter positional_;
  bool stop_at_positional_ = false;
  std::string unknown_hint_;
  size_t consumed_ = 0;
};

}  // namespace spool::cli

#endif  // SPOOL_TOOLS_COMMON_FLAGS_H_
