#include "io/fault_file_system.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <optional>
#include <random>
#include <set>
#include <utility>

#include "io/errno_status.h"

namespace spool::io {
namespace {

// Map keys and directory names: "a/./b/" and "a/b" name the same file.
std::string NormalizePath(std::string_view path) {
  std::string normal = std::filesystem::path(path).lexically_normal().string();
  while (normal.size() > 1 && normal.back() == '/') normal.pop_back();
  return normal;
}

// The directory whose SyncDir makes a change to the entry `key` durable.
std::string DirOf(const std::string& key) {
  std::string parent = std::filesystem::path(key).parent_path().string();
  return parent.empty() ? std::string(".") : parent;
}

// True if `key` is `dir` itself or lies below it.
bool IsAtOrUnder(const std::string& key, const std::string& dir) {
  return key == dir || (key.size() > dir.size() && key.compare(0, dir.size(), dir) == 0 &&
                        key[dir.size()] == '/');
}

uint64_t AlignDown(uint64_t value, uint64_t alignment) { return value / alignment * alignment; }

uint64_t AlignUp(uint64_t value, uint64_t alignment) {
  return (value + alignment - 1) / alignment * alignment;
}

struct FreeDeleter {
  void operator()(std::byte* p) const { std::free(p); }
};

// What a torn sector ends up holding.
enum class SectorFate { kNew = 0, kOld = 1, kGarbage = 2 };
constexpr int kSectorFateCount = 3;

}  // namespace

// One write made since the file's last good sync, with what it overwrote.
struct UnsyncedWrite {
  uint64_t offset = 0;
  uint64_t size = 0;
  // The old bytes of [offset, offset + old_bytes.size()); shorter than `size` when the
  // write went past the end of the file (nothing to restore there: the size is restored).
  std::string old_bytes;
};

// The history of one file (one inode, whatever its name), shared by every FaultFile open on
// it and by the name-space changes that may bring it back.
struct FaultFileSystem::FileState {
  // Serializes pre-image read, write and sync bookkeeping of this file, so that the old
  // bytes read are the ones the write replaces and a sync covers exactly what it flushed.
  Mutex io_mu;
  // The fields below are guarded by FaultFileSystem::mu_ (an annotation cannot name it).
  std::string path;  // current normalized path (the last one, once unlinked)
  // The size at the last good sync; set by the first write after it.
  std::optional<uint64_t> synced_size;
  std::vector<UnsyncedWrite> writes;  // oldest first
};

// A name-space change not yet made durable by SyncDir.
struct FaultFileSystem::DirOp {
  enum class Type { kCreate, kRename, kUnlink };
  Type type = Type::kCreate;
  std::string path;                    // the created or unlinked file; the source of a rename
  std::string to;                      // the target of a rename
  std::set<std::string> pending_dirs;  // directories still to be synced
  // kUnlink, or a kRename that replaced an existing file: the content of the file that
  // disappeared, to recreate it on crash, and its history (may be null).
  bool restorable = false;
  std::string content;
  std::shared_ptr<FileState> state;
};

class FaultFileSystem::FaultFile final : public File {
 public:
  FaultFile(const std::string& path, const OpenOptions& options, std::unique_ptr<File> base,
            std::shared_ptr<FileState> state, uint64_t epoch)
      : File(path, options), base_(std::move(base)), state_(std::move(state)), epoch_(epoch) {}

  File& base() { return *base_; }
  FileState& state() const { return *state_; }
  uint64_t epoch() const { return epoch_; }

 private:
  const std::unique_ptr<File> base_;
  const std::shared_ptr<FileState> state_;
  const uint64_t epoch_;
};

FaultFileSystem::FaultFileSystem(FileSystem* base)
    : base_(base), name_("fault(" + std::string(base->Name()) + ")") {}

FaultFileSystem::~FaultFileSystem() = default;

std::string_view FaultFileSystem::Name() const { return name_; }

// --- Counting and injection ---

uint64_t FaultFileSystem::Count(OpKind kind) const {
  MutexLock lock(&mu_);
  return counts_[static_cast<int>(kind)];
}

void FaultFileSystem::FailNth(OpKind kind, uint64_t n, int err, bool sticky) {
  MutexLock lock(&mu_);
  Rule& rule = rules_[static_cast<int>(kind)];
  rule.armed = true;
  rule.n = n;
  rule.seen = 0;
  rule.err = err;
  rule.sticky = sticky;
}

void FaultFileSystem::ClearFaults() {
  MutexLock lock(&mu_);
  rules_.fill(Rule{});
}

void FaultFileSystem::SetFailPathFilter(std::string substring) {
  MutexLock lock(&mu_);
  path_filter_ = std::move(substring);
}

void FaultFileSystem::set_partial_failed_writes(bool partial) {
  MutexLock lock(&mu_);
  partial_failed_writes_ = partial;
}

bool FaultFileSystem::crashed() const {
  MutexLock lock(&mu_);
  return crashed_;
}

uint64_t FaultFileSystem::UnsyncedBytes() const {
  MutexLock lock(&mu_);
  uint64_t total = 0;
  for (const auto& [path, state] : files_) {
    for (const UnsyncedWrite& write : state->writes) total += write.size;
  }
  return total;
}

bool FaultFileSystem::PathMatchesFilter(std::string_view path) const {
  return path_filter_.empty() || path.find(path_filter_) != std::string_view::npos;
}

Status FaultFileSystem::BeginOpLocked(OpKind kind, std::string_view path, std::string_view path2,
                                      bool* injected) {
  *injected = false;
  const int index = static_cast<int>(kind);
  ++counts_[index];
  if (crashed_) {
    return IoError("simulated crash: " + std::string(OpKindName(kind)) + " " + std::string(path));
  }
  Rule& rule = rules_[index];
  if (!rule.armed) return Status::Ok();
  if (!PathMatchesFilter(path) && (path2.empty() || !PathMatchesFilter(path2))) {
    return Status::Ok();
  }
  ++rule.seen;
  if (rule.seen < rule.n) return Status::Ok();
  if (!rule.sticky) rule.armed = false;
  *injected = true;
  return ErrnoToStatus(rule.err, std::string(OpKindName(kind)) + " (injected)", path);
}

Status FaultFileSystem::BeginOp(OpKind kind, std::string_view path, std::string_view path2) {
  MutexLock lock(&mu_);
  bool injected;
  return BeginOpLocked(kind, path, path2, &injected);
}

Status FaultFileSystem::BeginFileOp(OpKind kind, const FaultFile& file, bool* injected) {
  MutexLock lock(&mu_);
  if (file.epoch() != epoch_ && !crashed_) {
    *injected = false;
    ++counts_[static_cast<int>(kind)];
    return IoError("file opened before a simulated crash: " + file.path());
  }
  return BeginOpLocked(kind, file.state().path, {}, injected);
}

Status FaultFileSystem::CheckNotCrashed(std::string_view what, std::string_view path) const {
  MutexLock lock(&mu_);
  if (crashed_) return IoError("simulated crash: " + std::string(what) + " " + std::string(path));
  return Status::Ok();
}

// --- Data ---

Status FaultFileSystem::RecordPreImage(FaultFile& file, const WriteOp& op) {
  FileState& state = file.state();
  bool need_size;
  {
    MutexLock lock(&mu_);
    need_size = !state.synced_size.has_value();
  }
  std::optional<uint64_t> synced_size;
  if (need_size) {
    SPOOL_ASSIGN_OR_RETURN(synced_size, base_->Size(file.base()));
  }

  UnsyncedWrite write;
  write.offset = op.offset;
  write.size = op.size;
  if (op.size > 0) {
    size_t bytes_read = 0;
    if (file.options().direct) {
      // O_DIRECT reads need an aligned buffer; the write's own range is aligned already.
      const size_t capacity = AlignUp(op.size, kDirectIoAlignment);
      std::unique_ptr<std::byte, FreeDeleter> buffer(
          static_cast<std::byte*>(std::aligned_alloc(kDirectIoAlignment, capacity)));
      if (buffer == nullptr) return InternalError("out of memory for a pre-image");
      SPOOL_RETURN_IF_ERROR(base_->Read(file.base(), op.offset,
                                        std::span<std::byte>(buffer.get(), op.size), &bytes_read));
      write.old_bytes.assign(reinterpret_cast<const char*>(buffer.get()), bytes_read);
    } else {
      write.old_bytes.resize(op.size);
      SPOOL_RETURN_IF_ERROR(base_->Read(
          file.base(), op.offset,
          std::span<std::byte>(reinterpret_cast<std::byte*>(write.old_bytes.data()), op.size),
          &bytes_read));
      write.old_bytes.resize(bytes_read);
    }
  }

  MutexLock lock(&mu_);
  if (!state.synced_size.has_value()) state.synced_size = synced_size;
  state.writes.push_back(std::move(write));
  return Status::Ok();
}

void FaultFileSystem::MarkSynced(FileState& state) {
  MutexLock lock(&mu_);
  state.writes.clear();
  state.synced_size.reset();
}

Status FaultFileSystem::WriteTracked(FaultFile& file, std::span<const WriteOp> ops, Sync sync) {
  // O_DSYNC writes are durable when they complete: nothing to undo.
  if (!file.options().dsync) {
    for (const WriteOp& op : ops) SPOOL_RETURN_IF_ERROR(RecordPreImage(file, op));
  }
  Status status = base_->WriteBatch(file.base(), ops, sync);
  if (status.ok() && sync == Sync::kData) MarkSynced(file.state());
  return status;
}

StatusOr<std::unique_ptr<File>> FaultFileSystem::Open(const std::string& path,
                                                      const OpenOptions& options) {
  ReaderMutexLock gate(&gate_);
  SPOOL_RETURN_IF_ERROR(BeginOp(OpKind::kOpen, path));
  bool created = false;
  if (options.create) {
    SPOOL_ASSIGN_OR_RETURN(bool existed, base_->Exists(path));
    created = !existed;
  }
  SPOOL_ASSIGN_OR_RETURN(std::unique_ptr<File> base_file, base_->Open(path, options));

  const std::string key = NormalizePath(path);
  MutexLock lock(&mu_);
  std::shared_ptr<FileState>& state = files_[key];
  if (state == nullptr || created) state = std::make_shared<FileState>();
  state->path = key;
  if (created) {
    DirOp op;
    op.type = DirOp::Type::kCreate;
    op.path = key;
    op.pending_dirs.insert(DirOf(key));
    dir_ops_.push_back(std::move(op));
  }
  return std::unique_ptr<File>(
      std::make_unique<FaultFile>(path, options, std::move(base_file), state, epoch_));
}

Status FaultFileSystem::WriteBatch(File& file, std::span<const WriteOp> ops, Sync sync) {
  ReaderMutexLock gate(&gate_);
  auto& fault_file = static_cast<FaultFile&>(file);
  MutexLock io(&fault_file.state().io_mu);

  size_t allowed = 0;
  bool injected = false;
  Status failure;
  for (; allowed < ops.size(); ++allowed) {
    failure = BeginFileOp(OpKind::kWrite, fault_file, &injected);
    if (!failure.ok()) break;
  }
  if (failure.ok()) {
    if (sync == Sync::kData) {
      Status sync_failure = BeginFileOp(OpKind::kSync, fault_file, &injected);
      if (!sync_failure.ok()) {
        if (!injected) return sync_failure;
        // Linux after a failed fsync: the writes reached the page cache, not the disk.
        SPOOL_RETURN_IF_ERROR(WriteTracked(fault_file, ops, Sync::kNone));
        return sync_failure;
      }
    }
    return WriteTracked(fault_file, ops, sync);
  }
  if (!injected) return failure;

  // An injected write failure: the earlier ops of the batch went through, the failing one
  // not at all or half, and no sync followed.
  std::vector<WriteOp> done(ops.begin(), ops.begin() + allowed);
  bool partial;
  {
    MutexLock lock(&mu_);
    partial = partial_failed_writes_;
  }
  if (partial) {
    WriteOp half = ops[allowed];
    half.size /= 2;
    if (file.options().direct) half.size = AlignDown(half.size, kDirectIoAlignment);
    if (half.size > 0) done.push_back(half);
  }
  if (!done.empty()) {
    // The injected error is the one to report; a real error of the prefix adds nothing.
    WriteTracked(fault_file, done, Sync::kNone).IgnoreError();
  }
  return failure;
}

Status FaultFileSystem::SyncData(File& file) {
  ReaderMutexLock gate(&gate_);
  auto& fault_file = static_cast<FaultFile&>(file);
  MutexLock io(&fault_file.state().io_mu);
  bool injected;
  SPOOL_RETURN_IF_ERROR(BeginFileOp(OpKind::kSync, fault_file, &injected));
  Status status = base_->SyncData(fault_file.base());
  if (status.ok()) MarkSynced(fault_file.state());
  return status;
}

Status FaultFileSystem::Read(File& file, uint64_t offset, std::span<std::byte> out,
                             size_t* bytes_read) {
  ReaderMutexLock gate(&gate_);
  auto& fault_file = static_cast<FaultFile&>(file);
  bool injected;
  SPOOL_RETURN_IF_ERROR(BeginFileOp(OpKind::kRead, fault_file, &injected));
  return base_->Read(fault_file.base(), offset, out, bytes_read);
}

StatusOr<uint64_t> FaultFileSystem::Size(File& file) {
  ReaderMutexLock gate(&gate_);
  auto& fault_file = static_cast<FaultFile&>(file);
  {
    MutexLock lock(&mu_);
    if (crashed_) return IoError("simulated crash: size " + file.path());
    if (fault_file.epoch() != epoch_) {
      return IoError("file opened before a simulated crash: " + file.path());
    }
  }
  return base_->Size(fault_file.base());
}

Status FaultFileSystem::ZeroFill(File& file, uint64_t size) {
  ReaderMutexLock gate(&gate_);
  auto& fault_file = static_cast<FaultFile&>(file);
  MutexLock io(&fault_file.state().io_mu);
  bool injected;
  SPOOL_RETURN_IF_ERROR(BeginFileOp(OpKind::kZeroFill, fault_file, &injected));
  // ZeroFill syncs the data, so it also makes every earlier write durable.
  Status status = base_->ZeroFill(fault_file.base(), size);
  if (status.ok()) MarkSynced(fault_file.state());
  return status;
}

Status FaultFileSystem::Truncate(File& file, uint64_t size) {
  ReaderMutexLock gate(&gate_);
  auto& fault_file = static_cast<FaultFile&>(file);
  MutexLock io(&fault_file.state().io_mu);
  bool injected;
  SPOOL_RETURN_IF_ERROR(BeginFileOp(OpKind::kTruncate, fault_file, &injected));
  // Truncate fsyncs, so it also makes every earlier write durable.
  Status status = base_->Truncate(fault_file.base(), size);
  if (status.ok()) MarkSynced(fault_file.state());
  return status;
}

// --- Name space ---

StatusOr<std::string> FaultFileSystem::ReadWholeFile(const std::string& path) {
  OpenOptions options;
  options.read_only = true;
  SPOOL_ASSIGN_OR_RETURN(std::unique_ptr<File> file, base_->Open(path, options));
  SPOOL_ASSIGN_OR_RETURN(uint64_t size, base_->Size(*file));
  std::string content(size, '\0');
  size_t bytes_read = 0;
  SPOOL_RETURN_IF_ERROR(base_->Read(
      *file, 0, std::span<std::byte>(reinterpret_cast<std::byte*>(content.data()), size),
      &bytes_read));
  content.resize(bytes_read);
  return content;
}

Status FaultFileSystem::WriteWholeFile(const std::string& path, const std::string& content) {
  OpenOptions options;
  options.create = true;
  SPOOL_ASSIGN_OR_RETURN(std::unique_ptr<File> file, base_->Open(path, options));
  SPOOL_RETURN_IF_ERROR(base_->Truncate(*file, 0));
  const WriteOp op{0, content.data(), content.size()};
  return base_->WriteBatch(*file, std::span<const WriteOp>(&op, 1), Sync::kData);
}

void FaultFileSystem::MovePaths(const std::string& from, const std::string& to) {
  std::vector<std::pair<std::string, std::shared_ptr<FileState>>> moved;
  for (auto it = files_.lower_bound(from); it != files_.end() && it->first.starts_with(from);) {
    if (IsAtOrUnder(it->first, from)) {
      moved.emplace_back(to + it->first.substr(from.size()), std::move(it->second));
      it = files_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& [key, state] : moved) {
    state->path = key;
    files_[key] = std::move(state);
  }
}

Status FaultFileSystem::Rename(const std::string& from, const std::string& to) {
  ReaderMutexLock gate(&gate_);
  SPOOL_RETURN_IF_ERROR(BeginOp(OpKind::kRename, from, to));
  const std::string from_key = NormalizePath(from);
  const std::string to_key = NormalizePath(to);
  if (from_key == to_key) return base_->Rename(from, to);

  // A rename over an existing file destroys it; keep its content to bring it back.
  std::optional<std::string> replaced;
  SPOOL_ASSIGN_OR_RETURN(bool target_exists, base_->Exists(to));
  if (target_exists) {
    StatusOr<std::string> content = ReadWholeFile(to);
    // Unreadable (a directory, no permission): the rename cannot be undone on crash.
    if (content.ok()) replaced = std::move(content).value();
  }
  SPOOL_RETURN_IF_ERROR(base_->Rename(from, to));

  MutexLock lock(&mu_);
  DirOp op;
  op.type = DirOp::Type::kRename;
  op.path = from_key;
  op.to = to_key;
  op.pending_dirs = {DirOf(from_key), DirOf(to_key)};
  if (replaced.has_value()) {
    op.restorable = true;
    op.content = std::move(*replaced);
    auto it = files_.find(to_key);
    if (it != files_.end()) {
      op.state = std::move(it->second);
      files_.erase(it);
    }
  }
  MovePaths(from_key, to_key);
  dir_ops_.push_back(std::move(op));
  return Status::Ok();
}

Status FaultFileSystem::SyncDir(const std::string& dir) {
  ReaderMutexLock gate(&gate_);
  SPOOL_RETURN_IF_ERROR(BeginOp(OpKind::kSyncDir, dir));
  SPOOL_RETURN_IF_ERROR(base_->SyncDir(dir));
  const std::string key = NormalizePath(dir);
  MutexLock lock(&mu_);
  for (DirOp& op : dir_ops_) op.pending_dirs.erase(key);
  std::erase_if(dir_ops_, [](const DirOp& op) { return op.pending_dirs.empty(); });
  return Status::Ok();
}

Status FaultFileSystem::Unlink(const std::string& path) {
  ReaderMutexLock gate(&gate_);
  SPOOL_RETURN_IF_ERROR(BeginOp(OpKind::kUnlink, path));
  // Unreadable (missing, a directory, no permission): the unlink cannot be undone on crash.
  StatusOr<std::string> content = ReadWholeFile(path);
  SPOOL_RETURN_IF_ERROR(base_->Unlink(path));

  const std::string key = NormalizePath(path);
  MutexLock lock(&mu_);
  DirOp op;
  op.type = DirOp::Type::kUnlink;
  op.path = key;
  op.pending_dirs.insert(DirOf(key));
  auto it = files_.find(key);
  if (it != files_.end()) {
    op.state = std::move(it->second);
    files_.erase(it);
  }
  if (content.ok()) {
    op.restorable = true;
    op.content = std::move(content).value();
    dir_ops_.push_back(std::move(op));
  }
  return Status::Ok();
}

Status FaultFileSystem::CreateDir(const std::string& path) {
  ReaderMutexLock gate(&gate_);
  SPOOL_RETURN_IF_ERROR(BeginOp(OpKind::kCreateDir, path));
  return base_->CreateDir(path);
}

StatusOr<std::vector<std::string>> FaultFileSystem::ListDir(const std::string& dir) {
  ReaderMutexLock gate(&gate_);
  SPOOL_RETURN_IF_ERROR(BeginOp(OpKind::kListDir, dir));
  return base_->ListDir(dir);
}

StatusOr<bool> FaultFileSystem::Exists(const std::string& path) {
  ReaderMutexLock gate(&gate_);
  SPOOL_RETURN_IF_ERROR(CheckNotCrashed("exists", path));
  return base_->Exists(path);
}

StatusOr<SpaceInfo> FaultFileSystem::GetSpace(const std::string& path) {
  ReaderMutexLock gate(&gate_);
  SPOOL_RETURN_IF_ERROR(BeginOp(OpKind::kSpace, path));
  return base_->GetSpace(path);
}

StatusOr<std::unique_ptr<FileLock>> FaultFileSystem::LockFile(const std::string& path,
                                                              std::string_view holder) {
  ReaderMutexLock gate(&gate_);
  SPOOL_RETURN_IF_ERROR(BeginOp(OpKind::kLock, path));
  return base_->LockFile(path, holder);
}

// --- Simulated power loss ---

Status FaultFileSystem::UndoDirOp(DirOp& op) {
  switch (op.type) {
    case DirOp::Type::kCreate: {
      files_.erase(op.path);
      SPOOL_ASSIGN_OR_RETURN(bool exists, base_->Exists(op.path));
      if (!exists) return Status::Ok();
      return base_->Unlink(op.path);
    }
    case DirOp::Type::kRename: {
      SPOOL_RETURN_IF_ERROR(base_->Rename(op.to, op.path));
      MovePaths(op.to, op.path);
      if (!op.restorable) return Status::Ok();
      if (op.state != nullptr) {
        op.state->path = op.to;
        files_[op.to] = op.state;
      }
      return WriteWholeFile(op.to, op.content);
    }
    case DirOp::Type::kUnlink: {
      if (op.state != nullptr) {
        op.state->path = op.path;
        files_[op.path] = op.state;
      }
      return WriteWholeFile(op.path, op.content);
    }
  }
  return InternalError("unknown name-space change");
}

Status FaultFileSystem::UndoWrites(FileState& state, CrashMode mode, std::mt19937_64& rng) {
  SPOOL_ASSIGN_OR_RETURN(std::unique_ptr<File> file, base_->Open(state.path, OpenOptions{}));
  const uint64_t synced_size = state.synced_size.value_or(0);
  uint64_t final_size = synced_size;
  std::uniform_int_distribution<int> fate_dist(0, kSectorFateCount - 1);
  std::uniform_int_distribution<int> byte_dist(0, 255);

  // Newest first: each undo restores what the write replaced, which older undos then see.
  for (auto it = state.writes.rbegin(); it != state.writes.rend(); ++it) {
    const UnsyncedWrite& write = *it;
    const uint64_t end = write.offset + write.size;
    const uint64_t old_end = write.offset + write.old_bytes.size();
    std::vector<WriteOp> ops;
    std::deque<std::string> buffers;  // stable addresses for the ops' data

    auto restore_old = [&](uint64_t from, uint64_t to) {
      if (from < old_end) {
        const uint64_t stop = std::min(to, old_end);
        ops.push_back(WriteOp{from, write.old_bytes.data() + (from - write.offset),
                              static_cast<size_t>(stop - from)});
        from = stop;
      }
      // Past the old end of file: nothing was there. Zeros stand for the hole in case a
      // surviving later sector keeps the size beyond it; otherwise the truncate drops them.
      if (from < to && mode == CrashMode::kTearUnsynced) {
        buffers.emplace_back(to - from, '\0');
        ops.push_back(WriteOp{from, buffers.back().data(), buffers.back().size()});
      }
    };

    if (mode == CrashMode::kDropUnsynced) {
      restore_old(write.offset, end);
    } else {
      for (uint64_t pos = write.offset; pos < end;) {
        const uint64_t sector_end = std::min(end, AlignDown(pos, kSectorSize) + kSectorSize);
        switch (static_cast<SectorFate>(fate_dist(rng))) {
          case SectorFate::kNew:
            final_size = std::max(final_size, sector_end);
            break;
          case SectorFate::kOld:
            restore_old(pos, sector_end);
            break;
          case SectorFate::kGarbage: {
            std::string& garbage = buffers.emplace_back(sector_end - pos, '\0');
            for (char& c : garbage) c = static_cast<char>(byte_dist(rng));
            ops.push_back(WriteOp{pos, garbage.data(), garbage.size()});
            final_size = std::max(final_size, sector_end);
            break;
          }
        }
        pos = sector_end;
      }
    }
    if (!ops.empty()) SPOOL_RETURN_IF_ERROR(base_->WriteBatch(*file, ops, Sync::kNone));
  }

  SPOOL_ASSIGN_OR_RETURN(uint64_t size, base_->Size(*file));
  if (size != final_size) SPOOL_RETURN_IF_ERROR(base_->Truncate(*file, final_size));
  return base_->SyncData(*file);
}

Status FaultFileSystem::SimulateCrash(CrashMode mode, uint64_t seed) {
  WriterMutexLock gate(&gate_);
  MutexLock lock(&mu_);
  if (crashed_) return FailedPreconditionError("SimulateCrash: already crashed");
  crashed_ = true;
  ++epoch_;

  Status first_error;
  auto note = [&first_error](const Status& status) {
    if (first_error.ok() && !status.ok()) first_error = status;
  };
  // Name-space changes first, newest first, so that every tracked file is back under its
  // durable name (unlinked and replaced files recreated) before its writes are undone.
  for (auto it = dir_ops_.rbegin(); it != dir_ops_.rend(); ++it) {
    note(UndoDirOp(*it).WithContext("simulated crash: undo name-space change"));
  }
  dir_ops_.clear();

  // One generator for the whole crash, files in path order: the same seed tears the same
  // history the same way.
  std::mt19937_64 rng(seed);
  for (auto& [path, state] : files_) {
    if (state->writes.empty()) continue;
    note(UndoWrites(*state, mode, rng).WithContext("simulated crash: undo writes"));
  }
  files_.clear();
  return first_error;
}

void FaultFileSystem::ResetAfterCrash() {
  WriterMutexLock gate(&gate_);
  MutexLock lock(&mu_);
  crashed_ = false;
  ++epoch_;
  files_.clear();
  dir_ops_.clear();
  rules_.fill(Rule{});
  path_filter_.clear();
}

}  // namespace spool::io
