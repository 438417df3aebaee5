// The tools' command-line parser (tools/common/flags.h): its rules, and the one line a
// usage error prints.

#include "tools/common/flags.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

namespace spool::cli {
namespace {

constexpr int kUsageExit = 64;

// A command line of a tool "t": --dir (once), --size (the last one wins), --json, and
// positional arguments.
struct Line {
  std::optional<std::string> dir;
  std::string size;
  bool json = false;
  std::vector<std::string> positional;
  std::string error;  // the usage error line printed, if any

  Parsed Parse(const std::vector<std::string>& args, std::string_view command = "") {
    Flags flags("t", kUsageExit, command);
    flags.Value("--dir", &dir, Repeat::kOnce)
        .Value("--size",
               [this](const std::string& v) {
                 if (v.empty()) return std::string("--size is empty");
                 size = v;
                 return std::string();
               })
        .Flag("--json", &json)
        .Positional([this](const std::string& arg) {
          positional.push_back(arg);
          return std::string();
        });
    testing::internal::CaptureStderr();
    const Parsed parsed = flags.Parse(args);
    error = testing::internal::GetCapturedStderr();
    return parsed;
  }
};

TEST(FlagsTest, ValuesFlagsAndPositionalArguments) {
  Line line;
  EXPECT_EQ(line.Parse({"a", "--dir", "d", "--size=12", "-", "--json", "b"}), Parsed::kOk);
  EXPECT_EQ(line.dir, "d");
  EXPECT_EQ(line.size, "12");
  EXPECT_TRUE(line.json);
  EXPECT_EQ(line.positional, (std::vector<std::string>{"a", "-", "b"}));
  EXPECT_EQ(line.error, "");
}

TEST(FlagsTest, AValueIsTheNextArgumentWhateverItLooksLike) {
  Line line;
  EXPECT_EQ(line.Parse({"--dir", "--json", "--size", "-"}), Parsed::kOk);
  EXPECT_EQ(line.dir, "--json");
  EXPECT_EQ(line.size, "-");
  EXPECT_FALSE(line.json);
}

TEST(FlagsTest, DoubleDashEndsTheOptions) {
  Line line;
  EXPECT_EQ(line.Parse({"--json", "--", "--dir", "-h"}), Parsed::kOk);
  EXPECT_TRUE(line.json);
  EXPECT_FALSE(line.dir);
  EXPECT_EQ(line.positional, (std::vector<std::string>{"--dir", "-h"}));
}

TEST(FlagsTest, HelpStopsParsing) {
  for (const char* help : {"-h", "--help"}) {
    Line line;
    EXPECT_EQ(line.Parse({"--json", help, "--bogus"}), Parsed::kHelp) << help;
    EXPECT_EQ(line.error, "");
  }
}

TEST(FlagsTest, TheLastValueWinsUnlessGivenOnce) {
  Line line;
  EXPECT_EQ(line.Parse({"--size", "1", "--size", "2", "--json", "--json"}), Parsed::kOk);
  EXPECT_EQ(line.size, "2");
  EXPECT_EQ(line.Parse({"--dir", "a", "--dir=b"}), Parsed::kUsageError);
  EXPECT_EQ(line.error, "t: option --dir given twice (see 't --help')\n");
}

TEST(FlagsTest, EachUsageErrorIsOneLine) {
  const struct {
    std::vector<std::string> args;
    std::string line;
  } cases[] = {
      {{"--bogus=1"}, "t: unknown option '--bogus' (see 't --help')\n"},
      {{"-x"}, "t: unknown option '-x' (see 't --help')\n"},
      {{"--bo\x01gus"}, "t: unknown option '--bo\\x01gus' (see 't --help')\n"},
      {{"--dir"}, "t: option --dir needs a value (see 't --help')\n"},
      {{"--json=yes"}, "t: option --json takes no value (see 't --help')\n"},
      {{"--help=yes"}, "t: option --help takes no value (see 't --help')\n"},
      {{"--size="}, "t: --size is empty (see 't --help')\n"},
  };
  for (const auto& c : cases) {
    Line line;
    EXPECT_EQ(line.Parse(c.args), Parsed::kUsageError) << c.args[0];
    EXPECT_EQ(line.error, c.line);
  }
  Line line;
  EXPECT_EQ(line.Parse({"--bogus"}, "list"), Parsed::kUsageError);
  EXPECT_EQ(line.error, "t: list: unknown option '--bogus' (see 't list --help')\n");
}

TEST(FlagsTest, PositionalArgumentsNeedATaker) {
  Flags flags("t", kUsageExit);
  testing::internal::CaptureStderr();
  EXPECT_EQ(flags.Parse(std::vector<std::string>{"extra"}), Parsed::kUsageError);
  EXPECT_EQ(testing::internal::GetCapturedStderr(),
            "t: unexpected argument 'extra' (see 't --help')\n");
}

TEST(FlagsTest, StopAtPositionalLeavesTheCommandToTheCaller) {
  bool global = false;
  Flags flags("t", kUsageExit);
  flags.Flag("--global", &global).StopAtPositional().UnknownOptionHint("before the command");
  const std::vector<std::string> args = {"--global", "list", "--json"};
  EXPECT_EQ(flags.Parse(args), Parsed::kOk);
  EXPECT_TRUE(global);
  EXPECT_EQ(flags.consumed(), 1u);

  Flags hinted("t", kUsageExit);
  hinted.StopAtPositional().UnknownOptionHint("before the command");
  testing::internal::CaptureStderr();
  EXPECT_EQ(hinted.Parse(std::vector<std::string>{"--json", "list"}), Parsed::kUsageError);
  EXPECT_EQ(testing::internal::GetCapturedStderr(),
            "t: unknown option '--json' (before the command) (see 't --help')\n");
}

TEST(FlagsTest, UsageErrorReturnsTheToolsExitCode) {
  Flags flags("t", kUsageExit, "cmd");
  testing::internal::CaptureStderr();
  EXPECT_EQ(flags.UsageError("no command given"), kUsageExit);
  EXPECT_EQ(testing::internal::GetCapturedStderr(),
            "t: cmd: no command given (see 't cmd --help')\n");
}

}  // namespace
}  // namespace spool::cli
