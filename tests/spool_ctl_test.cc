// spool-ctl, run as a subprocess against spools filled through the API.

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "format_test_util.h"
#include "spool/metrics.h"
#include "spool/spool.h"
#include "test_util.h"
#include "tools/ctl/ctl.h"

#ifndef SPOOL_CTL_PATH
#error "SPOOL_CTL_PATH must name the spool-ctl binary"
#endif

namespace spool {
namespace {

using testing::Json;
using testing::JsonParser;
using testing::PromText;
using testing::TempDir;

using CtlResult = testing::ProcessResult;
using testing::ReadFile;
using testing::WriteFile;

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// The messages Fill() stores.
struct Filled {
  MessageId plain;    // queue default, 2 recipients, one delivered, next attempt in 1h
  MessageId binary;   // queue bulk, null sender, held; body with NULs and CRLF
  MessageId strange;  // queue default, sender and recipient with quotes and control bytes
  MessageId big;      // queue bulk, a body stored in chunks
  std::map<std::string, std::string> bodies;  // id text -> body
  std::vector<MessageId> all() const { return {plain, binary, strange, big}; }
};

const char kStrangeSender[] = "we\"ird\\<\x01>\xFF@example.com";
const char kCorruptPattern[] = "UNIQUE-PATTERN-TO-CORRUPT-7f3a9c1e";

class SpoolCtlTest : public ::testing::Test {
 protected:
  static constexpr int64_t kPauseMs = 3000;

  const std::string& spool_dir() const { return spool_dir_; }

  // The spool with the default options, as spool-ctl opens it.
  std::unique_ptr<Spool> Open() {
    Options o;
    o.dirs = {spool_dir_};
    o.lock_holder = "spool_ctl_test (pid " + std::to_string(getpid()) + ")";
    StatusOr<std::unique_ptr<Spool>> s = Spool::Open(o);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? std::move(s).value() : nullptr;
  }

  // Stores four messages; with `pause`, the first is kPauseMs older than the others.
  Filled Fill(bool pause = false) {
    Filled f;
    std::unique_ptr<Spool> spool = Open();
    if (spool == nullptr) return f;
    Envelope plain;
    plain.sender = "Alice@Example.com";
    plain.recipients = {"bob@example.net", "carol@example.org"};
    const std::string plain_body =
        "Subject: hello\r\n\r\nHello " + std::string(kCorruptPattern) + " world\r\n";
    f.plain = Enqueue(*spool, plain, plain_body, &f);
    AttemptResult r;
    r.recipients = {{0, RecipientStatus::kDelivered}, {1, RecipientStatus::kDeferred}};
    r.next_attempt_ms = NowMs() + 3600 * 1000;
    EXPECT_OK(spool->RecordAttempt(f.plain, r));
    if (pause) std::this_thread::sleep_for(std::chrono::milliseconds(kPauseMs));

    Envelope bounce;
    bounce.queue = "bulk";
    bounce.recipients = {"postmaster@example.com"};
    std::string binary = std::string("\0\r\n.\r\n\0\0", 8) + testing::RandomBytes(1, 5000) +
                         std::string("\r\n\0", 3);
    f.binary = Enqueue(*spool, bounce, binary, &f);
    EXPECT_OK(spool->Hold(f.binary));

    Envelope strange;
    strange.sender = kStrangeSender;
    strange.recipients = {"q\"uote\t@example.com"};
    strange.metadata = "meta\ndata";
    f.strange = Enqueue(*spool, strange, "x", &f);

    Envelope big;
    big.queue = "bulk";
    big.sender = "big@example.com";
    big.recipients = {"dave@example.net"};
    f.big = Enqueue(*spool, big, testing::RandomBytes(2, (5 << 20) / 2), &f);
    return f;
  }

  MessageId Enqueue(Spool& spool, const Envelope& env, const std::string& body, Filled* f) {
    StatusOr<MessageId> id = spool.Enqueue(env, body);
    EXPECT_TRUE(id.ok()) << id.status().ToString();
    if (!id.ok()) return MessageId();
    f->bodies[id->ToString()] = body;
    return *id;
  }

  static int64_t NowMs() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }

  // Runs spool-ctl with `args` and `input` on stdin. SPOOL_LOG_LEVEL is dropped from its
  // environment, so that its stderr is its own.
  CtlResult Run(const std::vector<std::string>& args, const std::string& input = "") {
    const std::string base = dir_.Sub("run" + std::to_string(runs_++));
    WriteFile(base + ".in", input);
    return testing::RunProcess(SPOOL_CTL_PATH, args, base + ".in", base);
  }

  // spool-ctl --spool DIR ARGS...
  CtlResult Ctl(std::vector<std::string> args, const std::string& input = "") {
    args.insert(args.begin(), {"--spool", spool_dir_});
    return Run(args, input);
  }

  // Flips one byte of Fill()'s plain message's body where it lies in its segment file.
  void CorruptPlainBody() {
    size_t hits = 0;
    for (const auto& entry : std::filesystem::directory_iterator(spool_dir_ + "/log")) {
      if (!entry.is_regular_file()) continue;
      std::string data = ReadFile(entry.path());
      for (size_t pos = data.find(kCorruptPattern); pos != std::string::npos;
           pos = data.find(kCorruptPattern, pos + 1)) {
        ++hits;
        const int fd = ::open(entry.path().c_str(), O_WRONLY);
        ASSERT_GE(fd, 0);
        const char flipped = static_cast<char>(data[pos + 5] ^ 0x20);
        ASSERT_EQ(::pwrite(fd, &flipped, 1, static_cast<off_t>(pos + 5)), 1);
        ASSERT_EQ(::fsync(fd), 0);
        ::close(fd);
      }
    }
    ASSERT_EQ(hits, 1u) << "the pattern should be stored exactly once";
  }

  // The state of `id` as a fresh (read-only) open sees it, or nullopt if it is gone.
  std::optional<MessageInfo> StateOf(const MessageId& id) {
    Options o;
    o.dirs = {spool_dir_};
    o.read_only = true;
    StatusOr<std::unique_ptr<Spool>> opened = Spool::Open(o);
    EXPECT_TRUE(opened.ok()) << opened.status().ToString();
    if (!opened.ok()) return std::nullopt;
    std::unique_ptr<Spool> spool = std::move(opened).value();
    StatusOr<MessageInfo> m = spool->Get(id);
    if (!m.ok()) return std::nullopt;
    return *m;
  }

  TempDir dir_;
  std::string spool_dir_ = dir_.Sub("spool");
  int runs_ = 0;
};

Json ParseJson(const std::string& text) {
  Json j;
  std::string error;
  EXPECT_TRUE(JsonParser::Parse(text, &j, &error)) << error << "\n" << text;
  return j;
}

// Every usage error and open failure is one line on stderr and nothing on stdout.
void ExpectOneErrorLine(const CtlResult& r) {
  EXPECT_TRUE(r.out.empty()) << r.out;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_TRUE(r.err.starts_with("spool-ctl: ")) << r.err;
}

TEST_F(SpoolCtlTest, HelpForTheToolAndEachCommand) {
  CtlResult r = Run({"--help"});
  EXPECT_EQ(r.code, ctl::kExitOk);
  EXPECT_NE(r.out.find("Usage: spool-ctl --spool DIR"), std::string::npos);
  EXPECT_NE(r.out.find("Exit status"), std::string::npos);
  for (const char* cmd :
       {"list", "show", "cat", "export", "hold", "release", "requeue", "delete", "stats"}) {
    r = Run({cmd, "--help"});
    EXPECT_EQ(r.code, ctl::kExitOk) << cmd;
    EXPECT_NE(r.out.find(std::string("spool-ctl --spool DIR[,DIR...] [--read-only] ") + cmd),
              std::string::npos)
        << r.out;
    r = Run({"help", cmd});
    EXPECT_EQ(r.code, ctl::kExitOk) << cmd;
  }
}

TEST_F(SpoolCtlTest, UsageErrorsExitTwo) {
  const std::vector<std::vector<std::string>> cases = {
      {},
      {"--spool", spool_dir()},
      {"--spool", spool_dir(), "frobnicate"},
      {"--bogus", "list"},
      {"list"},  // no --spool
      {"--spool", spool_dir(), "list", "--bogus"},
      {"--spool", spool_dir(), "list", "--state", "lost"},
      {"--spool", spool_dir(), "list", "--older-than", "10"},
      {"--spool", spool_dir(), "list", "--older-than", "1y"},
      {"--spool", spool_dir(), "list", "--queue"},
      {"--spool", spool_dir(), "list", "--json", "--ids"},
      {"--spool", spool_dir(), "show"},
      {"--spool", spool_dir(), "cat", "a", "b"},
      {"--spool", spool_dir(), "hold"},
      {"--spool", spool_dir(), "delete", "-", "-"},
      {"--spool", spool_dir(), "stats", "--json", "--prometheus"},
      {"--spool", spool_dir() + ",", "list"},
      {"--spool", spool_dir(), "--read-only", "delete", "x"},
  };
  for (const auto& args : cases) {
    CtlResult r = Run(args);
    std::string shown;
    for (const std::string& a : args) shown += a + " ";
    EXPECT_EQ(r.code, ctl::kExitUsage) << shown << "\n" << r.err;
    ExpectOneErrorLine(r);
  }
  // Nothing was created along the way.
  EXPECT_FALSE(std::filesystem::exists(spool_dir()));
}

TEST_F(SpoolCtlTest, CannotOpenExitsThreeAndCreatesNothing) {
  for (const char* cmd : {"list", "stats", "delete"}) {
    std::vector<std::string> args = {cmd};
    if (std::string(cmd) == "delete") args.push_back("-");
    CtlResult r = Ctl(args);
    EXPECT_EQ(r.code, ctl::kExitCannotOpen) << cmd << " " << r.err;
    ExpectOneErrorLine(r);
    EXPECT_NE(r.err.find("does not exist"), std::string::npos) << r.err;
  }
  EXPECT_FALSE(std::filesystem::exists(spool_dir()));
  // A directory that is not a spool.
  std::filesystem::create_directories(spool_dir());
  WriteFile(spool_dir() + "/unrelated", "data");
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"list"}, std::vector<std::string>{"hold", "-"}}) {
    CtlResult r = Ctl(args);
    EXPECT_EQ(r.code, ctl::kExitCannotOpen) << args[0] << " " << r.err;
    ExpectOneErrorLine(r);
    EXPECT_NE(r.err.find("not a spool"), std::string::npos) << r.err;
  }
  EXPECT_FALSE(std::filesystem::exists(spool_dir() + "/LOCK"));
}

TEST_F(SpoolCtlTest, ListTableAndFilters) {
  const Filled f = Fill(/*pause=*/true);
  // A threshold a second or more past the age of the newer messages and a second or
  // more short of the first's (they are kPauseMs apart).
  const int64_t start_ms = NowMs();
  const int64_t newer_age_ms = start_ms - static_cast<int64_t>(f.binary.micros() / 1000);
  const std::string threshold = std::to_string((newer_age_ms + 1999) / 1000) + "s";
  const auto ids_of = [&](std::vector<std::string> args) {
    args.push_back("--ids");
    args.insert(args.begin(), "list");
    CtlResult r = Ctl(args);
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.err, "");
    std::vector<std::string> lines = Lines(r.out);
    std::sort(lines.begin(), lines.end());
    return lines;
  };
  const auto sorted = [](std::vector<MessageId> ids) {
    std::vector<std::string> out;
    for (const MessageId& id : ids) out.push_back(id.ToString());
    std::sort(out.begin(), out.end());
    return out;
  };
  const std::vector<std::string> old_ones = ids_of({"--older-than", threshold});
  if (NowMs() - start_ms < 1000) {
    EXPECT_EQ(old_ones, sorted({f.plain})) << "--older-than " << threshold;
  } else {  // too slow a machine for the newer ones to be sure to be younger still
    EXPECT_NE(std::find(old_ones.begin(), old_ones.end(), f.plain.ToString()), old_ones.end());
  }
  EXPECT_EQ(ids_of({}), sorted(f.all()));
  EXPECT_EQ(ids_of({"--queue", "bulk"}), sorted({f.binary, f.big}));
  EXPECT_EQ(ids_of({"--queue=default"}), sorted({f.plain, f.strange}));
  EXPECT_EQ(ids_of({"--queue", "nosuch"}), sorted({}));
  EXPECT_EQ(ids_of({"--state", "held"}), sorted({f.binary}));
  EXPECT_EQ(ids_of({"--state", "queued"}), sorted({f.plain, f.strange, f.big}));
  EXPECT_EQ(ids_of({"--state", "corrupt"}), sorted({}));
  EXPECT_EQ(ids_of({"--sender", "alice@"}), sorted({f.plain}));
  EXPECT_EQ(ids_of({"--sender", "EXAMPLE.COM"}), sorted({f.plain, f.strange, f.big}));
  EXPECT_EQ(ids_of({"--sender", "<>"}), sorted({f.binary}));
  EXPECT_EQ(ids_of({"--recipient", "CAROL"}), sorted({f.plain}));
  EXPECT_EQ(ids_of({"--recipient", "example.net"}), sorted({f.plain, f.big}));
  EXPECT_EQ(ids_of({"--older-than", "0s"}), sorted(f.all()));
  EXPECT_EQ(ids_of({"--older-than", "1h30m"}), sorted({}));
  EXPECT_EQ(ids_of({"--queue", "bulk", "--state", "queued", "--recipient", "dave"}),
            sorted({f.big}));

  // The table: a header, then one line per message with its id, queue, state and size.
  CtlResult r = Ctl({"list"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::vector<std::string> lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 5u) << r.out;
  EXPECT_TRUE(lines[0].starts_with("ID ")) << lines[0];
  bool seen_binary = false;
  for (const std::string& line : lines) {
    if (!line.starts_with(f.binary.ToString())) continue;
    seen_binary = true;
    EXPECT_NE(line.find(" bulk "), std::string::npos) << line;
    EXPECT_NE(line.find(" held "), std::string::npos) << line;
    EXPECT_NE(line.find(" " + std::to_string(f.bodies.at(f.binary.ToString()).size()) + " "),
              std::string::npos)
        << line;
    EXPECT_NE(line.find("<> -> postmaster@example.com"), std::string::npos) << line;
  }
  EXPECT_TRUE(seen_binary);
  // Control bytes never reach the terminal raw.
  EXPECT_EQ(r.out.find('\x01'), std::string::npos);
  EXPECT_NE(r.out.find("\\x01"), std::string::npos);
}

TEST_F(SpoolCtlTest, ListJsonIsOneValidObjectPerLine) {
  const Filled f = Fill();
  CtlResult r = Ctl({"list", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::vector<std::string> lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 4u) << r.out;
  std::unique_ptr<Spool> spool = Open();
  ASSERT_NE(spool, nullptr);
  for (const std::string& line : lines) {
    Json j = ParseJson(line);
    for (const char* field :
         {"id", "queue", "sender", "recipients", "recipient_status", "size", "arrival",
          "arrival_ms", "next_attempt", "next_attempt_ms", "attempts", "state"}) {
      EXPECT_TRUE(j.Has(field)) << field << " in " << line;
    }
    ASSERT_OK_AND_ASSIGN(MessageId id, MessageId::Parse(j["id"].str));
    ASSERT_OK_AND_ASSIGN(MessageInfo m, spool->Get(id));
    EXPECT_EQ(j["queue"].str, m.envelope.queue);
    EXPECT_EQ(j["size"].Uint(), m.size);
    EXPECT_EQ(j["size"].Uint(), f.bodies.at(j["id"].str).size());
    EXPECT_EQ(j["arrival_ms"].Int(), m.arrival_ms);
    EXPECT_EQ(j["arrival"].str, FormatIsoTime(m.arrival_ms));
    EXPECT_EQ(j["next_attempt_ms"].Int(), m.next_attempt_ms);
    EXPECT_EQ(j["attempts"].Uint(), m.attempts);
    EXPECT_EQ(j["state"].str, MessageStateName(m.state));
    ASSERT_EQ(j["recipients"].array.size(), m.envelope.recipients.size());
    if (id == f.strange) {
      // Quotes, backslashes and control bytes survive; the invalid byte is U+FFFD.
      EXPECT_EQ(j["sender"].str, "we\"ird\\<\x01>\xEF\xBF\xBD@example.com");
      EXPECT_EQ(j["recipients"].array[0].str, "q\"uote\t@example.com");
      EXPECT_EQ(j["metadata"].str, "meta\ndata");
    } else {
      EXPECT_EQ(j["sender"].str, m.envelope.sender);
      EXPECT_EQ(j["recipients"].array[0].str, m.envelope.recipients[0]);
    }
    if (id == f.plain) {
      EXPECT_EQ(j["attempts"].Uint(), 1u);
      EXPECT_EQ(j["recipient_status"].array[0].str, "delivered");
      EXPECT_EQ(j["recipient_status"].array[1].str, "deferred");
    }
  }
}

TEST_F(SpoolCtlTest, ShowTextAndJson) {
  const Filled f = Fill();
  CtlResult r = Ctl({"show", f.plain.ToString()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("id:            " + f.plain.ToString()), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("queue:         default"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("state:         queued"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("sender:        Alice@Example.com"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("attempts:      1"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("(in 59m"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("delivered  bob@example.net"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("deferred   carol@example.org"), std::string::npos) << r.out;

  r = Ctl({"show", f.binary.ToString()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("state:         held"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("sender:        <>"), std::string::npos) << r.out;

  r = Ctl({"show", "--json", f.strange.ToString()});  // options may come first, too
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_EQ(Lines(r.out).size(), 1u);
  Json j = ParseJson(r.out);
  EXPECT_EQ(j["id"].str, f.strange.ToString());
  EXPECT_EQ(j["recipient_status"].array[0].str, "pending");
}

TEST_F(SpoolCtlTest, BadAndUnknownIdsExitOne) {
  const Filled f = Fill();
  // Well formed, but no such message (the next microsecond after the last one).
  const MessageId unknown(f.big.time() + 1, f.big.tag());
  // Well formed, naming a shard this spool does not have.
  const MessageId other_shard(f.big.time(), f.big.tag() | (uint64_t{7} << 48));
  const std::vector<std::string> bad = {"not-an-id", "0123456789", "\x1b[31mred"};
  for (const char* cmd : {"show", "cat"}) {
    for (const std::string& b : bad) {
      CtlResult r = Ctl({cmd, "--", b});
      EXPECT_EQ(r.code, ctl::kExitFailed) << cmd << " " << r.err;
      ExpectOneErrorLine(r);
      EXPECT_NE(r.err.find("is not a message id"), std::string::npos) << r.err;
      EXPECT_EQ(r.err.find('\x1b'), std::string::npos) << "raw escape on stderr";
    }
    for (const MessageId& id : {unknown, other_shard}) {
      CtlResult r = Ctl({cmd, id.ToString()});
      EXPECT_EQ(r.code, ctl::kExitFailed) << cmd << " " << r.err;
      ExpectOneErrorLine(r);
      EXPECT_NE(r.err.find(id.ToString()), std::string::npos) << r.err;
    }
  }
  // The mutating commands take them all at once: one line per failure, then a summary.
  for (const char* cmd : {"hold", "release", "requeue", "delete"}) {
    std::vector<std::string> args = {cmd, "--"};
    args.insert(args.end(), bad.begin(), bad.end());
    args.push_back(unknown.ToString());
    args.push_back(other_shard.ToString());
    CtlResult r = Ctl(args);
    EXPECT_EQ(r.code, ctl::kExitFailed) << cmd << " " << r.err;
    EXPECT_EQ(r.out, "");
    std::vector<std::string> err = Lines(r.err);
    ASSERT_EQ(err.size(), 6u) << r.err;
    for (size_t i = 0; i < 3; ++i) {
      EXPECT_NE(err[i].find("is not a message id"), std::string::npos) << err[i];
    }
    EXPECT_EQ(r.err.find('\x1b'), std::string::npos) << "raw escape on stderr";
    EXPECT_NE(err[3].find(unknown.ToString()), std::string::npos) << err[3];
    EXPECT_NE(err[4].find(other_shard.ToString()), std::string::npos) << err[4];
    EXPECT_NE(err[5].find("5 of 5 failed"), std::string::npos) << err[5];
  }
  // None of that changed anything.
  std::optional<MessageInfo> m = StateOf(f.binary);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->state, MessageState::kHeld);
}

TEST_F(SpoolCtlTest, CatWritesTheBodyByteForByte) {
  const Filled f = Fill();
  for (const MessageId& id : f.all()) {
    CtlResult r = Ctl({"cat", id.ToString()});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.err, "");
    const std::string& body = f.bodies.at(id.ToString());
    ASSERT_EQ(r.out.size(), body.size());
    EXPECT_TRUE(r.out == body) << "body of " << id.ToString() << " differs";
  }
}

TEST_F(SpoolCtlTest, CatOfACorruptMessageWritesNothing) {
  const Filled f = Fill();
  ASSERT_NO_FATAL_FAILURE(CorruptPlainBody());

  CtlResult r = Ctl({"cat", f.plain.ToString()});
  EXPECT_NE(r.code, 0);
  EXPECT_EQ(r.code, ctl::kExitFailed);
  EXPECT_EQ(r.out, "") << "corrupted bytes reached stdout";
  EXPECT_NE(r.err.find("corrupt"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(f.plain.ToString()), std::string::npos) << r.err;

  // The others are intact; the damaged one is still listed and shown.
  r = Ctl({"cat", f.binary.ToString()});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(r.out == f.bodies.at(f.binary.ToString()));
  r = Ctl({"show", f.plain.ToString()});
  EXPECT_EQ(r.code, 0) << r.err;
}

// The files of `dir` by name, with their contents.
std::map<std::string, std::string> FilesIn(const std::string& dir) {
  std::map<std::string, std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    files[entry.path().filename()] = ReadFile(entry.path());
  }
  return files;
}

TEST_F(SpoolCtlTest, ExportWritesEveryBodyByteForByte) {
  const Filled f = Fill();
  const std::string out = dir_.Sub("out");
  std::vector<std::string> args = {"export", "--dir", out};
  for (const MessageId& id : f.all()) args.push_back(id.ToString());
  CtlResult r = Ctl(args);
  ASSERT_EQ(r.code, ctl::kExitOk) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "");
  std::map<std::string, std::string> files = FilesIn(out);
  EXPECT_EQ(files.size(), 4u);  // nothing else: no temporary file left
  for (const auto& [id, body] : f.bodies) {
    ASSERT_EQ(files.count(id), 1u) << id;
    ASSERT_EQ(files[id].size(), body.size()) << id;
    EXPECT_TRUE(files[id] == body) << "body of " << id << " differs";
    EXPECT_EQ(
        std::filesystem::status(out + "/" + id).permissions() & std::filesystem::perms::others_all,
        std::filesystem::perms::none);
  }

  // Ids from stdin, with comments and blank lines, into a directory that holds an older
  // export (replaced), a leftover temporary file (replaced) and an unrelated file (kept).
  WriteFile(out + "/" + f.plain.ToString(), "stale");
  WriteFile(out + "/." + f.binary.ToString() + ".tmp", "interrupted");
  WriteFile(out + "/notes.txt", "mine");
  const std::string input =
      "# reviewed\n\n  " + f.plain.ToString() + "\r\n" + f.binary.ToString() + "\n";
  r = Ctl({"export", "--sync", "--dir=" + out, "-"}, input);
  ASSERT_EQ(r.code, ctl::kExitOk) << r.err;
  EXPECT_EQ(r.err, "");
  files = FilesIn(out);
  EXPECT_EQ(files.size(), 5u);
  EXPECT_TRUE(files[f.plain.ToString()] == f.bodies.at(f.plain.ToString()));
  EXPECT_TRUE(files[f.binary.ToString()] == f.bodies.at(f.binary.ToString()));
  EXPECT_EQ(files["notes.txt"], "mine");

  // An empty body is an empty file.
  MessageId empty;
  {
    std::unique_ptr<Spool> spool = Open();
    ASSERT_NE(spool, nullptr);
    Envelope e;
    e.recipients = {"e@example.com"};
    StatusOr<MessageId> id = spool->Enqueue(e, "");
    ASSERT_TRUE(id.ok()) << id.status().ToString();
    empty = *id;
  }
  r = Ctl({"export", "--dir", out, empty.ToString()});
  ASSERT_EQ(r.code, ctl::kExitOk) << r.err;
  EXPECT_TRUE(std::filesystem::is_regular_file(out + "/" + empty.ToString()));
  EXPECT_EQ(std::filesystem::file_size(out + "/" + empty.ToString()), 0u);
}

TEST_F(SpoolCtlTest, ExportReportsMissingAndCorruptAmongGoodOnes) {
  const Filled f = Fill();
  ASSERT_NO_FATAL_FAILURE(CorruptPlainBody());
  const MessageId unknown(f.big.time() + 1, f.big.tag());
  const std::string out = dir_.Sub("out");
  CtlResult r =
      Ctl({"export", "--dir", out, f.binary.ToString(), f.plain.ToString(), unknown.ToString(),
           f.strange.ToString(), "--", "not-an-id", f.big.ToString()});
  EXPECT_EQ(r.code, ctl::kExitFailed) << r.err;
  EXPECT_EQ(r.out, "");
  // The command's own lines; the library logs the damage it meets as well.
  std::vector<std::string> err;
  for (const std::string& line : Lines(r.err)) {
    if (!line.starts_with("spool-ctl: spool log: ")) err.push_back(line);
  }
  ASSERT_EQ(err.size(), 4u) << r.err;
  EXPECT_TRUE(err[0].starts_with("spool-ctl: export " + f.plain.ToString() + ": ")) << err[0];
  EXPECT_NE(err[0].find("checksum"), std::string::npos) << err[0];
  EXPECT_TRUE(err[1].starts_with("spool-ctl: export " + unknown.ToString() + ": ")) << err[1];
  EXPECT_NE(err[2].find("is not a message id"), std::string::npos) << err[2];
  EXPECT_EQ(err[3], "spool-ctl: export: 3 of 6 failed");
  // The good ones are there, byte for byte; no file (not even a temporary one) for the rest.
  std::map<std::string, std::string> files = FilesIn(out);
  EXPECT_EQ(files.size(), 3u);
  for (const MessageId& id : {f.binary, f.strange, f.big}) {
    EXPECT_TRUE(files[id.ToString()] == f.bodies.at(id.ToString())) << id.ToString();
  }
  EXPECT_EQ(files.count(f.plain.ToString()), 0u) << "corrupted bytes were exported";
}

TEST_F(SpoolCtlTest, ExportUsageAndOutputErrors) {
  const Filled f = Fill();
  const std::string id = f.plain.ToString();
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"export", id},                      // no --dir
           {"export", "--dir", "", id},         // empty --dir
           {"export", "--dir", dir_.Sub("o")},  // no ids
           {"export", "--dir", dir_.Sub("o"), "-", "-"},
           {"export", "--dir", dir_.Sub("o"), "--json", id},
       }) {
    CtlResult r = Ctl(args);
    EXPECT_EQ(r.code, ctl::kExitUsage) << r.err;
    ExpectOneErrorLine(r);
  }
  EXPECT_FALSE(std::filesystem::exists(dir_.Sub("o")));
  // OUT cannot be made: a regular file, a missing parent.
  WriteFile(dir_.Sub("file"), "x");
  for (const std::string& out : {dir_.Sub("file"), dir_.Sub("no/such/dir")}) {
    CtlResult r = Ctl({"export", "--dir", out, id});
    EXPECT_EQ(r.code, ctl::kExitFailed) << r.err;
    ExpectOneErrorLine(r);
    EXPECT_NE(r.err.find(out), std::string::npos) << r.err;
  }
  EXPECT_EQ(ReadFile(dir_.Sub("file")), "x");
  // A file that cannot be written (its temporary name is taken by a directory) or put in
  // place (its name is a directory): a line for each, the others are exported, and
  // nothing is left behind.
  const std::string out = dir_.Sub("out");
  std::filesystem::create_directories(out + "/." + id + ".tmp/sub");
  std::filesystem::create_directories(out + "/" + f.binary.ToString() + "/sub");
  CtlResult r = Ctl({"export", "--dir", out, id, f.binary.ToString(), f.strange.ToString()});
  EXPECT_EQ(r.code, ctl::kExitFailed) << r.err;
  std::vector<std::string> err = Lines(r.err);
  ASSERT_EQ(err.size(), 3u) << r.err;
  EXPECT_TRUE(err[0].starts_with("spool-ctl: export " + id + ": ")) << err[0];
  EXPECT_TRUE(err[1].starts_with("spool-ctl: export " + f.binary.ToString() + ": ")) << err[1];
  EXPECT_EQ(err[2], "spool-ctl: export: 2 of 3 failed");
  std::map<std::string, std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(out)) {
    if (entry.is_regular_file()) files[entry.path().filename()] = ReadFile(entry.path());
  }
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files[f.strange.ToString()], f.bodies.at(f.strange.ToString()));
}

TEST_F(SpoolCtlTest, HoldReleaseRequeueDeleteManyIds) {
  const Filled f = Fill();
  CtlResult r = Ctl({"hold", f.plain.ToString(), f.strange.ToString(), f.big.ToString()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "");
  for (const MessageId& id : f.all()) {
    std::optional<MessageInfo> m = StateOf(id);
    ASSERT_TRUE(m.has_value());
    EXPECT_EQ(m->state, MessageState::kHeld) << id.ToString();
  }

  // Ids from stdin: blank lines, comments and surrounding blanks are fine.
  r = Ctl({"release", "-"},
          "\n# from a list\n  " + f.plain.ToString() + "\r\n" + f.binary.ToString() + "\n\n");
  ASSERT_EQ(r.code, 0) << r.err;
  std::optional<MessageInfo> plain = StateOf(f.plain);
  ASSERT_TRUE(plain.has_value());
  EXPECT_EQ(plain->state, MessageState::kQueued);
  EXPECT_EQ(StateOf(f.binary)->state, MessageState::kQueued);
  EXPECT_EQ(StateOf(f.strange)->state, MessageState::kHeld);

  // Requeue makes due now: the plain message's next attempt was an hour away.
  const int64_t before = NowMs();
  r = Ctl({"requeue", f.plain.ToString(), f.strange.ToString()});
  ASSERT_EQ(r.code, 0) << r.err;
  plain = StateOf(f.plain);
  EXPECT_EQ(plain->state, MessageState::kQueued);
  EXPECT_LE(plain->next_attempt_ms, NowMs());
  EXPECT_GE(plain->next_attempt_ms, before - 1000);
  EXPECT_EQ(StateOf(f.strange)->state, MessageState::kQueued);

  // `list --ids` feeds `delete -`; a bad and an unknown id among them fail alone.
  r = Ctl({"list", "--queue", "bulk", "--ids"});
  ASSERT_EQ(r.code, 0) << r.err;
  const MessageId unknown(f.big.time() + 1, f.big.tag());
  r = Ctl({"delete", "bogus", "-", unknown.ToString()}, r.out);
  EXPECT_EQ(r.code, ctl::kExitFailed);
  std::vector<std::string> err = Lines(r.err);
  ASSERT_EQ(err.size(), 3u) << r.err;  // two failures and the summary
  EXPECT_NE(err[0].find("'bogus' is not a message id"), std::string::npos) << err[0];
  EXPECT_NE(err[1].find(unknown.ToString()), std::string::npos) << err[1];
  EXPECT_NE(err[2].find("2 of 4 failed"), std::string::npos) << err[2];
  EXPECT_FALSE(StateOf(f.binary).has_value());
  EXPECT_FALSE(StateOf(f.big).has_value());
  EXPECT_TRUE(StateOf(f.plain).has_value());

  // Deleting again: the ids are gone.
  r = Ctl({"delete", f.binary.ToString()});
  EXPECT_EQ(r.code, ctl::kExitFailed);
  EXPECT_NE(r.err.find("no message"), std::string::npos) << r.err;

  r = Ctl({"list", "--ids"});
  EXPECT_EQ(Lines(r.out).size(), 2u) << r.out;
}

TEST_F(SpoolCtlTest, SpoolHeldByAProcessWithoutControlSocket) {
  const Filled f = Fill();
  Options o;
  o.dirs = {spool_dir()};
  o.lock_holder = "spool_ctl_test (pid " + std::to_string(getpid()) + ")";
  o.control_socket = false;
  StatusOr<std::unique_ptr<Spool>> writer = Spool::Open(o);
  ASSERT_OK(writer.status());
  for (const char* cmd : {"hold", "release", "requeue", "delete"}) {
    CtlResult r = Ctl({cmd, f.plain.ToString()});
    EXPECT_EQ(r.code, ctl::kExitCannotOpen) << cmd << " " << r.err;
    ExpectOneErrorLine(r);
    EXPECT_NE(r.err.find("held by " + o.lock_holder), std::string::npos) << r.err;
  }
  // Read commands work beside the writer, with or without --read-only, and see what the
  // writer does.
  ASSERT_OK((*writer)->Hold(f.plain));
  CtlResult r = Run({"--spool", spool_dir(), "--read-only", "list", "--ids"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(Lines(r.out).size(), 4u);
  r = Ctl({"list", "--state", "held", "--ids"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(Lines(r.out).size(), 2u) << r.out;
  r = Ctl({"cat", f.binary.ToString()});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(r.out == f.bodies.at(f.binary.ToString()));
  r = Ctl({"show", "--json", f.plain.ToString()});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(ParseJson(r.out)["state"].str, "held");
  r = Ctl({"stats", "--json"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(ParseJson(r.out)["messages"].Uint(), 4u);
  // The writer is unaffected.
  ASSERT_OK((*writer)->Release(f.plain));
}

// Beside a writer that serves the control socket (the default), every command works and
// the writer makes the changes: the same output and exit codes as on a stopped spool.
TEST_F(SpoolCtlTest, CommandsGoThroughTheControlSocketOfTheWriter) {
  const Filled f = Fill();
  std::unique_ptr<Spool> writer = Open();
  ASSERT_NE(writer, nullptr);
  CtlResult r = Ctl({"hold", f.plain.ToString(), f.strange.ToString()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "");
  StatusOr<MessageInfo> m = writer->Get(f.plain);
  ASSERT_OK(m.status());
  EXPECT_EQ(m->state, MessageState::kHeld);
  // Live listings: the writer's own view.
  r = Ctl({"list", "--state", "held", "--ids"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(Lines(r.out).size(), 3u) << r.out;
  r = Ctl({"list", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  for (const std::string& line : Lines(r.out)) ParseJson(line);
  EXPECT_EQ(Lines(r.out).size(), 4u);
  r = Ctl({"list"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(Lines(r.out).size(), 5u) << r.out;
  r = Ctl({"show", "--json", f.plain.ToString()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(ParseJson(r.out)["state"].str, "held");
  r = Ctl({"show", f.plain.ToString()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("state:         held"), std::string::npos) << r.out;
  // Stats from the writer carry its counters and health.
  r = Ctl({"stats", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  Json stats = ParseJson(r.out);
  EXPECT_EQ(stats["messages"].Uint(), 4u);
  EXPECT_FALSE(stats["read_only"].boolean);
  r = Ctl({"stats"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("messages:   4"), std::string::npos) << r.out;
  r = Ctl({"stats", "--prometheus"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("spool_enqueued_total"), std::string::npos) << r.out;

  // Filters: a dry run counts, a filter matching nothing is an error that changes nothing.
  r = Ctl({"release", "--state", "held", "--dry-run"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("release: 3 messages would change"), std::string::npos) << r.out;
  EXPECT_EQ(writer->Get(f.plain)->state, MessageState::kHeld);
  r = Ctl({"delete", "--queue", "nosuch"});
  EXPECT_EQ(r.code, ctl::kExitFailed);
  ExpectOneErrorLine(r);
  EXPECT_NE(r.err.find("no message matches"), std::string::npos) << r.err;
  r = Ctl({"release", "--state", "held"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(writer->Get(f.plain)->state, MessageState::kQueued);
  EXPECT_EQ(writer->Get(f.binary)->state, MessageState::kQueued);

  // Unknown ids fail alone, as without the socket.
  const MessageId unknown(f.big.time() + 1, f.big.tag());
  r = Ctl({"delete", "bogus", f.binary.ToString(), unknown.ToString()});
  EXPECT_EQ(r.code, ctl::kExitFailed);
  std::vector<std::string> err = Lines(r.err);
  ASSERT_EQ(err.size(), 3u) << r.err;
  EXPECT_NE(err[0].find("'bogus' is not a message id"), std::string::npos) << err[0];
  EXPECT_NE(err[1].find(unknown.ToString()), std::string::npos) << err[1];
  EXPECT_NE(err[2].find("2 of 3 failed"), std::string::npos) << err[2];
  EXPECT_EQ(writer->Get(f.binary).status().code(), Code::kNotFound);
  r = Ctl({"delete", "--all"});
  ASSERT_EQ(r.code, 0) << r.err;
  r = Ctl({"list", "--ids"});
  EXPECT_EQ(r.out, "");
  // Usage: ids and a filter together, or neither.
  EXPECT_EQ(Ctl({"hold", "--queue", "q", f.plain.ToString()}).code, ctl::kExitUsage);
  EXPECT_EQ(Ctl({"hold"}).code, ctl::kExitUsage);
  EXPECT_EQ(Ctl({"hold", "--all", "--queue", "q"}).code, ctl::kExitUsage);
}

TEST_F(SpoolCtlTest, StatsJsonPrometheusAndText) {
  const Filled f = Fill();
  uint64_t total_bytes = 0;
  for (const auto& [id, body] : f.bodies) total_bytes += body.size();

  CtlResult r = Ctl({"stats", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_EQ(Lines(r.out).size(), 1u);
  Json j = ParseJson(r.out);
  EXPECT_EQ(j["messages"].Uint(), 4u);
  EXPECT_EQ(j["body_bytes"].Uint(), total_bytes);
  EXPECT_EQ(j["read_only"].boolean, true);
  EXPECT_FALSE(j["oldest_arrival_ms"].is_null());
  EXPECT_GE(j["segments_live"].Uint(), 1u);
  EXPECT_GT(j["disk_free_bytes"].Uint(), 0u);
  std::map<std::string, uint64_t> counts;
  for (const Json& q : j["queues"].array) {
    counts[q["queue"].str + "/" + q["state"].str] = q["messages"].Uint();
  }
  EXPECT_EQ(counts["default/queued"], 2u);
  EXPECT_EQ(counts["default/held"], 0u);
  EXPECT_EQ(counts["bulk/queued"], 1u);
  EXPECT_EQ(counts["bulk/held"], 1u);
  EXPECT_EQ(counts.size(), 6u);

  r = Ctl({"stats", "--prometheus"});
  ASSERT_EQ(r.code, 0) << r.err;
  PromText p;
  std::string error;
  ASSERT_TRUE(testing::ParsePrometheus(r.out, &p, &error)) << error << "\n" << r.out;
  for (const char* family : {"spool_messages", "spool_message_bytes", "spool_stored_messages",
                             "spool_oldest_message_age_seconds", "spool_segments",
                             "spool_segment_bytes", "spool_live_bytes", "spool_disk_free_bytes"}) {
    EXPECT_TRUE(p.HasFamily(family)) << family;
  }
  EXPECT_EQ(p.Value("spool_messages", {{"queue", "default"}, {"state", "queued"}}), "2");
  EXPECT_EQ(p.Value("spool_messages", {{"queue", "bulk"}, {"state", "held"}}), "1");
  EXPECT_EQ(p.Value("spool_message_bytes", {{"queue", "bulk"}, {"state", "held"}}),
            std::to_string(f.bodies.at(f.binary.ToString()).size()));
  EXPECT_EQ(p.Value("spool_stored_messages"), "4");
  EXPECT_EQ(p.Value("spool_stored_body_bytes"), std::to_string(total_bytes));
  // A read-only open writes nothing: the write-path counters are the MTA's to export.
  EXPECT_FALSE(p.HasFamily("spool_enqueued_total"));

  r = Ctl({"stats"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("messages:   4 (" + std::to_string(total_bytes)), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("bulk"), std::string::npos) << r.out;
}

TEST_F(SpoolCtlTest, EmptySpoolStats) {
  { ASSERT_NE(Open(), nullptr); }
  CtlResult r = Ctl({"stats", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  Json j = ParseJson(r.out);
  EXPECT_EQ(j["messages"].Uint(), 0u);
  EXPECT_TRUE(j["oldest_arrival_ms"].is_null());
  EXPECT_TRUE(j["queues"].array.empty());
  r = Ctl({"list"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(Lines(r.out).size(), 1u);  // the header
}

TEST(ParseDurationTest, UnitsAndSums) {
  int64_t ms = -1;
  EXPECT_TRUE(ctl::ParseDuration("90s", &ms));
  EXPECT_EQ(ms, 90'000);
  EXPECT_TRUE(ctl::ParseDuration("30m", &ms));
  EXPECT_EQ(ms, 30 * 60'000);
  EXPECT_TRUE(ctl::ParseDuration("2h", &ms));
  EXPECT_EQ(ms, 2 * 3'600'000);
  EXPECT_TRUE(ctl::ParseDuration("3d", &ms));
  EXPECT_EQ(ms, 3 * 86'400'000);
  EXPECT_TRUE(ctl::ParseDuration("1w", &ms));
  EXPECT_EQ(ms, 7 * 86'400'000);
  EXPECT_TRUE(ctl::ParseDuration("1h30m", &ms));
  EXPECT_EQ(ms, 90 * 60'000);
  EXPECT_TRUE(ctl::ParseDuration("0s", &ms));
  EXPECT_EQ(ms, 0);
  for (const char* bad : {"", "10", "m", "1x", "-1h", "1.5h", "1h ", "99999999999999999999d"}) {
    EXPECT_FALSE(ctl::ParseDuration(bad, &ms)) << bad;
  }
}

}  // namespace
}  // namespace spool
