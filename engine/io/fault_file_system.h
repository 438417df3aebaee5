// A FileSystem for tests that wraps another one, counts operations, fails chosen ones with
// a real errno, and simulates power loss by dropping or tearing everything that was not yet
// made durable (the model is RocksDB's utilities/fault_injection_fs.h).
//
// Durability model (what survives SimulateCrash), following io/file_system.h:
//   - Data. A write is durable once a later SyncData() or WriteBatch(..., Sync::kData) of
//     the same file returned OK, or a ZeroFill() or Truncate() of it returned OK (both
//     sync by contract), or at once when the file was opened with OpenOptions::dsync.
//     Until then the wrapper keeps the bytes the write overwrote (read from the base file
//     before writing) and the file's size at its last sync, so that a crash can undo it.
//     A failed sync makes nothing durable: the writes stay undoable (docs/durability.md,
//     contract item 4).
//   - Names. Creating a file (Open with create of a path that did not exist), unlinking it,
//     and renaming it are durable once SyncDir() of its directory returned OK; a rename
//     needs SyncDir() of both directories. Until then a crash undoes them: a created file
//     is deleted, a rename is renamed back, and an unlinked file, or a file replaced by a
//     rename, is recreated with the content it had (kept in memory by the wrapper).
//   - Directories made by CreateDir() are treated as durable at once (see Limitations).
//
// Tracking follows the file, not the name: File objects opened before a rename keep
// recording into the same file's history. Every File passed to this FileSystem must come
// from its own Open(); the wrapper unwraps it (REQUIRES, checked only by static_cast).
//
// After SimulateCrash() the wrapper is "crashed": every operation fails with kIoError
// "simulated crash" until ResetAfterCrash(), which models restarting the process. Files
// opened before the crash stay unusable even after ResetAfterCrash() (the process that held
// them is gone); reopen them.
//
// Limitations: a directory created with CreateDir() is never removed by a crash; after a
// failed sync, a later successful sync of the same file makes the earlier writes durable
// here, while Linux may have dropped those pages for good (the engine must not rely on
// either: it never retries a sync); the wrapper serializes writes, syncs, ZeroFill and
// Truncate per file (reads are not serialized), and files unlinked or replaced by a rename
// are copied into memory until their directory is synced.
//
// Thread-safety: thread-safe, like every FileSystem. SimulateCrash() and ResetAfterCrash()
// wait for operations in progress to finish and block new ones while they run.

#ifndef SPOOL_IO_FAULT_FILE_SYSTEM_H_
#define SPOOL_IO_FAULT_FILE_SYSTEM_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "io/file_system.h"
#include "spool/status.h"
#include "util/mutex.h"

namespace spool::io {

// What a simulated power loss does to data written since the last good sync.
enum class CrashMode {
  // Every unsynced write is undone: files hold exactly their last synced content and size.
  kDropUnsynced,
  // Every unsynced write is torn at kSectorSize boundaries: for each sector, chosen by a
  // seeded random generator, the new bytes stay, the old bytes come back, or random bytes
  // ("garbage") appear. Synced bytes are never changed; a file may end up longer than its
  // synced size where a new or garbage sector past it survived.
  kTearUnsynced,
};

class FaultFileSystem : public FileSystem {
 public:
  // The unit of torn writes: a sector either keeps its new bytes or does not.
  static constexpr size_t kSectorSize = 512;

  // REQUIRES: `base` outlives this object (not owned).
  explicit FaultFileSystem(FileSystem* base);
  ~FaultFileSystem() override;

  FaultFileSystem(const FaultFileSystem&) = delete;
  FaultFileSystem& operator=(const FaultFileSystem&) = delete;

  // "fault(<base name>)".
  std::string_view Name() const override;

  // The FileSystem operations pass through to `base` unless a fault is injected or the
  // wrapper is crashed; see the class comment for what is tracked. Files returned by Open
  // are wrappers; REQUIRES: every File passed in came from this object's Open().
  StatusOr<std::unique_ptr<File>> Open(const std::string& path,
                                       const OpenOptions& options) override;
  Status WriteBatch(File& file, std::span<const WriteOp> ops, Sync sync) override;
  Status SyncData(File& file) override;
  Status Read(File& file, uint64_t offset, std::span<std::byte> out, size_t* bytes_read) override;
  StatusOr<uint64_t> Size(File& file) override;
  Status ZeroFill(File& file, uint64_t size) override;
  Status Truncate(File& file, uint64_t size) override;
  Status Rename(const std::string& from, const std::string& to) override;
  Status SyncDir(const std::string& dir) override;
  Status Unlink(const std::string& path) override;
  Status CreateDir(const std::string& path) override;
  StatusOr<std::vector<std::string>> ListDir(const std::string& dir) override;
  StatusOr<bool> Exists(const std::string& path) override;
  StatusOr<SpaceInfo> GetSpace(const std::string& path) override;
  StatusOr<std::unique_ptr<FileLock>> LockFile(const std::string& path,
                                               std::string_view holder) override;

  // --- Counting ---

  // The number of operations of `kind` attempted through this wrapper since it was made,
  // including those that failed by injection or because the wrapper was crashed. Each
  // WriteOp of a WriteBatch is one kWrite and its Sync::kData one kSync; a batch stops
  // counting at its first failed write (the rest is not attempted, nor the sync). Size()
  // and Exists() are not counted (they have no OpKind).
  uint64_t Count(OpKind kind) const;

  // --- Fault injection ---

  // Arms a rule: the n-th operation of `kind` from now on (1-based) whose path matches the
  // path filter fails with errno `err` (through ErrnoToStatus, so it is classified like a
  // real one) without being performed; with `sticky`, every later one of that kind fails
  // too. Replaces an earlier rule for the same kind; rules for different kinds coexist.
  // An injected write failure performs the ops of the batch before the failing one (and,
  // with set_partial_failed_writes(true), half of the failing one) and returns without
  // syncing; an injected kSync failure of WriteBatch performs its writes, leaves them
  // unsynced and returns the error, as Linux does when fsync fails.
  // REQUIRES: n >= 1, err > 0, kind != OpKind::kCount.
  void FailNth(OpKind kind, uint64_t n, int err, bool sticky = false);

  // Disarms every rule (the path filter stays).
  void ClearFaults();

  // Rules apply only to operations whose path (either path of a Rename; the current path of
  // a file) contains `substring`, and only those advance a rule's count; empty matches all.
  void SetFailPathFilter(std::string substring);

  // With true, a write failed by injection writes the first half of its bytes (rounded
  // down to kDirectIoAlignment for O_DIRECT files) before failing. Default false.
  void set_partial_failed_writes(bool partial);

  // --- Simulated power loss ---

  // Brings the base file system to a state a power loss could leave (see CrashMode and the
  // class comment), using `seed` for kTearUnsynced, then enters the crashed state. Works
  // while the engine still holds File objects: the undo opens paths again through `base`.
  // Returns the first error met while undoing (the rest is still attempted); the wrapper is
  // crashed either way. REQUIRES: not already crashed.
  Status SimulateCrash(CrashMode mode, uint64_t seed);

  // Leaves the crashed state and forgets all tracking, rules and the path filter (counts
  // stay). Files opened before the crash keep failing.
  void ResetAfterCrash();

  bool crashed() const;

  // Bytes written through this wrapper to currently linked files and not yet durable.
  uint64_t UnsyncedBytes() const;

 private:
  struct FileState;
  struct DirOp;
  class FaultFile;
  struct Rule {
    bool armed = false;
    uint64_t n = 0;
    uint64_t seen = 0;
    int err = 0;
    bool sticky = false;
  };

  // Counts an operation of `kind` on `path` (and `path2`, the target of a rename) and
  // returns the error it must fail with (crashed or injected; *injected tells which), or OK
  // to perform it.
  Status BeginOpLocked(OpKind kind, std::string_view path, std::string_view path2, bool* injected)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Status BeginOp(OpKind kind, std::string_view path, std::string_view path2 = {})
      ABSL_LOCKS_EXCLUDED(mu_);
  // The same for an operation on an open file, which also fails for files opened before
  // the last crash or reset.
  Status BeginFileOp(OpKind kind, const FaultFile& file, bool* injected) ABSL_LOCKS_EXCLUDED(mu_);
  // Fails (without counting) Exists() while crashed.
  Status CheckNotCrashed(std::string_view what, std::string_view path) const
      ABSL_LOCKS_EXCLUDED(mu_);
  bool PathMatchesFilter(std::string_view path) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Remembers the old bytes of `op` (and the file's size, at its first write since the
  // last good sync) before it is written. REQUIRES: the file's io_mu is held.
  Status RecordPreImage(FaultFile& file, const WriteOp& op) ABSL_LOCKS_EXCLUDED(mu_);
  // Forgets the file's tracked writes: a sync made them durable.
  void MarkSynced(FileState& state) ABSL_LOCKS_EXCLUDED(mu_);
  // Performs WriteBatch of `ops` (already counted) through base, tracking them unless the
  // file is O_DSYNC. REQUIRES: the file's io_mu is held.
  Status WriteTracked(FaultFile& file, std::span<const WriteOp> ops, Sync sync)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Re-keys the tracked files at or under `from` (a file or a directory) to `to`.
  void MovePaths(const std::string& from, const std::string& to) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The whole content of `path` through base, to recreate the file on crash.
  StatusOr<std::string> ReadWholeFile(const std::string& path);
  Status WriteWholeFile(const std::string& path, const std::string& content);

  // Undo steps of SimulateCrash. REQUIRES: gate_ held exclusively.
  Status UndoDirOp(DirOp& op) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Status UndoWrites(FileState& state, CrashMode mode, std::mt19937_64& rng)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  FileSystem* const base_;
  const std::string name_;

  // Held shared by every operation for its whole duration and exclusively by
  // SimulateCrash()/ResetAfterCrash(), so that no operation overlaps the undo. Lock order:
  // gate_, then a FileState's io_mu, then mu_.
  Mutex gate_;

  mutable Mutex mu_;
  std::array<uint64_t, kOpKindCount> counts_ ABSL_GUARDED_BY(mu_){};
  std::array<Rule, kOpKindCount> rules_ ABSL_GUARDED_BY(mu_){};
  std::string path_filter_ ABSL_GUARDED_BY(mu_);
  bool partial_failed_writes_ ABSL_GUARDED_BY(mu_) = false;
  bool crashed_ ABSL_GUARDED_BY(mu_) = false;
  // Incremented by every crash; files opened in an older epoch fail.
  uint64_t epoch_ ABSL_GUARDED_BY(mu_) = 0;
  // The tracked files that are linked, by current path (normalized).
  std::map<std::string, std::shared_ptr<FileState>> files_ ABSL_GUARDED_BY(mu_);
  // Name-space changes not yet durable, oldest first.
  std::vector<DirOp> dir_ops_ ABSL_GUARDED_BY(mu_);
};

}  // namespace spool::io

#endif  // SPOOL_IO_FAULT_FILE_SYSTEM_H_
