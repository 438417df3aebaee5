// The index of one shard: RocksDB, derived from the shard's log.
//
// Column families:
//   messages  id (16 bytes, big-endian time then tag)  -> IndexEntry (index/codec.h)
//   schedule  queue \0 next_attempt (8 bytes BE, sign-flipped) id  -> ""   (queued only)
//   meta      "checkpoint" -> log position (segment, offset) the index reflects
//
// The log is the truth. Index writes go without RocksDB's WAL (the log is our WAL): one
// WriteBatch per log commit group, carrying the checkpoint, so that whatever part of the
// index RocksDB has flushed is consistent with a log position. atomic_flush makes every
// flush cut all column families at the same batch. At open the spool replays the log
// after the checkpoint. Choice measured in docs/design.md.
//
// In read-only mode the database is opened read-only and writes go to an in-memory
// overlay instead, so that the log after the checkpoint can still be replayed.
//
// Thread-safety: thread-safe.

#ifndef SPOOL_INDEX_INDEX_H_
#define SPOOL_INDEX_INDEX_H_

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "log/log.h"
#include "index/codec.h"
#include "spool/status.h"
#include "util/mutex.h"

namespace rocksdb {
class DB;
class ColumnFamilyHandle;
class WriteBatch;
}  // namespace rocksdb

namespace spool::index {

using internal::IndexEntry;

class Index {
  struct Db;  // one open database (index.cc)

 public:
  // Opens (creating if missing and !read_only) the RocksDB at `path`.
  static StatusOr<std::unique_ptr<Index>> Open(const std::string& path, bool read_only);
  ~Index();

  // A set of changes applied atomically, with the checkpoint they reach.
  class Batch {
   public:
    explicit Batch(const Index& index);
    ~Batch();
    // Stores `entry` under its id; `old` (if any) is the entry it replaces, so that its
    // schedule key can be dropped.
    void Put(const IndexEntry& entry, const IndexEntry* old);
    void Delete(const IndexEntry& old);
    void SetCheckpoint(const log::Location& end);
    bool empty() const { return ops_ == 0; }

   private:
    friend class Index;
    const Index& index_;
    std::shared_ptr<Db> db_;  // the database the batch is built for
    std::unique_ptr<rocksdb::WriteBatch> batch_;
    // For the read-only overlay: id key -> entry (nullopt: deleted).
    std::vector<std::pair<std::string, std::optional<IndexEntry>>> overlay_;
    std::optional<log::Location> checkpoint_;
    int ops_ = 0;
  };

  Status Write(Batch& batch);

  // nullopt if absent.
  StatusOr<std::optional<IndexEntry>> Get(const MessageId& id);

  // Queued entries of `queue` due at or before now_ms, earliest first, with their
  // next-attempt times.
  StatusOr<std::vector<std::pair<int64_t, MessageId>>> ScanDue(std::string_view queue,
                                                               int64_t now_ms, size_t limit);
  // Every entry in id order until `visit` returns false.
  // From `from` (inclusive) when given.
  Status ForEach(const std::function<bool(const MessageId&, const IndexEntry&)>& visit,
                 const MessageId* from = nullptr);

  // The log position the index reflects (segment 0: nothing yet).
  StatusOr<log::Location> Checkpoint();

  // Flushes memtables (all column families at once) to make the checkpoint durable.
  Status Flush();

  // A RocksDB background error (failed flush or compaction), or OK.
  Status BackgroundError() const;
  // Asks RocksDB to resume after a background error (the cause is gone: space freed, the
  // disk writable again). OK once the database accepts writes again.
  Status Resume();
  // Closes and opens the database again: for an error that Resume cannot clear. What was
  // not flushed is gone (the caller replays the log after the checkpoint). Waits (at most
  // 10 s) for scans of the old database to end; a Batch built for it fails to Write.
  Status Reopen();
  // Tests only: every later Write fails with `status` (OK: writes work again), as when
  // RocksDB is in a background-error state.
  void FailWritesForTest(Status status);

  bool read_only() const { return read_only_; }

 private:
  struct Listener;
  Index() = default;
  StatusOr<std::shared_ptr<Db>> OpenDb() const;
  // The open database, or null while it is reopened (or after a failed reopen).
  std::shared_ptr<Db> Current() const;
  // The open database, or the status saying why there is none.
  StatusOr<std::shared_ptr<Db>> Use() const;

  std::string path_;
  bool read_only_ = false;
  // Open and without a background error: BackgroundError() answers from this alone.
  // Declared before db_, so that it outlives the listener that writes it.
  mutable std::atomic<bool> healthy_{true};
  mutable Mutex db_mu_;
  std::shared_ptr<Db> db_ ABSL_GUARDED_BY(db_mu_);
  Status db_error_ ABSL_GUARDED_BY(db_mu_);  // why db_ is null

  mutable Mutex overlay_mu_;
  std::map<std::string, std::optional<IndexEntry>> overlay_ ABSL_GUARDED_BY(overlay_mu_);
  std::optional<log::Location> overlay_checkpoint_ ABSL_GUARDED_BY(overlay_mu_);
  Status fail_writes_ ABSL_GUARDED_BY(overlay_mu_);  // FailWritesForTest
};

// The schedule key of an entry ("" if the entry is not scheduled: held or corrupt).
std::string ScheduleKey(const IndexEntry& entry, const MessageId& id);

}  // namespace spool::index

#endif  // SPOOL_INDEX_INDEX_H_
