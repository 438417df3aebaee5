#include "index/index.h"

#include <rocksdb/db.h>
#include <rocksdb/listener.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "spool/logging.h"

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

struct Index::Listener : public rocksdb::EventListener {
  void OnBackgroundError(rocksdb::BackgroundErrorReason, rocksdb::Status* error) override {
    MutexLock l(&mu);
    if (error != nullptr && !error->ok() && status.ok()) {
      status = FromRocks(*error, "index background work");
      Log(LogLevel::kError, status.ToString());
    }
  }
  void OnErrorRecoveryEnd(const rocksdb::BackgroundErrorRecoveryInfo& info) override {
    MutexLock l(&mu);
    if (info.new_bg_error.ok()) status = Status::Ok();
  }
  mutable Mutex mu;
  Status status ABSL_GUARDED_BY(mu);
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
    : index_(index), batch_(std::make_unique<rocksdb::WriteBatch>()) {}
Index::Batch::~Batch() = default;

void Index::Batch::Put(const IndexEntry& entry, const IndexEntry* old) {
  ++ops_;
  const std::string key = internal::IdKey(entry.info.id);
  if (index_.read_only_) {
    overlay_.emplace_back(key, entry);
    return;
  }
  if (old != nullptr) {
    const std::string old_sched = ScheduleKey(*old, old->info.id);
    if (!old_sched.empty()) batch_->Delete(index_.handles_[kSchedule], old_sched);
  }
  batch_->Put(index_.handles_[kMessages], key, internal::EncodeIndexEntry(entry));
  const std::string sched = ScheduleKey(entry, entry.info.id);
  if (!sched.empty()) batch_->Put(index_.handles_[kSchedule], sched, "");
}

void Index::Batch::Delete(const IndexEntry& old) {
  ++ops_;
  const std::string key = internal::IdKey(old.info.id);
  if (index_.read_only_) {
    overlay_.emplace_back(key, std::nullopt);
    return;
  }
  batch_->Delete(index_.handles_[kMessages], key);
  const std::string sched = ScheduleKey(old, old.info.id);
  if (!sched.empty()) batch_->Delete(index_.handles_[kSchedule], sched);
}

void Index::Batch::SetCheckpoint(const log::Location& end) { checkpoint_ = end; }

StatusOr<std::unique_ptr<Index>> Index::Open(const std::string& path, bool read_only) {
  std::unique_ptr<Index> index(new Index());
  index->path_ = path;
  index->read_only_ = read_only;
  index->listener_ = std::make_shared<Listener>();
  rocksdb::DBOptions db_options;
  db_options.create_if_missing = !read_only;
  db_options.create_missing_column_families = !read_only;
  // Flushes cut every column family at the same WriteBatch: the checkpoint in `meta`
  // always matches the other families' content.
  db_options.atomic_flush = true;
  db_options.listeners.push_back(index->listener_);
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
  rocksdb::DB* db = nullptr;
  rocksdb::Status s =
      read_only ? rocksdb::DB::OpenForReadOnly(db_options, path, families, &index->handles_, &db)
                : rocksdb::DB::Open(db_options, path, families, &index->handles_, &db);
  if (!s.ok()) return FromRocks(s, "open index " + path);
  index->db_.reset(db);
  return index;
}

Index::~Index() {
  if (db_ == nullptr) return;
  for (rocksdb::ColumnFamilyHandle* h : handles_) {
    db_->DestroyColumnFamilyHandle(h).PermitUncheckedError();  // closing anyway
  }
  db_->Close().PermitUncheckedError();  // nothing to do about it at shutdown
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
  if (batch.checkpoint_) {
    batch.batch_->Put(handles_[kMeta], kCheckpointKey, EncodeCheckpoint(*batch.checkpoint_));
  }
  rocksdb::WriteOptions wo;
  // The spool's log is the write-ahead log. SPOOL_INDEX_WAL=1 turns RocksDB's WAL on (no
  // sync) only to measure what it would cost: docs/design.md.
  static const bool wal = std::getenv("SPOOL_INDEX_WAL") != nullptr;
  wo.disableWAL = !wal;
  return FromRocks(db_->Write(wo, batch.batch_.get()), "index write");
}

StatusOr<std::optional<IndexEntry>> Index::Get(const MessageId& id) {
  const std::string key = internal::IdKey(id);
  if (read_only_) {
    MutexLock l(&overlay_mu_);
    auto it = overlay_.find(key);
    if (it != overlay_.end()) return it->second;
  }
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), handles_[kMessages], key, &value);
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
  std::string upper = prefix;
  PutFixed64BE(&upper, (static_cast<uint64_t>(now_ms) ^ (uint64_t{1} << 63)) + 1);
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
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, handles_[kSchedule]));
  for (it->Seek(prefix); it->Valid() && out.size() < limit; it->Next()) {
    rocksdb::Slice k = it->key();
    if (!k.starts_with(prefix) || k.compare(upper) >= 0) break;
    uint64_t t = 0;
    for (int i = 0; i < 8; ++i) t = (t << 8) | static_cast<uint8_t>(k.data()[prefix.size() + i]);
    out.emplace_back(static_cast<int64_t>(t ^ (uint64_t{1} << 63)),
                     internal::IdFromKey(std::string_view(k.data() + prefix.size() + 8, 16)));
  }
  SPOOL_RETURN_IF_ERROR(FromRocks(it->status(), "index scan"));
  return out;
}

Status Index::ForEach(const std::function<bool(const MessageId&, const IndexEntry&)>& visit) {
  std::map<std::string, std::optional<IndexEntry>> overlay;
  if (read_only_) {
    MutexLock l(&overlay_mu_);
    overlay = overlay_;
  }
  auto o = overlay.begin();
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions(), handles_[kMessages]));
  it->SeekToFirst();
  // Merge the database with the overlay, the overlay winning.
  while (it->Valid() || o != overlay.end()) {
    std::string key;
    std::optional<IndexEntry> entry;
    const bool take_db =
        it->Valid() && (o == overlay.end() || it->key().compare(rocksdb::Slice(o->first)) <= 0);
    if (take_db) {
      key = it->key().ToString();
      if (o != overlay.end() && o->first == key) {
        entry = o->second;
        ++o;
      } else {
        IndexEntry e;
        SPOOL_RETURN_IF_ERROR(internal::DecodeIndexEntry(
            std::string_view(it->value().data(), it->value().size()), &e));
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
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), handles_[kMeta], kCheckpointKey, &value);
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
  std::vector<rocksdb::ColumnFamilyHandle*> cfs(handles_.begin() + 1, handles_.end());
  return FromRocks(db_->Flush(fo, cfs), "index flush");
}

Status Index::BackgroundError() const {
  MutexLock l(&listener_->mu);
  return listener_->status;
}

void Index::FailWritesForTest(Status status) {
  MutexLock l(&overlay_mu_);
  fail_writes_ = std::move(status);
}

Status Index::Resume() {
  if (read_only_) return Status::Ok();
  Status s = FromRocks(db_->Resume(), "index resume");
  if (s.ok()) {
    MutexLock l(&listener_->mu);
    listener_->status = Status::Ok();
  }
  return s;
}

}  // namespace spool::index
