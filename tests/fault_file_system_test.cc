// Tests of the fault-injecting FileSystem over the posix backend: pass-through, counting,
// injection of each operation kind with real errno classification, and simulated power loss
// (drop and tear of unsynced writes, undo of undurable creations, renames and unlinks).
//
// The content of files is checked with std::ifstream, outside the FileSystem under test.

#include "io/fault_file_system.h"

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "io/errno_status.h"
#include "io/file_system.h"
#include "spool/status.h"
#include "test_util.h"

namespace spool::io {

// Test output names the kind ("write") rather than its bytes.
static void PrintTo(OpKind kind, std::ostream* os) { *os << OpKindName(kind); }

namespace {

using ::spool::testing::RandomBytes;
using ::spool::testing::TempDir;
using ::spool::testing::TestSeed;

constexpr size_t kSector = FaultFileSystem::kSectorSize;

// What the disk holds, read without the FileSystem under test.
std::string ReadFileOutside(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void WriteFileOutside(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
}

bool ExistsOutside(const std::string& path) { return std::filesystem::exists(path); }

OpenOptions CreateOptions() {
  OpenOptions options;
  options.create = true;
  return options;
}

Status WriteAt(FileSystem& fs, File& file, uint64_t offset, const std::string& data,
               Sync sync = Sync::kNone) {
  const WriteOp op{offset, data.data(), data.size()};
  return fs.WriteBatch(file, std::span<const WriteOp>(&op, 1), sync);
}

class FaultFileSystemTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(base_, NewFileSystem(Backend::kPosix));
    fs_ = std::make_unique<FaultFileSystem>(base_.get());
  }

  std::string Path(const std::string& name) const { return dir_.Sub(name); }

  // Creates `name` with `content`, syncs it and its directory: all of it is durable.
  std::unique_ptr<File> MakeDurable(const std::string& name, const std::string& content) {
    auto file = fs_->Open(Path(name), CreateOptions());
    EXPECT_TRUE(file.ok()) << file.status().ToString();
    if (!file.ok()) return nullptr;
    if (!content.empty()) EXPECT_OK(WriteAt(*fs_, **file, 0, content, Sync::kData));
    EXPECT_OK(fs_->SyncDir(dir_.path()));
    return std::move(file).value();
  }

  TempDir dir_;
  std::unique_ptr<FileSystem> base_;
  std::unique_ptr<FaultFileSystem> fs_;
};

// --- Pass-through and counting ---

TEST_F(FaultFileSystemTest, PassesThroughToBase) {
  EXPECT_EQ(fs_->Name(), "fault(posix)");
  const std::string data = RandomBytes(TestSeed(1), 10000);

  ASSERT_OK_AND_ASSIGN(std::unique_ptr<File> file, fs_->Open(Path("a"), CreateOptions()));
  EXPECT_EQ(file->path(), Path("a"));
  ASSERT_OK(WriteAt(*fs_, *file, 0, data, Sync::kData));
  ASSERT_OK(fs_->SyncData(*file));
  ASSERT_OK_AND_ASSIGN(uint64_t size, fs_->Size(*file));
  EXPECT_EQ(size, data.size());

  std::string back(data.size() + 100, '\0');
  size_t bytes_read = 0;
  ASSERT_OK(fs_->Read(*file, 0, std::as_writable_bytes(std::span(back)), &bytes_read));
  EXPECT_EQ(bytes_read, data.size());
  back.resize(bytes_read);
  EXPECT_EQ(back, data);
  EXPECT_EQ(ReadFileOutside(Path("a")), data);

  ASSERT_OK(fs_->ZeroFill(*file, 2 * kSector));
  ASSERT_OK(fs_->Truncate(*file, 100));
  EXPECT_EQ(ReadFileOutside(Path("a")), std::string(100, '\0'));

  ASSERT_OK(fs_->CreateDir(Path("d")));
  ASSERT_OK(fs_->Rename(Path("a"), Path("d/b")));
  ASSERT_OK(fs_->SyncDir(dir_.path()));
  ASSERT_OK(fs_->SyncDir(Path("d")));
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> names, fs_->ListDir(Path("d")));
  EXPECT_EQ(names, std::vector<std::string>{"b"});
  ASSERT_OK_AND_ASSIGN(bool exists, fs_->Exists(Path("d/b")));
  EXPECT_TRUE(exists);
  ASSERT_OK(fs_->Unlink(Path("d/b")));
  ASSERT_OK_AND_ASSIGN(exists, fs_->Exists(Path("d/b")));
  EXPECT_FALSE(exists);
  ASSERT_OK_AND_ASSIGN(SpaceInfo space, fs_->GetSpace(dir_.path()));
  EXPECT_GT(space.bytes_total, 0u);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<FileLock> lock, fs_->LockFile(Path("LOCK"), "test"));
  EXPECT_EQ(lock->path(), Path("LOCK"));

  EXPECT_EQ(fs_->Count(OpKind::kOpen), 1u);
  EXPECT_EQ(fs_->Count(OpKind::kWrite), 1u);
  EXPECT_EQ(fs_->Count(OpKind::kSync), 2u);  // the batch's and SyncData's
  EXPECT_EQ(fs_->Count(OpKind::kRead), 1u);
  EXPECT_EQ(fs_->Count(OpKind::kZeroFill), 1u);
  EXPECT_EQ(fs_->Count(OpKind::kTruncate), 1u);
  EXPECT_EQ(fs_->Count(OpKind::kCreateDir), 1u);
  EXPECT_EQ(fs_->Count(OpKind::kRename), 1u);
  EXPECT_EQ(fs_->Count(OpKind::kSyncDir), 2u);
  EXPECT_EQ(fs_->Count(OpKind::kListDir), 1u);
  EXPECT_EQ(fs_->Count(OpKind::kUnlink), 1u);
  EXPECT_EQ(fs_->Count(OpKind::kSpace), 1u);
  EXPECT_EQ(fs_->Count(OpKind::kLock), 1u);
}

TEST_F(FaultFileSystemTest, CountsEachWriteOfABatchAndItsSync) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<File> file, fs_->Open(Path("a"), CreateOptions()));
  const std::string data = RandomBytes(TestSeed(2), 3 * kSector);
  const WriteOp ops[] = {{0, data.data(), kSector},
                         {kSector, data.data() + kSector, kSector},
                         {2 * kSector, data.data() + 2 * kSector, kSector}};
  ASSERT_OK(fs_->WriteBatch(*file, ops, Sync::kData));
  EXPECT_EQ(fs_->Count(OpKind::kWrite), 3u);
  EXPECT_EQ(fs_->Count(OpKind::kSync), 1u);
  ASSERT_OK(fs_->WriteBatch(*file, ops, Sync::kNone));
  EXPECT_EQ(fs_->Count(OpKind::kWrite), 6u);
  EXPECT_EQ(fs_->Count(OpKind::kSync), 1u);
  EXPECT_EQ(ReadFileOutside(Path("a")), data);
}

// --- Injection: every kind, errno and n ---

struct ErrnoCase {
  int err;
  Code code;
};
constexpr ErrnoCase kErrnoCases[] = {{EIO, Code::kIoError},
                                     {ENOSPC, Code::kStorageFull},
                                     {EACCES, Code::kPermission},
                                     {EROFS, Code::kPermission}};
constexpr int kAttempts = 4;

// What one FailNth case works on.
struct DriverContext {
  FaultFileSystem& fs;
  const TempDir& dir;
  std::unique_ptr<File> file;  // opened by prepare() for the kinds that need one
};

// Performs the i-th (0-based) attempt of one operation kind, after prepare(); for the
// attempt that failed, had_no_effect() tells whether it really left nothing behind.
struct KindDriver {
  std::function<void(DriverContext& ctx)> prepare;
  std::function<Status(DriverContext& ctx, int i)> run;
  std::function<bool(DriverContext& ctx, int i)> had_no_effect;
};

std::string Numbered(const char* prefix, int i) { return prefix + std::to_string(i); }

void PrepareFile(DriverContext& ctx) {
  auto file = ctx.fs.Open(ctx.dir.Sub("f"), CreateOptions());
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  ctx.file = std::move(file).value();
  ASSERT_OK(WriteAt(ctx.fs, *ctx.file, 0, std::string(4 * kSector, 'x'), Sync::kData));
}

void PrepareNothing(DriverContext&) {}

// For `prefix`0..3 files made outside the file system.
std::function<void(DriverContext&)> PrepareNumbered(const char* prefix) {
  return [prefix](DriverContext& ctx) {
    for (int i = 0; i < kAttempts; ++i) WriteFileOutside(ctx.dir.Sub(Numbered(prefix, i)), "x");
  };
}

bool NoVisibleEffect(DriverContext&, int) { return true; }

std::function<bool(DriverContext&, int)> NumberedAbsent(const char* prefix) {
  return [prefix](DriverContext& ctx, int i) {
    return !ExistsOutside(ctx.dir.Sub(Numbered(prefix, i)));
  };
}

KindDriver DriverFor(OpKind kind) {
  switch (kind) {
    case OpKind::kOpen:
      return {PrepareNothing,
              [](DriverContext& ctx, int i) {
                return ctx.fs.Open(ctx.dir.Sub(Numbered("o", i)), CreateOptions()).status();
              },
              NumberedAbsent("o")};
    case OpKind::kRead:
      return {PrepareFile,
              [](DriverContext& ctx, int i) {
                std::string out(kSector, '\0');
                size_t bytes_read = 0;
                return ctx.fs.Read(*ctx.file, i * kSector, std::as_writable_bytes(std::span(out)),
                                   &bytes_read);
              },
              NoVisibleEffect};
    case OpKind::kWrite:
      return {PrepareFile,
              [](DriverContext& ctx, int i) {
                return WriteAt(ctx.fs, *ctx.file, i * kSector, std::string(kSector, 'w'));
              },
              [](DriverContext& ctx, int i) {
                return ReadFileOutside(ctx.dir.Sub("f")).substr(i * kSector, kSector) ==
                       std::string(kSector, 'x');
              }};
    case OpKind::kSync:
      return {PrepareFile, [](DriverContext& ctx, int) { return ctx.fs.SyncData(*ctx.file); },
              NoVisibleEffect};
    case OpKind::kZeroFill:
      return {
          PrepareFile,
          [](DriverContext& ctx, int i) { return ctx.fs.ZeroFill(*ctx.file, (8 + i) * kSector); },
          [](DriverContext& ctx, int i) {
            return ReadFileOutside(ctx.dir.Sub("f")).size() < (8 + i) * kSector;
          }};
    case OpKind::kTruncate:
      return {PrepareFile,
              [](DriverContext& ctx, int i) { return ctx.fs.Truncate(*ctx.file, 3 * kSector - i); },
              [](DriverContext& ctx, int i) {
                return ReadFileOutside(ctx.dir.Sub("f")).size() != 3 * kSector - i;
              }};
    case OpKind::kRename:
      return {PrepareNumbered("r"),
              [](DriverContext& ctx, int i) {
                return ctx.fs.Rename(ctx.dir.Sub(Numbered("r", i)), ctx.dir.Sub(Numbered("s", i)));
              },
              [](DriverContext& ctx, int i) {
                return ExistsOutside(ctx.dir.Sub(Numbered("r", i))) &&
                       !ExistsOutside(ctx.dir.Sub(Numbered("s", i)));
              }};
    case OpKind::kSyncDir:
      return {PrepareNothing,
              [](DriverContext& ctx, int) { return ctx.fs.SyncDir(ctx.dir.path()); },
              NoVisibleEffect};
    case OpKind::kUnlink:
      return {
          PrepareNumbered("u"),
          [](DriverContext& ctx, int i) { return ctx.fs.Unlink(ctx.dir.Sub(Numbered("u", i))); },
          [](DriverContext& ctx, int i) { return ExistsOutside(ctx.dir.Sub(Numbered("u", i))); }};
    case OpKind::kCreateDir:
      return {
          PrepareNothing,
          [](DriverContext& ctx, int i) { return ctx.fs.CreateDir(ctx.dir.Sub(Numbered("d", i))); },
          NumberedAbsent("d")};
    case OpKind::kListDir:
      return {PrepareNothing,
              [](DriverContext& ctx, int) { return ctx.fs.ListDir(ctx.dir.path()).status(); },
              NoVisibleEffect};
    case OpKind::kSpace:
      return {PrepareNothing,
              [](DriverContext& ctx, int) { return ctx.fs.GetSpace(ctx.dir.path()).status(); },
              NoVisibleEffect};
    case OpKind::kLock:
      return {PrepareNothing,
              [](DriverContext& ctx, int i) {
                return ctx.fs.LockFile(ctx.dir.Sub(Numbered("l", i)), "test").status();
              },
              NumberedAbsent("l")};
    case OpKind::kCount:
      break;
  }
  return {};
}

class FailNthTest : public ::testing::TestWithParam<OpKind> {};

TEST_P(FailNthTest, FailsExactlyTheNthWithTheErrnosClass) {
  const OpKind kind = GetParam();
  const KindDriver driver = DriverFor(kind);
  for (const ErrnoCase& errno_case : kErrnoCases) {
    for (int n = 1; n <= 3; ++n) {
      SCOPED_TRACE(std::string(OpKindName(kind)) + " " + std::string(ErrnoName(errno_case.err)) +
                   " n=" + std::to_string(n));
      TempDir dir;
      ASSERT_OK_AND_ASSIGN(std::unique_ptr<FileSystem> base, NewFileSystem(Backend::kPosix));
      FaultFileSystem fs(base.get());
      DriverContext ctx{fs, dir, nullptr};
      driver.prepare(ctx);
      if (HasFatalFailure()) return;
      const uint64_t count_before = fs.Count(kind);

      fs.FailNth(kind, n, errno_case.err);
      for (int i = 0; i < kAttempts; ++i) {
        const Status status = driver.run(ctx, i);
        if (i + 1 == n) {
          EXPECT_EQ(status.code(), errno_case.code) << status.ToString();
          EXPECT_EQ(status.sys_errno(), errno_case.err);
          EXPECT_NE(status.message().find("injected"), std::string_view::npos);
          EXPECT_TRUE(driver.had_no_effect(ctx, i)) << "the failed operation was performed";
        } else {
          EXPECT_OK(status);
        }
      }
      EXPECT_EQ(fs.Count(kind), count_before + kAttempts);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllKinds, FailNthTest,
                         ::testing::Values(OpKind::kOpen, OpKind::kRead, OpKind::kWrite,
                                           OpKind::kSync, OpKind::kZeroFill, OpKind::kTruncate,
                                           OpKind::kRename, OpKind::kSyncDir, OpKind::kUnlink,
                                           OpKind::kCreateDir, OpKind::kListDir, OpKind::kSpace,
                                           OpKind::kLock),
                         [](const ::testing::TestParamInfo<OpKind>& info) {
                           std::string name(OpKindName(info.param));
                           std::erase_if(name, [](char c) {
                             return !std::isalnum(static_cast<unsigned char>(c));
                           });
                           return name;
                         });

TEST_F(FaultFileSystemTest, StickyFailsEveryLaterOneUntilCleared) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<File> file, fs_->Open(Path("a"), CreateOptions()));
  fs_->FailNth(OpKind::kSync, 2, EIO, /*sticky=*/true);
  EXPECT_OK(fs_->SyncData(*file));
  for (int i = 0; i < 5; ++i) EXPECT_EQ(fs_->SyncData(*file).code(), Code::kIoError);
  fs_->ClearFaults();
  EXPECT_OK(fs_->SyncData(*file));
}

TEST_F(FaultFileSystemTest, RulesOfDifferentKindsCoexist) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<File> file, fs_->Open(Path("a"), CreateOptions()));
  fs_->FailNth(OpKind::kWrite, 2, ENOSPC);
  fs_->FailNth(OpKind::kSync, 1, EIO);
  fs_->FailNth(OpKind::kRename, 1, EROFS);
  EXPECT_EQ(WriteAt(*fs_, *file, 0, "a", Sync::kData).code(), Code::kIoError);  // its sync
  EXPECT_EQ(WriteAt(*fs_, *file, 0, "b").code(), Code::kStorageFull);
  EXPECT_OK(WriteAt(*fs_, *file, 0, "c", Sync::kData));
  EXPECT_EQ(fs_->Rename(Path("a"), Path("b")).code(), Code::kPermission);
  EXPECT_OK(fs_->Rename(Path("a"), Path("b")));
}

TEST_F(FaultFileSystemTest, PathFilterLimitsInjectionAndItsCount) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<File> index, fs_->Open(Path("index"), CreateOptions()));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<File> segment,
                       fs_->Open(Path("seg-000001"), CreateOptions()));
  fs_->SetFailPathFilter("seg-");
  fs_->FailNth(OpKind::kWrite, 2, EIO);
  EXPECT_OK(WriteAt(*fs_, *index, 0, "i"));
  EXPECT_OK(WriteAt(*fs_, *segment, 0, "s"));
  EXPECT_OK(WriteAt(*fs_, *index, 0, "i"));  // does not advance the rule
  EXPECT_EQ(WriteAt(*fs_, *segment, 0, "s").code(), Code::kIoError);
  EXPECT_OK(WriteAt(*fs_, *segment, 0, "s"));

  // A rename matches by either path; the filter follows a file to its new name.
  fs_->FailNth(OpKind::kRename, 1, EACCES);
  EXPECT_OK(fs_->Rename(Path("index"), Path("index2")));
  EXPECT_EQ(fs_->Rename(Path("index2"), Path("seg-000002")).code(), Code::kPermission);
  ASSERT_OK(fs_->Rename(Path("seg-000001"), Path("old")));
  fs_->FailNth(OpKind::kWrite, 1, EIO);
  EXPECT_OK(WriteAt(*fs_, *segment, 0, "s"));
  fs_->SetFailPathFilter("");
  EXPECT_EQ(WriteAt(*fs_, *segment, 0, "s").code(), Code::kIoError);
}

TEST_F(FaultFileSystemTest, FailedWriteOfABatchDoesTheEarlierOpsAndNoSync) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<File> file, fs_->Open(Path("a"), CreateOptions()));
  ASSERT_OK(WriteAt(*fs_, *file, 0, std::string(3 * kSector, '.'), Sync::kData));
  ASSERT_OK(fs_->SyncDir(dir_.path()));
  const std::string data = RandomBytes(TestSeed(3), 3 * kSector);
  const WriteOp ops[] = {{0, data.data(), kSector},
                         {kSector, data.data() + kSector, kSector},
                         {2 * kSector, data.data() + 2 * kSector, kSector}};
  const uint64_t syncs = fs_->Count(OpKind::kSync);
  fs_->FailNth(OpKind::kWrite, 2, EIO);
  EXPECT_EQ(fs_->WriteBatch(*file, ops, Sync::kData).code(), Code::kIoError);
  EXPECT_EQ(fs_->Count(OpKind::kSync), syncs);
  EXPECT_EQ(ReadFileOutside(Path("a")), data.substr(0, kSector) + std::string(2 * kSector, '.'));
  EXPECT_EQ(fs_->UnsyncedBytes(), kSector);

  fs_->set_partial_failed_writes(true);
  fs_->FailNth(OpKind::kWrite, 2, EIO);
  EXPECT_EQ(fs_->WriteBatch(*file, ops, Sync::kData).code(), Code::kIoError);
  EXPECT_EQ(ReadFileOutside(Path("a")),
            data.substr(0, kSector + kSector / 2) + std::string(kSector + kSector / 2, '.'));

  // Nothing of the failed batches was synced.
  ASSERT_OK(fs_->SimulateCrash(CrashMode::kDropUnsynced, 1));
  EXPECT_EQ(ReadFileOutside(Path("a")), std::string(3 * kSector, '.'));
}

// --- Simulated power loss ---

TEST_F(FaultFileSystemTest, FailedSyncLeavesWritesUnsyncedAndCrashDropsThem) {
  const std::string a = RandomBytes(TestSeed(4), 4 * kSector);
  const std::string b = RandomBytes(TestSeed(5), 6 * kSector);
  std::unique_ptr<File> file = MakeDurable("seg", a);
  ASSERT_NE(file, nullptr);

  fs_->FailNth(OpKind::kSync, 1, EIO);
  const Status status = WriteAt(*fs_, *file, kSector, b, Sync::kData);
  EXPECT_EQ(status.code(), Code::kIoError);
  // The bytes reached the page cache, as after a real fsync failure...
  EXPECT_EQ(ReadFileOutside(Path("seg")), a.substr(0, kSector) + b);
  EXPECT_EQ(fs_->UnsyncedBytes(), b.size());
  // ...as did those of a later write whose SyncData failed.
  fs_->FailNth(OpKind::kSync, 1, ENOSPC);
  ASSERT_OK(WriteAt(*fs_, *file, 0, "z"));
  EXPECT_EQ(fs_->SyncData(*file).code(), Code::kStorageFull);

  // ...and none of them is on the "disk".
  ASSERT_OK(fs_->SimulateCrash(CrashMode::kDropUnsynced, 1));
  EXPECT_EQ(ReadFileOutside(Path("seg")), a);
}

TEST_F(FaultFileSystemTest, DropRestoresTheLastSyncedContentAndSize) {
  const std::string a = RandomBytes(TestSeed(6), 5000);
  const std::string b = RandomBytes(TestSeed(7), 7000);
  std::unique_ptr<File> file = MakeDurable("f", a);
  ASSERT_NE(file, nullptr);
  const std::string second = "second write, over old bytes";
  const std::string third = "third write, over the first's new bytes";
  ASSERT_OK(WriteAt(*fs_, *file, 3000, b));  // overwrites the tail and extends the file
  ASSERT_OK(WriteAt(*fs_, *file, 100, second));
  ASSERT_OK(WriteAt(*fs_, *file, 9000, third));
  EXPECT_EQ(fs_->UnsyncedBytes(), b.size() + second.size() + third.size());

  ASSERT_OK(fs_->SimulateCrash(CrashMode::kDropUnsynced, 1));
  EXPECT_EQ(ReadFileOutside(Path("f")), a);
}

TEST_F(FaultFileSystemTest, SyncedWritesSurviveAndLaterOnesDoNot) {
  std::unique_ptr<File> file = MakeDurable("f", "");
  ASSERT_NE(file, nullptr);
  ASSERT_OK(WriteAt(*fs_, *file, 0, "AAAA"));
  ASSERT_OK(fs_->SyncData(*file));
  ASSERT_OK(WriteAt(*fs_, *file, 4, "BBBB", Sync::kData));
  EXPECT_EQ(fs_->UnsyncedBytes(), 0u);
  ASSERT_OK(WriteAt(*fs_, *file, 2, "CCCCCCCC"));
  ASSERT_OK(fs_->SimulateCrash(CrashMode::kDropUnsynced, 1));
  EXPECT_EQ(ReadFileOutside(Path("f")), "AAAABBBB");
}

// ZeroFill and Truncate sync by contract: they, and every write before them, are durable.
TEST_F(FaultFileSystemTest, ZeroFillIsDurable) {
  std::unique_ptr<File> file = MakeDurable("f", "xxxx");
  ASSERT_NE(file, nullptr);
  ASSERT_OK(WriteAt(*fs_, *file, 2 * kSector, "before"));
  ASSERT_OK(fs_->ZeroFill(*file, 2 * kSector));
  EXPECT_EQ(fs_->UnsyncedBytes(), 0u);
  ASSERT_OK(fs_->SimulateCrash(CrashMode::kDropUnsynced, 1));
  EXPECT_EQ(ReadFileOutside(Path("f")), std::string(2 * kSector, '\0') + "before");
}

TEST_F(FaultFileSystemTest, TruncateIsDurable) {
  std::unique_ptr<File> file = MakeDurable("f", "xxxx");
  ASSERT_NE(file, nullptr);
  ASSERT_OK(WriteAt(*fs_, *file, 0, "zzzz"));
  ASSERT_OK(fs_->Truncate(*file, 3));
  EXPECT_EQ(fs_->UnsyncedBytes(), 0u);
  ASSERT_OK(WriteAt(*fs_, *file, 0, "unsynced"));
  ASSERT_OK(fs_->SimulateCrash(CrashMode::kDropUnsynced, 1));
  EXPECT_EQ(ReadFileOutside(Path("f")), "zzz");
}

TEST_F(FaultFileSystemTest, DsyncWritesAreDurableOnCompletion) {
  OpenOptions options = CreateOptions();
  options.dsync = true;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<File> file, fs_->Open(Path("f"), options));
  ASSERT_OK(fs_->SyncDir(dir_.path()));
  ASSERT_OK(WriteAt(*fs_, *file, 0, "durable"));
  EXPECT_EQ(fs_->UnsyncedBytes(), 0u);
  ASSERT_OK(fs_->SimulateCrash(CrashMode::kDropUnsynced, 1));
  EXPECT_EQ(ReadFileOutside(Path("f")), "durable");
}

TEST_F(FaultFileSystemTest, DirectWritesAreUndoneToo) {
  std::unique_ptr<File> plain = MakeDurable("f", std::string(2 * kDirectIoAlignment, 'o'));
  ASSERT_NE(plain, nullptr);
  OpenOptions options;
  options.direct = true;
  auto direct = fs_->Open(Path("f"), options);
  if (!direct.ok()) GTEST_SKIP() << "O_DIRECT unavailable here: " << direct.status().ToString();
  std::unique_ptr<std::byte, decltype(&std::free)> buffer(
      static_cast<std::byte*>(std::aligned_alloc(kDirectIoAlignment, 2 * kDirectIoAlignment)),
      &std::free);
  std::memset(buffer.get(), 'n', 2 * kDirectIoAlignment);
  const WriteOp op{kDirectIoAlignment, buffer.get(), 2 * kDirectIoAlignment};
  ASSERT_OK(fs_->WriteBatch(**direct, std::span<const WriteOp>(&op, 1), Sync::kNone));
  EXPECT_EQ(fs_->UnsyncedBytes(), 2 * kDirectIoAlignment);
  ASSERT_OK(fs_->SimulateCrash(CrashMode::kDropUnsynced, 1));
  EXPECT_EQ(ReadFileOutside(Path("f")), std::string(2 * kDirectIoAlignment, 'o'));
}

TEST_F(FaultFileSystemTest, CreationWithoutDirSyncVanishes) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<File> kept, fs_->Open(Path("kept"), CreateOptions()));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<File> empty, fs_->Open(Path("empty"), CreateOptions()));
  ASSERT_OK(WriteAt(*fs_, *kept, 0, "synced", Sync::kData));
  ASSERT_OK(fs_->SyncDir(dir_.path()));
  ASSERT_OK(WriteAt(*fs_, *kept, 6, " and more"));
  ASSERT_OK(WriteAt(*fs_, *empty, 0, "never synced"));

  ASSERT_OK_AND_ASSIGN(std::unique_ptr<File> lost, fs_->Open(Path("lost"), CreateOptions()));
  ASSERT_OK(WriteAt(*fs_, *lost, 0, "data synced, name not", Sync::kData));

  // A file that existed before is not a creation, whatever its open options.
  WriteFileOutside(Path("old"), "old");
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<File> old, fs_->Open(Path("old"), CreateOptions()));

  ASSERT_OK(fs_->SimulateCrash(CrashMode::kDropUnsynced, 1));
  EXPECT_FALSE(ExistsOutside(Path("lost")));
  EXPECT_EQ(ReadFileOutside(Path("kept")), "synced");
  EXPECT_TRUE(ExistsOutside(Path("empty")));
  EXPECT_EQ(ReadFileOutside(Path("empty")), "");
  EXPECT_EQ(ReadFileOutside(Path("old")), "old");
}

TEST_F(FaultFileSystemTest, RenameWithoutDirSyncIsReverted) {
  ASSERT_OK(fs_->CreateDir(Path("sub")));
  std::vector<std::unique_ptr<File>> files;
  for (const char* name : {"a", "b", "c", "d"}) {
    files.push_back(MakeDurable(name, std::string("content of ") + name));
    ASSERT_NE(files.back(), nullptr);
  }
  std::unique_ptr<File> tmp = MakeDurable("tmp", "new content of b");
  ASSERT_NE(tmp, nullptr);

  // Kept: a rename whose directory was synced.
  ASSERT_OK(fs_->Rename(Path("d"), Path("d2")));
  ASSERT_OK(fs_->SyncDir(dir_.path()));
  // Undone: a plain rename (twice), a rename over an existing file (the atomic-replace
  // pattern without its final SyncDir), and a cross-directory rename with only the target
  // directory synced.
  ASSERT_OK(fs_->Rename(Path("a"), Path("a2")));
  ASSERT_OK(fs_->Rename(Path("tmp"), Path("b")));
  ASSERT_OK(fs_->Rename(Path("c"), Path("sub/c")));
  ASSERT_OK(fs_->SyncDir(Path("sub")));
  ASSERT_OK(fs_->Rename(Path("a2"), Path("a3")));
  // A write through a handle opened under the first name, made after the renames: undone
  // on the file, whatever its name.
  ASSERT_OK(WriteAt(*fs_, *files[0], 0, "CONTENT"));

  ASSERT_OK(fs_->SimulateCrash(CrashMode::kDropUnsynced, 1));
  EXPECT_EQ(ReadFileOutside(Path("a")), "content of a");
  EXPECT_FALSE(ExistsOutside(Path("a2")));
  EXPECT_FALSE(ExistsOutside(Path("a3")));
  EXPECT_EQ(ReadFileOutside(Path("b")), "content of b");
  EXPECT_EQ(ReadFileOutside(Path("tmp")), "new content of b");
  EXPECT_EQ(ReadFileOutside(Path("c")), "content of c");
  EXPECT_FALSE(ExistsOutside(Path("sub/c")));
  EXPECT_EQ(ReadFileOutside(Path("d2")), "content of d");
  EXPECT_FALSE(ExistsOutside(Path("d")));
}

TEST_F(FaultFileSystemTest, UnlinkWithoutDirSyncIsReverted) {
  std::unique_ptr<File> a = MakeDurable("a", "content of a");
  std::unique_ptr<File> b = MakeDurable("b", "content of b");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_OK(WriteAt(*fs_, *a, 0, "unsynced"));
  ASSERT_OK(fs_->Unlink(Path("a")));
  ASSERT_OK(fs_->Unlink(Path("b")));
  ASSERT_OK(fs_->SyncDir(dir_.path()));
  std::unique_ptr<File> c = MakeDurable("c", "content of c");
  ASSERT_NE(c, nullptr);
  ASSERT_OK(fs_->Unlink(Path("c")));

  ASSERT_OK(fs_->SimulateCrash(CrashMode::kDropUnsynced, 1));
  EXPECT_FALSE(ExistsOutside(Path("a")));
  EXPECT_FALSE(ExistsOutside(Path("b")));
  EXPECT_EQ(ReadFileOutside(Path("c")), "content of c");
}

TEST_F(FaultFileSystemTest, UnlinkedFileComesBackWithoutItsUnsyncedWrites) {
  std::unique_ptr<File> a = MakeDurable("a", "content of a");
  ASSERT_NE(a, nullptr);
  ASSERT_OK(WriteAt(*fs_, *a, 0, "CONTENT OF A, longer"));
  ASSERT_OK(fs_->Unlink(Path("a")));
  ASSERT_OK(fs_->SimulateCrash(CrashMode::kDropUnsynced, 1));
  EXPECT_EQ(ReadFileOutside(Path("a")), "content of a");
}

TEST_F(FaultFileSystemTest, TearKeepsSyncedBytesAndMixesSectors) {
  constexpr size_t kSectors = 16;
  constexpr size_t kFirstTorn = 2;  // sectors [2, 14) are rewritten, the rest stays synced
  constexpr size_t kEndTorn = 14;
  constexpr int kSeeds = 40;
  const uint64_t seed = TestSeed(8);
  const std::string old_data = RandomBytes(seed, kSectors * kSector);
  const std::string new_data = RandomBytes(seed + 1, (kEndTorn - kFirstTorn) * kSector);
  std::string all_new = old_data;
  all_new.replace(kFirstTorn * kSector, new_data.size(), new_data);

  int mixed_seeds = 0;
  int sectors_old = 0, sectors_new = 0, sectors_other = 0;
  std::string first_result;
  for (int s = 0; s < kSeeds; ++s) {
    SCOPED_TRACE("crash seed " + std::to_string(seed + s));
    TempDir dir;
    FaultFileSystem fs(base_.get());
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<File> file, fs.Open(dir.Sub("f"), CreateOptions()));
    ASSERT_OK(WriteAt(fs, *file, 0, old_data, Sync::kData));
    ASSERT_OK(fs.SyncDir(dir.path()));
    ASSERT_OK(WriteAt(fs, *file, kFirstTorn * kSector, new_data));
    ASSERT_OK(fs.SimulateCrash(CrashMode::kTearUnsynced, seed + s));

    const std::string torn = ReadFileOutside(dir.Sub("f"));
    ASSERT_EQ(torn.size(), old_data.size());
    EXPECT_EQ(torn.substr(0, kFirstTorn * kSector), old_data.substr(0, kFirstTorn * kSector));
    EXPECT_EQ(torn.substr(kEndTorn * kSector), old_data.substr(kEndTorn * kSector));
    bool saw_old = false, saw_not_old = false;
    for (size_t i = kFirstTorn; i < kEndTorn; ++i) {
      const std::string sector = torn.substr(i * kSector, kSector);
      if (sector == old_data.substr(i * kSector, kSector)) {
        ++sectors_old;
        saw_old = true;
      } else if (sector == all_new.substr(i * kSector, kSector)) {
        ++sectors_new;
        saw_not_old = true;
      } else {
        ++sectors_other;
        saw_not_old = true;
      }
    }
    if (saw_old && saw_not_old) ++mixed_seeds;
    if (s == 0) first_result = torn;
  }
  EXPECT_GT(mixed_seeds, 0);  // neither all-old nor all-new
  EXPECT_GT(sectors_old, 0);
  EXPECT_GT(sectors_new, 0);
  EXPECT_GT(sectors_other, 0);

  // The same seed tears the same way.
  TempDir dir;
  FaultFileSystem fs(base_.get());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<File> file, fs.Open(dir.Sub("f"), CreateOptions()));
  ASSERT_OK(WriteAt(fs, *file, 0, old_data, Sync::kData));
  ASSERT_OK(fs.SyncDir(dir.path()));
  ASSERT_OK(WriteAt(fs, *file, kFirstTorn * kSector, new_data));
  ASSERT_OK(fs.SimulateCrash(CrashMode::kTearUnsynced, seed));
  EXPECT_EQ(ReadFileOutside(dir.Sub("f")), first_result);
}

TEST_F(FaultFileSystemTest, TearOfAnAppendNeverShrinksBelowTheSyncedSize) {
  const uint64_t seed = TestSeed(9);
  const std::string synced = RandomBytes(seed, 3 * kSector + 100);
  const std::string appended = RandomBytes(seed + 1, 6 * kSector);
  for (int s = 0; s < 20; ++s) {
    SCOPED_TRACE("crash seed " + std::to_string(seed + s));
    TempDir dir;
    FaultFileSystem fs(base_.get());
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<File> file, fs.Open(dir.Sub("f"), CreateOptions()));
    ASSERT_OK(WriteAt(fs, *file, 0, synced, Sync::kData));
    ASSERT_OK(fs.SyncDir(dir.path()));
    ASSERT_OK(WriteAt(fs, *file, synced.size(), appended));
    ASSERT_OK(fs.SimulateCrash(CrashMode::kTearUnsynced, seed + s));
    const std::string torn = ReadFileOutside(dir.Sub("f"));
    ASSERT_GE(torn.size(), synced.size());
    ASSERT_LE(torn.size(), synced.size() + appended.size());
    EXPECT_EQ(torn.substr(0, synced.size()), synced);
  }
}

TEST_F(FaultFileSystemTest, CrashedFailsEveryOperationUntilReset) {
  std::unique_ptr<File> file = MakeDurable("f", "x");
  ASSERT_NE(file, nullptr);
  ASSERT_OK(fs_->SimulateCrash(CrashMode::kDropUnsynced, 1));
  EXPECT_TRUE(fs_->crashed());

  auto expect_crashed = [](const Status& status) {
    EXPECT_EQ(status.code(), Code::kIoError) << status.ToString();
    EXPECT_NE(status.message().find("simulated crash"), std::string_view::npos)
        << status.ToString();
  };
  const uint64_t writes = fs_->Count(OpKind::kWrite);
  std::string buffer(1, '\0');
  size_t bytes_read = 0;
  expect_crashed(fs_->Open(Path("g"), CreateOptions()).status());
  expect_crashed(WriteAt(*fs_, *file, 0, "y"));
  expect_crashed(fs_->SyncData(*file));
  expect_crashed(fs_->Read(*file, 0, std::as_writable_bytes(std::span(buffer)), &bytes_read));
  expect_crashed(fs_->Size(*file).status());
  expect_crashed(fs_->ZeroFill(*file, kSector));
  expect_crashed(fs_->Truncate(*file, 0));
  expect_crashed(fs_->Rename(Path("f"), Path("g")));
  expect_crashed(fs_->SyncDir(dir_.path()));
  expect_crashed(fs_->Unlink(Path("f")));
  expect_crashed(fs_->CreateDir(Path("d")));
  expect_crashed(fs_->ListDir(dir_.path()).status());
  expect_crashed(fs_->Exists(Path("f")).status());
  expect_crashed(fs_->GetSpace(dir_.path()).status());
  expect_crashed(fs_->LockFile(Path("LOCK"), "test").status());
  EXPECT_EQ(fs_->Count(OpKind::kWrite), writes + 1);
  EXPECT_FALSE(ExistsOutside(Path("g")));
  EXPECT_EQ(ReadFileOutside(Path("f")), "x");

  fs_->FailNth(OpKind::kOpen, 1, EIO, /*sticky=*/true);
  fs_->ResetAfterCrash();
  EXPECT_FALSE(fs_->crashed());
  // The process that held `file` is gone: its handles stay dead.
  EXPECT_EQ(fs_->SyncData(*file).code(), Code::kIoError);
  // Faults were cleared; reopened files work.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<File> reopened, fs_->Open(Path("f"), OpenOptions{}));
  ASSERT_OK(WriteAt(*fs_, *reopened, 1, "y", Sync::kData));
  EXPECT_EQ(ReadFileOutside(Path("f")), "xy");
}

TEST_F(FaultFileSystemTest, ConcurrentWritersKeepWhatTheySynced) {
  constexpr int kThreads = 4;
  constexpr int kRecords = 50;
  constexpr size_t kRecordSize = 300;
  const uint64_t seed = TestSeed(10);
  std::vector<std::unique_ptr<File>> files(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_OK_AND_ASSIGN(files[t], fs_->Open(Path("w" + std::to_string(t)), CreateOptions()));
  }
  ASSERT_OK(fs_->SyncDir(dir_.path()));
  // Each writer syncs with its even records only: the last sync (record kRecords - 2) makes
  // every record up to it durable, the last one stays in the page cache.
  std::vector<std::string> written(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int r = 0; r < kRecords; ++r) {
        const std::string record = RandomBytes(seed + t * kRecords + r, kRecordSize);
        const Sync sync = r % 2 == 0 ? Sync::kData : Sync::kNone;
        EXPECT_OK(WriteAt(*fs_, *files[t], r * kRecordSize, record, sync));
        written[t] += record;
        std::string back(kRecordSize, '\0');
        size_t bytes_read = 0;
        EXPECT_OK(fs_->Read(*files[t], r * kRecordSize, std::as_writable_bytes(std::span(back)),
                            &bytes_read));
        EXPECT_EQ(back, record);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(fs_->UnsyncedBytes(), kThreads * kRecordSize);
  ASSERT_OK(fs_->SimulateCrash(CrashMode::kDropUnsynced, 1));
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(ReadFileOutside(Path("w" + std::to_string(t))),
              written[t].substr(0, (kRecords - 1) * kRecordSize));
  }
}

}  // namespace
}  // namespace spool::io
