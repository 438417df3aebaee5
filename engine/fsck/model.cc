#include "fsck/model.h"

#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <optional>
#include <sstream>
#include <utility>

#include "index/replay.h"
#include "spool/message_id.h"

namespace spool::fsck {

using internal::IndexEntry;

std::string ReadSmallFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::set<Range> LoadKnownDamage(const std::string& dir) {
  std::set<Range> out;
  std::istringstream in(ReadSmallFile(dir + "/" + kDamageFile));
  std::string line;
  if (!std::getline(in, line) || line != kDamageHeader) return out;
  for (; std::getline(in, line);) {
    Range r;
    if (std::sscanf(line.c_str(), "%" SCNu64 " %" SCNu64 " %" SCNu64, &r.segment, &r.begin,
                    &r.end) == 3) {
      out.insert(r);
    }
  }
  return out;
}

Status WriteKnownDamage(io::FileSystem* fs, const std::string& dir, const std::set<Range>& ranges) {
  const std::string path = dir + "/" + kDamageFile;
  if (ranges.empty()) {
    SPOOL_ASSIGN_OR_RETURN(bool exists, fs->Exists(path));
    if (!exists) return Status::Ok();
    SPOOL_RETURN_IF_ERROR(fs->Unlink(path));
    return fs->SyncDir(dir);
  }
  std::string text = std::string(kDamageHeader) + "\n";
  for (const Range& r : ranges) {
    text += std::to_string(r.segment) + " " + std::to_string(r.begin) + " " +
            std::to_string(r.end) + "\n";
  }
  const std::string tmp = path + ".tmp";
  {
    SPOOL_ASSIGN_OR_RETURN(auto f, fs->Open(tmp, io::OpenOptions{.create = true}));
    SPOOL_RETURN_IF_ERROR(fs->Truncate(*f, 0));
    io::WriteOp op{0, text.data(), text.size()};
    SPOOL_RETURN_IF_ERROR(fs->WriteBatch(*f, {&op, 1}, io::Sync::kData));
  }
  SPOOL_RETURN_IF_ERROR(fs->Rename(tmp, path));
  return fs->SyncDir(dir);
}

void Model::Apply(const log::Record& r, bool* duplicate, Status* undecodable) {
  if (!internal::ChangesIndexEntry(r.type)) return;
  const std::string key = internal::IdKey(MessageId(r.id.hi, r.id.lo));
  auto it = live.find(key);
  std::optional<IndexEntry> current;
  if (it != live.end()) {
    current = it->second;
  } else if (r.type == log::RecordType::kStateUpdate) {
    return;  // removed later on, or relocated from a recycled segment
  }
  StatusOr<std::optional<IndexEntry>> next = internal::ReplayRecord(r, std::move(current));
  if (!next.ok()) {
    *undecodable = next.status();
    return;
  }
  if (it != live.end() && internal::IsOriginalMessage(r)) *duplicate = true;
  if (*next) {
    live[key] = std::move(**next);
  } else if (it != live.end()) {
    live.erase(it);
  }
  if (r.type == log::RecordType::kRemove) removed.insert(key);
  last_touch[key] = r.location;
}

}  // namespace spool::fsck
