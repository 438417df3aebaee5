#include "index/index.h"

#include <rocksdb/db.h>
#include <rocksdb/listener.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "spool/logging.h"
#include "util/sync_point.h"
#include "util/tsan.h"

namespace spool::index {
namespace {

enum Cf { kDefault = 0, kMessages = 1, kSchedule = 2, kMeta = 3 };
const char* const kCfNames[] = {"default", "messages", "schedule", "meta"};
constexpr char kCheckpointKey[] = "checkpoint";

// RocksDB reports errno text inside its messages; classify it like the I/O layer does.
Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return Status::Ok();
  std::string message = std::string(what) + ": " + s.ToString();
  if (s.IsNoSpace() || message.find("No space left") != std::string::npos ||
      message.find("Disk quota") != std::string::npos) {
    return StorageFullError(message);
  }
  if (message.find("Permission denied") != std::string::npos ||
      message.find("Read-only file system") != std::string::npos ||
      message.find("Operation not permitted") != std::string::npos) {
    return PermissionError(message);
  }
  if (s.IsCorruption()) return CorruptionError(message);
  return IoError(message);
}

void PutFixed64BE(std::string* out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out->push_back(static_cast<char>(v >> (8 * i)));
}

std::string EncodeCheckpoint(const log::Location& loc) {
  std::string out;
  internal::PutLocation(&out, loc);
  return out;
}

}  // namespace

// RocksDB's own diagnostics go to spool's log, not to a LOG file in the index directory:
// a failed write of that file (a full, read-only or failing disk) makes RocksDB 7.8 abort
// the process (an assertion in WritableFileWriter), and the operator reads one log anyway.
class ForwardingLogger : public rocksdb::Logger {
 public:
  explicit ForwardingLogger(std::string path)
      : rocksdb::Logger(rocksdb::InfoLogLevel::WARN_LEVEL), path_(std::move(path)) {}
  using rocksdb::Logger::Logv;
  void Logv(const rocksdb::InfoLogLevel level, const char* format, va_list ap) override {
    if (level < GetInfoLogLevel()) return;
    char buf[1024];
    std::vsnprintf(buf, sizeof(buf), format, ap);
    Log(level >= rocksdb::InfoLogLevel::ERROR_LEVEL ? LogLevel::kError : LogLevel::kWarning,
        "index " + path_ + ": rocksdb: " + buf);
  }

 private:
  const std::string path_;
};

struct Index::Listener : public rocksdb::EventListener {
  explicit Listener(std::atomic<bool>* healthy) : healthy(healthy) {}
  void OnBackgroundError(rocksdb::BackgroundErrorReason, rocksdb::Status* error) override {
    MutexLock l(&mu);
    if (error != nullptr && !error->ok() && status.ok()) {
      status = FromRocks(*error, "index background work");
      healthy->store(false);
      Log(LogLevel::kError, status.ToString());
    }
  }
  void OnErrorRecoveryEnd(const rocksdb::BackgroundErrorRecoveryInfo& info) override {
    MutexLock l(&mu);
    if (info.new_bg_error.ok()) {
      status = Status::Ok();
      healthy->store(true);
    }
  }
  std::atomic<bool>* const healthy;  // Index::healthy_
  mutable Mutex mu;
  Status status ABSL_GUARDED_BY(mu);
};

// One open database, shared by the operations using it, so that Reopen can retire it while
// a scan still runs on it: RocksDB closes when the last user lets go.
struct Index::Db {
  std::unique_ptr<rocksdb::DB> db;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;  // default, messages, schedule, meta
  std::shared_ptr<Listener> listener;
  ~Db() {
    if (db == nullptr) return;
    for (rocksdb::ColumnFamilyHandle* h : handles) {
      db->DestroyColumnFamilyHandle(h).PermitUncheckedError();  // closing anyway
    }
    db->Close().PermitUncheckedError();  // nothing to do about it at shutdown
  }
};

std::string ScheduleKey(const IndexEntry& entry, const MessageId& id) {
  if (entry.info.state != MessageState::kQueued) return "";
  std::string key = entry.info.envelope.queue;
  key.push_back('\0');
  PutFixed64BE(&key, static_cast<uint64_t>(entry.info.next_attempt_ms) ^ (uint64_t{1} << 63));
  key += internal::IdKey(id);
  return key;
}

Index::Batch::Batch(const Index& index)
    : index_(index), db_(index.Current()), batch_(std::make_unique<rocksdb::WriteBatch>()) {}
Index::Batch::~Batch() = default;

void Index::Batch::Put(const IndexEntry& entry, const IndexEntry* old) {
  ++ops_;
  const std::string key = internal::IdKey(entry.info.id);
  if (index_.read_only_) {
    overlay_.emplace_back(key, entry);
    return;
  }
  if (db_ == nullptr) return;  // closed for a reopen: Write fails
  if (old != nullptr) {
    const std::string old_sched = ScheduleKey(*old, old->info.id);
    if (!old_sched.empty()) batch_->Delete(db_->handles[kSchedule], old_sched);
  }
  batch_->Put(db_->handles[kMessages], key, internal::EncodeIndexEntry(entry));
  const std::string sched = ScheduleKey(entry, entry.info.id);
  if (!sched.empty()) batch_->Put(db_->handles[kSchedule], sched, "");
}

void Index::Batch::Delete(const IndexEntry& old) {
  ++ops_;
  const std::string key = internal::IdKey(old.info.id);
  if (index_.read_only_) {
    overlay_.emplace_back(key, std::nullopt);
    return;
  }
  if (db_ == nullptr) return;  // closed for a reopen: Write fails
  batch_->Delete(db_->handles[kMessages], key);
  const std::string sched = ScheduleKey(old, old.info.id);
  if (!sched.empty()) batch_->Delete(db_->handles[kSchedule], sched);
}

void Index::Batch::SetCheckpoint(const log::Location& end) { checkpoint_ = end; }

StatusOr<std::unique_ptr<Index>> Index::Open(const std::string& path, bool read_only) {
  std::unique_ptr<Index> index(new Index());
  index->path_ = path;
  index->read_only_ = read_only;
  SPOOL_ASSIGN_OR_RETURN(std::shared_ptr<Db> db, index->OpenDb());
  MutexLock l(&index->db_mu_);
  index->db_ = std::move(db);
  return index;
}

StatusOr<std::shared_ptr<Index::Db>> Index::OpenDb() const {
  auto out = std::make_shared<Db>();
  out->listener = std::make_shared<Listener>(&healthy_);
  rocksdb::DBOptions db_options;
  db_options.create_if_missing = !read_only_;
  db_options.create_missing_column_families = !read_only_;
  // RocksDB lists the directory before it creates it (its file summary at open); with no
  // LOG file of its own to create there first, a new index would log that as an error, so
  // the directory is made below.
  db_options.info_log = std::make_shared<ForwardingLogger>(path_);
  // Flushes cut every column family at the same WriteBatch: the checkpoint in `meta`
  // always matches the other families' content.
  db_options.atomic_flush = true;
  db_options.listeners.push_back(out->listener);
  db_options.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
  db_options.keep_log_file_num = 2;
  db_options.max_background_jobs = 2;
  // Unflushed index state is worth nothing after a crash either: the log after the
  // checkpoint is replayed. The spool flushes explicitly on a clean close.
  db_options.avoid_flush_during_shutdown = true;
  rocksdb::ColumnFamilyOptions cf_options;
  cf_options.write_buffer_size = 32 << 20;
  std::vector<rocksdb::ColumnFamilyDescriptor> families;
  for (const char* name : kCfNames) families.emplace_back(name, cf_options);
  if (!read_only_) (void)::mkdir(path_.c_str(), 0755);  // exists, or the open says why
  rocksdb::DB* db = nullptr;
  rocksdb::Status s =
      read_only_ ? rocksdb::DB::OpenForReadOnly(db_options, path_, families, &out->handles, &db)
                 : rocksdb::DB::Open(db_options, path_, families, &out->handles, &db);
  if (!s.ok()) return FromRocks(s, "open index " + path_);
  out->db.reset(db);
  return out;
}

Index::~Index() = default;

std::shared_ptr<Index::Db> Index::Current() const {
  MutexLock l(&db_mu_);
  return db_;
}

StatusOr<std::shared_ptr<Index::Db>> Index::Use() const {
  MutexLock l(&db_mu_);
  if (db_ == nullptr) return db_error_;
  return db_;
}

Status Index::Reopen() {
  std::shared_ptr<Db> old;
  {
    MutexLock l(&db_mu_);
    old = std::move(db_);
    db_error_ = IoError("index " + path_ + " is being reopened");
    healthy_.store(false);
  }
  // RocksDB allows one open instance of a directory: wait for the users of the old one (a
  // scan in progress) to let go.
  for (int waited_ms = 0; old != nullptr && old.use_count() > 1; ++waited_ms) {
    SPOOL_SYNC_POINT("Index::Reopen:WaitForUsers");
    if (waited_ms == 10000) {
      MutexLock l(&db_mu_);
      db_ = std::move(old);
      MutexLock b(&db_->listener->mu);
      healthy_.store(db_->listener->status.ok());
      return UnavailableError("index " + path_ + " is in use; not reopened");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  old.reset();
  StatusOr<std::shared_ptr<Db>> fresh = OpenDb();
  MutexLock l(&db_mu_);
  if (!fresh.ok()) {
    db_error_ = fresh.status().WithContext("index closed after a failed reopen");
    return fresh.status();
  }
  db_ = std::move(fresh).value();
  MutexLock b(&db_->listener->mu);
  healthy_.store(db_->listener->status.ok());
  return Status::Ok();
}

Status Index::Write(Batch& batch) {
  if (read_only_) {
    MutexLock l(&overlay_mu_);
    for (auto& [key, entry] : batch.overlay_) overlay_[key] = std::move(entry);
    if (batch.checkpoint_) overlay_checkpoint_ = batch.checkpoint_;
    return Status::Ok();
  }
  {
    MutexLock l(&overlay_mu_);
    SPOOL_RETURN_IF_ERROR(fail_writes_);
  }
  SPOOL_ASSIGN_OR_RETURN(std::shared_ptr<Db> db, Use());
  if (batch.db_ != db) return IoError("index " + path_ + " was reopened while a write was built");
  if (batch.checkpoint_) {
    batch.batch_->Put(db->handles[kMeta], kCheckpointKey, EncodeCheckpoint(*batch.checkpoint_));
  }
  rocksdb::WriteOptions wo;
  // The spool's log is the write-ahead log. SPOOL_INDEX_WAL=1 turns RocksDB's WAL on (no
  // sync) only to measure what it would cost: docs/design.md.
  static const bool wal = std::getenv("SPOOL_INDEX_WAL") != nullptr;
  wo.disableWAL = !wal;
  return FromRocks(db->db->Write(wo, batch.batch_.get()), "index write");
}

StatusOr<std::optional<IndexEntry>> Index::Get(const MessageId& id) {
  const std::string key = internal::IdKey(id);
  if (read_only_) {
    MutexLock l(&overlay_mu_);
    auto it = overlay_.find(key);
    if (it != overlay_.end()) return it->second;
  }
  std::string value;
  SPOOL_ASSIGN_OR_RETURN(std::shared_ptr<Db> db, Use());
  rocksdb::Status s = db->db->Get(rocksdb::ReadOptions(), db->handles[kMessages], key, &value);
  if (s.IsNotFound()) return std::optional<IndexEntry>();
  SPOOL_RETURN_IF_ERROR(FromRocks(s, "index read"));
  IndexEntry entry;
  SPOOL_RETURN_IF_ERROR(
      internal::DecodeIndexEntry(value, &entry).WithContext("index entry " + id.ToString()));
  entry.info.id = id;
  return std::optional<IndexEntry>(std::move(entry));
}

StatusOr<std::vector<std::pair<int64_t, MessageId>>> Index::ScanDue(std::string_view queue,
                                                                    int64_t now_ms, size_t limit) {
  std::vector<std::pair<int64_t, MessageId>> out;
  std::string prefix(queue);
  prefix.push_back('\0');
  if (read_only_) {
    // A read-only view: scan the entries (database merged with the overlay) instead of
    // the schedule, which the overlay does not maintain.
    std::vector<std::pair<int64_t, MessageId>> due;
    SPOOL_RETURN_IF_ERROR(ForEach([&](const MessageId& id, const IndexEntry& e) {
      if (e.info.state == MessageState::kQueued && e.info.envelope.queue == queue &&
          e.info.next_attempt_ms <= now_ms) {
        due.emplace_back(e.info.next_attempt_ms, id);
      }
      return true;
    }));
    std::sort(due.begin(), due.end());
    for (size_t i = 0; i < due.size() && i < limit; ++i) out.push_back(due[i]);
    return out;
  }
  rocksdb::ReadOptions ro;
  SPOOL_ASSIGN_OR_RETURN(std::shared_ptr<Db> db, Use());
  std::unique_ptr<rocksdb::Iterator> it(db->db->NewIterator(ro, db->handles[kSchedule]));
  std::string scratch;  // the iterator's bytes are RocksDB's (util/tsan.h)
  for (it->Seek(prefix); it->Valid() && out.size() < limit; it->Next()) {
    const std::string_view k = LibraryOwnedBytes(it->key().data(), it->key().size(), &scratch);
    if (!k.starts_with(prefix)) break;
    uint64_t t = 0;
    for (int i = 0; i < 8; ++i) t = (t << 8) | static_cast<uint8_t>(k[prefix.size() + i]);
    const int64_t next_attempt_ms = static_cast<int64_t>(t ^ (uint64_t{1} << 63));
    // Compared as a time, not as a key bound: now_ms + 1 has no key when now_ms is the
    // largest time.
    if (next_attempt_ms > now_ms) break;
    out.emplace_back(next_attempt_ms, internal::IdFromKey(k.substr(prefix.size() + 8, 16)));
  }
  SPOOL_RETURN_IF_ERROR(FromRocks(it->status(), "index scan"));
  return out;
}

Status Index::ForEach(const std::function<bool(const MessageId&, const IndexEntry&)>& visit,
                      const MessageId* from) {
  const std::string start = from != nullptr ? internal::IdKey(*from) : std::string();
  std::map<std::string, std::optional<IndexEntry>> overlay;
  if (read_only_) {
    MutexLock l(&overlay_mu_);
    overlay = overlay_;
  }
  auto o = overlay.lower_bound(start);
  SPOOL_ASSIGN_OR_RETURN(std::shared_ptr<Db> db, Use());
  std::unique_ptr<rocksdb::Iterator> it(
      db->db->NewIterator(rocksdb::ReadOptions(), db->handles[kMessages]));
  if (from != nullptr) {
    it->Seek(start);
  } else {
    it->SeekToFirst();
  }
  // Merge the database with the overlay, the overlay winning.
  // The iterator's bytes are RocksDB's: read through LibraryOwnedBytes (util/tsan.h).
  std::string key_scratch, value_scratch;
  while (it->Valid() || o != overlay.end()) {
    std::string key;
    std::optional<IndexEntry> entry;
    if (it->Valid()) key = LibraryOwnedBytes(it->key().data(), it->key().size(), &key_scratch);
    const bool take_db = it->Valid() && (o == overlay.end() || key <= o->first);
    if (take_db) {
      if (o != overlay.end() && o->first == key) {
        entry = o->second;
        ++o;
      } else {
        IndexEntry e;
        SPOOL_RETURN_IF_ERROR(internal::DecodeIndexEntry(
            LibraryOwnedBytes(it->value().data(), it->value().size(), &value_scratch), &e));
        entry = std::move(e);
      }
      it->Next();
    } else {
      key = o->first;
      entry = o->second;
      ++o;
    }
    if (!entry) continue;
    const MessageId id = internal::IdFromKey(key);
    entry->info.id = id;
    if (!visit(id, *entry)) break;
  }
  return FromRocks(it->status(), "index scan");
}

StatusOr<log::Location> Index::Checkpoint() {
  if (read_only_) {
    MutexLock l(&overlay_mu_);
    if (overlay_checkpoint_) return *overlay_checkpoint_;
  }
  std::string value;
  SPOOL_ASSIGN_OR_RETURN(std::shared_ptr<Db> db, Use());
  rocksdb::Status s =
      db->db->Get(rocksdb::ReadOptions(), db->handles[kMeta], kCheckpointKey, &value);
  if (s.IsNotFound()) return log::Location{};
  SPOOL_RETURN_IF_ERROR(FromRocks(s, "index checkpoint read"));
  std::string_view in(value);
  log::Location loc;
  if (!internal::GetLocation(&in, &loc)) return CorruptionError("index checkpoint is malformed");
  return loc;
}

Status Index::Flush() {
  if (read_only_) return Status::Ok();
  rocksdb::FlushOptions fo;
  fo.wait = true;
  SPOOL_ASSIGN_OR_RETURN(std::shared_ptr<Db> db, Use());
  std::vector<rocksdb::ColumnFamilyHandle*> cfs(db->handles.begin() + 1, db->handles.end());
  return FromRocks(db->db->Flush(fo, cfs), "index flush");
}

Status Index::BackgroundError() const {
  if (healthy_.load()) return Status::Ok();  // asked at every admission: no lock
  SPOOL_ASSIGN_OR_RETURN(std::shared_ptr<Db> db, Use());
  MutexLock l(&db->listener->mu);
  return db->listener->status;
}

void Index::FailWritesForTest(Status status) {
  MutexLock l(&overlay_mu_);
  fail_writes_ = std::move(status);
}

Status Index::Resume() {
  if (read_only_) return Status::Ok();
  SPOOL_ASSIGN_OR_RETURN(std::shared_ptr<Db> db, Use());
  Status s = FromRocks(db->db->Resume(), "index resume");
  if (s.ok()) {
    MutexLock l(&db->listener->mu);
    db->listener->status = Status::Ok();
    healthy_.store(true);
  }
  return s;
}

}  // namespace spool::index
