// Tests of the FileSystem backends (io/file_system.h): every test of FileSystemTest runs on
// the posix and on the io_uring backend, the latter skipped when the kernel refuses
// io_uring. Also: ErrnoToStatus classification and the backend factory.

#include "io/file_system.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <ostream>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "io/errno_status.h"
#include "io/posix_file_system.h"
#include "io/uring_file_system.h"
#include "test_util.h"

namespace spool::io {

// Test names and failure messages show "posix" rather than the enum's bytes.
void PrintTo(Backend backend, std::ostream* os) { *os << BackendName(backend); }

namespace {

using ::spool::testing::RandomBytes;
using ::spool::testing::TempDir;
using ::testing::HasSubstr;

// Exit codes of forked children beyond the Status codes (which are < 64).
constexpr int kChildSkipped = 100;
constexpr int kChildUnexpectedOk = 101;

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};
using AlignedBuffer = std::unique_ptr<std::byte[], FreeDeleter>;

AlignedBuffer AlignedAlloc(size_t size) {
  return AlignedBuffer(static_cast<std::byte*>(std::aligned_alloc(kDirectIoAlignment, size)));
}

// Runs `child` in a forked process and returns its exit code, or -1 if fork failed.
template <typename Fn>
int RunInChild(Fn child) {
  const pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) _exit(child());
  int wstatus = 0;
  while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus);
}

class FileSystemTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    if (GetParam() == Backend::kUring) {
      const Status probe = ProbeUring();
      if (!probe.ok()) GTEST_SKIP() << "io_uring unavailable: " << probe.ToString();
    }
    ASSERT_OK_AND_ASSIGN(fs_, NewFileSystem(GetParam()));
  }

  static OpenOptions CreateOptions() {
    OpenOptions options;
    options.create = true;
    return options;
  }

  // The whole file, read through the backend under test.
  std::string ReadAll(File& file) {
    StatusOr<uint64_t> size = fs_->Size(file);
    EXPECT_TRUE(size.ok()) << size.status().ToString();
    if (!size.ok()) return "";
    std::string out(*size, '\0');
    size_t n = 0;
    const Status status =
        fs_->Read(file, 0, std::as_writable_bytes(std::span(out.data(), out.size())), &n);
    EXPECT_TRUE(status.ok()) << status.ToString();
    out.resize(n);
    return out;
  }

  TempDir dir_;
  std::unique_ptr<FileSystem> fs_;
};

TEST_P(FileSystemTest, NameMatchesBackend) { EXPECT_EQ(fs_->Name(), BackendName(GetParam())); }

TEST_P(FileSystemTest, OpenCreatesAndExclusiveRefusesExisting) {
  const std::string path = dir_.Sub("a");
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<File> file, fs_->Open(path, CreateOptions()));
  EXPECT_EQ(file->path(), path);
  ASSERT_OK_AND_ASSIGN(bool exists, fs_->Exists(path));
  EXPECT_TRUE(exists);
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));

  // Opening again without exclusive is fine; with exclusive it is EEXIST.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<File> again, fs_->Open(path, CreateOptions()));
  OpenOptions exclusive = CreateOptions();
  exclusive.exclusive = true;
  StatusOr<std::unique_ptr<File>> refused = fs_->Open(path, exclusive);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Code::kIoError);
  EXPECT_EQ(refused.status().sys_errno(), EEXIST);
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr(path));
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("EEXIST"));

  ASSERT_OK_AND_ASSIGN(std::unique_ptr<File> fresh, fs_->Open(dir_.Sub("b"), exclusive));
}

TEST_P(FileSystemTest, OpenMissingWithoutCreateFails) {
  const std::string path = dir_.Sub("missing");
  StatusOr<std::unique_ptr<File>> file = fs_->Open(path, OpenOptions{});
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), Code::kIoError);
  EXPECT_EQ(file.status().sys_errno(), ENOENT);
  EXPECT_THAT(std::string(file.status().message()), HasSubstr(path));
  EXPECT_THAT(std::string(file.status().message()), HasSubstr("ENOENT"));
}

TEST_P(FileSystemTest, WriteOneOpAndReadBack) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<File> file, fs_->Open(dir_.Sub("f"), CreateOptions()));
  const std::string data = RandomBytes(1, 10000);
  const WriteOp op{0, data.data(), data.size()};
  ASSERT_OK(fs_->WriteBatch(*file, std::span(&op, 1), Sync::kData));
  ASSERT_OK_AND_ASSIGN(uint64_t size, fs_->Size(*file));
  EXPECT_EQ(size, data.size());
  EXPECT_EQ(ReadAll(*file), data);
}

TEST_P(FileSystemTest, EmptyBatchAndSyncData) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<File> file, fs_->Open(dir_.Sub("f"), CreateOptions()));
  ASSERT_OK(fs_->WriteBatch(*file, {}, Sync::kNone));
  ASSERT_OK(fs_->WriteBatch(*file, {}, Sync::kData));
  const WriteOp empty{100, "", 0};
  ASSERT_OK(fs_->WriteBatch(*file, std::span(&empty, 1), Sync::kData));
  ASSERT_OK(fs_->SyncData(*file));
  ASSERT_OK_AND_ASSIGN(uint64_t size, fs_->Size(*file));
  EXPECT_EQ(size, 0u);
}

// 300 ops (more than a ring's 64 entries), of varied sizes with gaps between them, given in
// shuffled order; the file must read back exactly, gaps as zeros.
TEST_P(FileSystemTest, WriteManyNonContiguousOps) {
  for (Sync sync : {Sync::kNone, Sync::kData}) {
    SCOPED_TRACE(sync == Sync::kData ? "Sync::kData" : "Sync::kNone");
    ASSERT_OK_AND_ASSIGN(
        std::unique_ptr<File> file,
        fs_->Open(dir_.Sub(sync == Sync::kData ? "synced" : "unsynced"), CreateOptions()));
    constexpr int kOps = 300;
    std::mt19937_64 rng(::spool::testing::TestSeed(42));
    std::vector<std::string> payloads;
    std::vector<WriteOp> ops;
    std::string expected;
    for (int i = 0; i < kOps; ++i) {
      const size_t gap = rng() % 3 == 0 ? 0 : rng() % 700;
      const size_t size = 1 + rng() % 5000;
      payloads.push_back(RandomBytes(rng(), size));
      expected.append(gap, '\0');
      ops.push_back(WriteOp{expected.size(), nullptr, size});
      expected += payloads.back();
    }
    for (int i = 0; i < kOps; ++i) ops[i].data = payloads[i].data();
    std::shuffle(ops.begin(), ops.end(), rng);
    ASSERT_OK(fs_->WriteBatch(*file, ops, sync));
    EXPECT_EQ(ReadAll(*file), expected);
  }
}

TEST_P(FileSystemTest, ReadPastEndOfFileIsShort) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<File> file, fs_->Open(dir_.Sub("f"), CreateOptions()));
  const std::string data = RandomBytes(2, 100);
  const WriteOp op{0, data.data(), data.size()};
  ASSERT_OK(fs_->WriteBatch(*file, std::span(&op, 1), Sync::kNone));

  std::vector<std::byte> buf(200);
  size_t n = 12345;
  ASSERT_OK(fs_->Read(*file, 50, buf, &n));
  ASSERT_EQ(n, 50u);
  EXPECT_EQ(std::memcmp(buf.data(), data.data() + 50, 50), 0);
  ASSERT_OK(fs_->Read(*file, 1000, buf, &n));
  EXPECT_EQ(n, 0u);
  ASSERT_OK(fs_->Read(*file, 0, std::span(buf.data(), 0), &n));
  EXPECT_EQ(n, 0u);
}

TEST_P(FileSystemTest, ZeroFillWritesZeros) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<File> file, fs_->Open(dir_.Sub("f"), CreateOptions()));
  const std::string junk = RandomBytes(3, 10000);
  const WriteOp op{0, junk.data(), junk.size()};
  ASSERT_OK(fs_->WriteBatch(*file, std::span(&op, 1), Sync::kNone));

  // Over a chunk boundary and not a multiple of the chunk.
  const uint64_t size = 3 * PosixFileSystem::kZeroFillChunkBytes + 100;
  ASSERT_OK(fs_->ZeroFill(*file, size));
  ASSERT_OK_AND_ASSIGN(uint64_t actual, fs_->Size(*file));
  EXPECT_EQ(actual, size);
  EXPECT_EQ(ReadAll(*file), std::string(size, '\0'));

  // Real blocks, not holes or unwritten extents: the file occupies its size.
  struct stat st;
  ASSERT_EQ(stat(file->path().c_str(), &st), 0);
  EXPECT_GE(static_cast<uint64_t>(st.st_blocks) * 512, size - 100);
}

TEST_P(FileSystemTest, TruncateShrinksAndGrows) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<File> file, fs_->Open(dir_.Sub("f"), CreateOptions()));
  const std::string data = RandomBytes(4, 5000);
  const WriteOp op{0, data.data(), data.size()};
  ASSERT_OK(fs_->WriteBatch(*file, std::span(&op, 1), Sync::kData));
  ASSERT_OK(fs_->Truncate(*file, 1000));
  EXPECT_EQ(ReadAll(*file), data.substr(0, 1000));
  ASSERT_OK(fs_->Truncate(*file, 3000));
  EXPECT_EQ(ReadAll(*file), data.substr(0, 1000) + std::string(2000, '\0'));
  ASSERT_OK(fs_->Truncate(*file, 0));
  ASSERT_OK_AND_ASSIGN(uint64_t size, fs_->Size(*file));
  EXPECT_EQ(size, 0u);
}

TEST_P(FileSystemTest, DirectoryOperations) {
  const std::string sub = dir_.Sub("sub");
  ASSERT_OK(fs_->CreateDir(sub));
  ASSERT_OK(fs_->CreateDir(sub));  // already a directory: fine
  struct stat st;
  ASSERT_EQ(stat(sub.c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(
      st.st_mode & 0777, 0750u & ~[] {
        const mode_t mask = umask(0);
        umask(mask);
        return mask;
      }());

  for (const char* name : {"c", "a", "b"}) {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<File> file, fs_->Open(sub + "/" + name, CreateOptions()));
  }
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> names, fs_->ListDir(sub));
  EXPECT_EQ(names, (std::vector<std::string>{"a", "b", "c"}));

  // A file where a directory is wanted.
  Status not_dir = fs_->CreateDir(sub + "/a");
  EXPECT_FALSE(not_dir.ok());
  EXPECT_EQ(not_dir.sys_errno(), EEXIST);

  ASSERT_OK(fs_->Rename(sub + "/a", sub + "/d"));
  ASSERT_OK(fs_->SyncDir(sub));
  ASSERT_OK_AND_ASSIGN(bool a_exists, fs_->Exists(sub + "/a"));
  ASSERT_OK_AND_ASSIGN(bool d_exists, fs_->Exists(sub + "/d"));
  EXPECT_FALSE(a_exists);
  EXPECT_TRUE(d_exists);
  ASSERT_OK_AND_ASSIGN(bool dir_exists, fs_->Exists(sub));
  EXPECT_TRUE(dir_exists);

  ASSERT_OK(fs_->Unlink(sub + "/d"));
  ASSERT_OK(fs_->SyncDir(sub));
  ASSERT_OK_AND_ASSIGN(names, fs_->ListDir(sub));
  EXPECT_EQ(names, (std::vector<std::string>{"b", "c"}));

  Status unlink_missing = fs_->Unlink(sub + "/d");
  EXPECT_EQ(unlink_missing.code(), Code::kIoError);
  EXPECT_EQ(unlink_missing.sys_errno(), ENOENT);
  Status rename_missing = fs_->Rename(sub + "/d", sub + "/e");
  EXPECT_EQ(rename_missing.sys_errno(), ENOENT);
  EXPECT_THAT(std::string(rename_missing.message()), HasSubstr(sub + "/d"));
  StatusOr<std::vector<std::string>> list_missing = fs_->ListDir(dir_.Sub("nope"));
  EXPECT_FALSE(list_missing.ok());
  EXPECT_FALSE(fs_->SyncDir(dir_.Sub("nope")).ok());
  // Exists reports errors other than ENOENT: here ENOTDIR.
  StatusOr<bool> through_file = fs_->Exists(sub + "/b/x");
  ASSERT_FALSE(through_file.ok());
  EXPECT_EQ(through_file.status().sys_errno(), ENOTDIR);
}

TEST_P(FileSystemTest, GetSpaceIsSane) {
  ASSERT_OK_AND_ASSIGN(SpaceInfo space, fs_->GetSpace(dir_.path()));
  EXPECT_GT(space.bytes_total, 0u);
  EXPECT_LE(space.bytes_free, space.bytes_total);
  EXPECT_LE(space.inodes_free, space.inodes_total);
  StatusOr<SpaceInfo> missing = fs_->GetSpace(dir_.Sub("nope"));
  EXPECT_FALSE(missing.ok());
}

TEST_P(FileSystemTest, LockFileIsExclusive) {
  const std::string path = dir_.Sub("LOCK");
  const std::string holder = "pid 42 spool-test";
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<FileLock> lock, fs_->LockFile(path, holder));
    EXPECT_EQ(lock->path(), path);

    StatusOr<std::unique_ptr<FileLock>> second = fs_->LockFile(path, "pid 43 other");
    ASSERT_FALSE(second.ok());
    EXPECT_EQ(second.status().code(), Code::kFailedPrecondition);
    EXPECT_THAT(std::string(second.status().message()), HasSubstr(holder));
    EXPECT_THAT(std::string(second.status().message()), HasSubstr(path));

    // Another process is refused too.
    const int code = RunInChild([&] {
      StatusOr<std::unique_ptr<FileSystem>> fs = NewFileSystem(Backend::kPosix);
      if (!fs.ok()) return kChildSkipped;
      StatusOr<std::unique_ptr<FileLock>> lock = (*fs)->LockFile(path, "child");
      return lock.ok() ? kChildUnexpectedOk : static_cast<int>(lock.status().code());
    });
    if (code != -1) {
      EXPECT_EQ(code, static_cast<int>(Code::kFailedPrecondition));
    }
  }
  // Released with the first lock.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<FileLock> lock, fs_->LockFile(path, "pid 44 next"));
}

TEST_P(FileSystemTest, WriteToReadOnlyFileIsIoError) {
  const std::string path = dir_.Sub("f");
  { ASSERT_OK_AND_ASSIGN(std::unique_ptr<File> created, fs_->Open(path, CreateOptions())); }
  OpenOptions read_only;
  read_only.read_only = true;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<File> file, fs_->Open(path, read_only));
  const std::string data = RandomBytes(5, 100);
  const WriteOp op{0, data.data(), data.size()};
  for (Sync sync : {Sync::kNone, Sync::kData}) {
    Status status = fs_->WriteBatch(*file, std::span(&op, 1), sync);
    ASSERT_FALSE(status.ok());
    EXPECT_EQ(status.code(), Code::kIoError);
    EXPECT_EQ(status.sys_errno(), EBADF);
    EXPECT_THAT(std::string(status.message()), HasSubstr("EBADF"));
    EXPECT_THAT(std::string(status.message()), HasSubstr(path));
  }
}

TEST_P(FileSystemTest, CreateInUnwritableDirectoryIsPermission) {
  const std::string locked = dir_.Sub("locked");
  ASSERT_EQ(mkdir(locked.c_str(), 0700), 0);
  if (geteuid() != 0) {
    ASSERT_EQ(chmod(locked.c_str(), 0500), 0);
    StatusOr<std::unique_ptr<File>> file = fs_->Open(locked + "/f", CreateOptions());
    chmod(locked.c_str(), 0700);
    ASSERT_FALSE(file.ok());
    EXPECT_EQ(file.status().code(), Code::kPermission);
    EXPECT_EQ(file.status().sys_errno(), EACCES);
    return;
  }
  // Root ignores permission bits: try as "nobody" in a child process. The temp dir (0700
  // from mkdtemp) is opened up so that only `locked` refuses.
  ASSERT_EQ(chmod(dir_.path().c_str(), 0755), 0);
  const int code = RunInChild([&] {
    constexpr uid_t kNobody = 65534;
    if (setgroups(0, nullptr) != 0 || setgid(kNobody) != 0 || setuid(kNobody) != 0) {
      return kChildSkipped;
    }
    StatusOr<std::unique_ptr<File>> file = fs_->Open(locked + "/f", CreateOptions());
    if (file.ok()) return kChildUnexpectedOk;
    if (file.status().sys_errno() != EACCES) return 64 + file.status().sys_errno() % 32;
    return static_cast<int>(file.status().code());
  });
  if (code == -1 || code == kChildSkipped) GTEST_SKIP() << "cannot fork and drop privileges";
  EXPECT_EQ(code, static_cast<int>(Code::kPermission));
}

// O_DIRECT | O_DSYNC: aligned writes, unlinked at full queue depth with Sync::kNone.
TEST_P(FileSystemTest, DirectDsyncAlignedWriteAndRead) {
  OpenOptions options = CreateOptions();
  options.direct = true;
  options.dsync = true;
  StatusOr<std::unique_ptr<File>> opened = fs_->Open(dir_.Sub("direct"), options);
  if (!opened.ok() && opened.status().sys_errno() == EINVAL) {
    GTEST_SKIP() << "no O_DIRECT here: " << opened.status().ToString();
  }
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  std::unique_ptr<File> file = std::move(opened).value();

  constexpr size_t kBlock = kDirectIoAlignment;
  constexpr size_t kFileSize = 256 * kBlock;
  ASSERT_OK(fs_->ZeroFill(*file, kFileSize));

  // 100 ops of 1..4 blocks every 8 blocks (more than a ring), then a second batch synced.
  std::string expected(kFileSize, '\0');
  AlignedBuffer buffer = AlignedAlloc(kFileSize);
  std::vector<WriteOp> none_ops;
  std::vector<WriteOp> data_ops;
  std::mt19937_64 rng(::spool::testing::TestSeed(7));
  for (size_t i = 0; i < 32; ++i) {
    const size_t offset = i * 8 * kBlock;
    const size_t size = (1 + rng() % 4) * kBlock;
    const std::string bytes = RandomBytes(rng(), size);
    std::memcpy(buffer.get() + offset, bytes.data(), size);
    expected.replace(offset, size, bytes);
    (i % 2 == 0 ? none_ops : data_ops).push_back(WriteOp{offset, buffer.get() + offset, size});
  }
  ASSERT_OK(fs_->WriteBatch(*file, none_ops, Sync::kNone));
  ASSERT_OK(fs_->WriteBatch(*file, data_ops, Sync::kData));

  AlignedBuffer in = AlignedAlloc(kFileSize);
  size_t n = 0;
  ASSERT_OK(fs_->Read(*file, 0, std::span(in.get(), kFileSize), &n));
  ASSERT_EQ(n, kFileSize);
  EXPECT_EQ(std::memcmp(in.get(), expected.data(), kFileSize), 0);
}

// Writes that cross RLIMIT_FSIZE end short and the remainder fails with EFBIG: the short
// write must be continued (not reported as success, not spin), and a linked fsync after a
// failed write must not turn the batch into success. Runs in a child: the limit is
// process-wide.
TEST_P(FileSystemTest, ShortWriteThenErrorFailsTheBatch) {
  const std::string path = dir_.Sub("limited");
  const Backend backend = GetParam();
  const int code = RunInChild([&] {
    constexpr rlim_t kLimit = 10000;
    std::signal(SIGXFSZ, SIG_IGN);
    const rlimit limit{kLimit, kLimit};
    if (setrlimit(RLIMIT_FSIZE, &limit) != 0) return kChildSkipped;
    StatusOr<std::unique_ptr<FileSystem>> fs = NewFileSystem(backend);
    if (!fs.ok()) return 1;
    StatusOr<std::unique_ptr<File>> file = (*fs)->Open(path, CreateOptions());
    if (!file.ok()) return 2;
    const std::string data = RandomBytes(6, 8192);
    for (Sync sync : {Sync::kNone, Sync::kData}) {
      // The second op crosses the limit: 1808 bytes are written, then EFBIG.
      const WriteOp ops[] = {{0, data.data(), 4096}, {8192, data.data(), 4096}};
      const Status status = (*fs)->WriteBatch(**file, ops, sync);
      if (status.ok()) return 3;
      if (status.sys_errno() != EFBIG || status.code() != Code::kIoError) return 4;
      // Nothing of it fits: a plain error (the fsync, if any, is cancelled or never sent).
      const WriteOp beyond[] = {{0, data.data(), 100}, {20000, data.data(), 100}};
      const Status beyond_status = (*fs)->WriteBatch(**file, beyond, sync);
      if (beyond_status.ok() || beyond_status.sys_errno() != EFBIG) return 5;
    }
    // The part below the limit was written.
    std::string head(kLimit, '\0');
    size_t n = 0;
    if (!(*fs)->Read(**file, 0, std::as_writable_bytes(std::span(head)), &n).ok()) return 6;
    if (n != kLimit || head.compare(8192, kLimit - 8192, data, 0, kLimit - 8192) != 0) return 7;
    return 0;
  });
  if (code == -1 || code == kChildSkipped) GTEST_SKIP() << "cannot fork or set RLIMIT_FSIZE";
  EXPECT_EQ(code, 0);
}

// Eight threads, each with its own file, writing synced batches and reading them back at
// once (on io_uring each call must get a ring of its own).
TEST_P(FileSystemTest, ConcurrentWritersAndReaders) {
  constexpr int kThreads = 8;
  constexpr int kRounds = 20;
  constexpr int kOpsPerRound = 10;
  constexpr size_t kOpSize = 3000;
  std::atomic<int> failures{0};
  std::vector<std::string> errors(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto fail = [&](const std::string& what) {
        errors[t] = what;
        failures.fetch_add(1);
      };
      StatusOr<std::unique_ptr<File>> file =
          fs_->Open(dir_.Sub("t" + std::to_string(t)), CreateOptions());
      if (!file.ok()) return fail(file.status().ToString());
      std::string expected;
      for (int round = 0; round < kRounds; ++round) {
        std::vector<std::string> payloads;
        std::vector<WriteOp> ops;
        for (int i = 0; i < kOpsPerRound; ++i) {
          payloads.push_back(RandomBytes(t * 100000 + round * 100 + i, kOpSize));
        }
        for (int i = 0; i < kOpsPerRound; ++i) {
          ops.push_back(WriteOp{expected.size(), payloads[i].data(), kOpSize});
          expected += payloads[i];
        }
        const Status status = fs_->WriteBatch(**file, ops, Sync::kData);
        if (!status.ok()) return fail(status.ToString());
        std::string back(expected.size(), '\0');
        size_t n = 0;
        const Status read = fs_->Read(**file, 0, std::as_writable_bytes(std::span(back)), &n);
        if (!read.ok()) return fail(read.ToString());
        if (n != expected.size() || back != expected) return fail("read back differs");
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(errors[t], "") << "thread " << t;
}

// A File that no backend opened: handing it to one is a caller bug, reported as kInternal.
class ForeignFile : public File {
 public:
  ForeignFile() : File("/foreign", OpenOptions{}) {}
};

TEST_P(FileSystemTest, ForeignFileIsInternalError) {
  ForeignFile file;
  const WriteOp op{0, "x", 1};
  EXPECT_EQ(fs_->WriteBatch(file, std::span(&op, 1), Sync::kData).code(), Code::kInternal);
  EXPECT_EQ(fs_->SyncData(file).code(), Code::kInternal);
  char buf[1];
  size_t n = 0;
  EXPECT_EQ(fs_->Read(file, 0, std::as_writable_bytes(std::span(buf)), &n).code(), Code::kInternal);
  EXPECT_EQ(fs_->Size(file).status().code(), Code::kInternal);
}

INSTANTIATE_TEST_SUITE_P(Backends, FileSystemTest,
                         ::testing::Values(Backend::kPosix, Backend::kUring),
                         [](const ::testing::TestParamInfo<Backend>& info) {
                           return info.param == Backend::kPosix ? "Posix" : "Uring";
                         });

TEST(FileSystemErrnoTest, ErrnoToStatusClassifies) {
  const struct {
    int err;
    Code code;
    const char* name;
  } cases[] = {
      {ENOSPC, Code::kStorageFull, "ENOSPC"}, {EDQUOT, Code::kStorageFull, "EDQUOT"},
      {EACCES, Code::kPermission, "EACCES"},  {EPERM, Code::kPermission, "EPERM"},
      {EROFS, Code::kPermission, "EROFS"},    {EIO, Code::kIoError, "EIO"},
      {EUCLEAN, Code::kIoError, "EUCLEAN"},   {EBADF, Code::kIoError, "EBADF"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const Status status = ErrnoToStatus(c.err, "write", "/spool/0/seg-000001");
    EXPECT_EQ(status.code(), c.code);
    EXPECT_EQ(CodeForErrno(c.err), c.code);
    EXPECT_EQ(status.sys_errno(), c.err);
    EXPECT_EQ(ErrnoName(c.err), c.name);
    EXPECT_THAT(std::string(status.message()), HasSubstr(c.name));
    EXPECT_THAT(std::string(status.message()), HasSubstr("/spool/0/seg-000001"));
    EXPECT_THAT(std::string(status.message()), HasSubstr("write"));
  }
}

TEST(FileSystemFactoryTest, NamesRoundTrip) {
  for (Backend backend : {Backend::kAuto, Backend::kUring, Backend::kPosix}) {
    Backend parsed = Backend::kAuto;
    ASSERT_TRUE(ParseBackend(BackendName(backend), &parsed)) << BackendName(backend);
    EXPECT_EQ(parsed, backend);
  }
  Backend parsed = Backend::kPosix;
  EXPECT_FALSE(ParseBackend("uring2", &parsed));
  EXPECT_EQ(parsed, Backend::kPosix);
  EXPECT_EQ(OpKindName(OpKind::kWrite), "write");
  EXPECT_EQ(OpKindName(OpKind::kSync), "sync");
  for (int k = 0; k < kOpKindCount; ++k) {
    EXPECT_NE(OpKindName(static_cast<OpKind>(k)), "unknown") << k;
  }
}

TEST(FileSystemFactoryTest, AutoPicksABackendAndHonorsTheEnvironment) {
  const char* saved = std::getenv("SPOOL_IO_BACKEND");
  const std::string saved_value = saved ? saved : "";
  unsetenv("SPOOL_IO_BACKEND");
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<FileSystem> fs, NewFileSystem(Backend::kAuto));
    EXPECT_EQ(fs->Name(), ProbeUring().ok() ? "io_uring" : "posix");
  }
  setenv("SPOOL_IO_BACKEND", "posix", 1);
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<FileSystem> fs, NewFileSystem(Backend::kAuto));
    EXPECT_EQ(fs->Name(), "posix");
  }
  setenv("SPOOL_IO_BACKEND", "bogus", 1);
  {
    StatusOr<std::unique_ptr<FileSystem>> fs = NewFileSystem(Backend::kAuto);
    EXPECT_EQ(fs.status().code(), Code::kInvalidArgument);
    // An explicit backend is not overridden.
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<FileSystem> posix, NewFileSystem(Backend::kPosix));
    EXPECT_EQ(posix->Name(), "posix");
  }
  if (saved) {
    setenv("SPOOL_IO_BACKEND", saved_value.c_str(), 1);
  } else {
    unsetenv("SPOOL_IO_BACKEND");
  }
}

}  // namespace
}  // namespace spool::io
