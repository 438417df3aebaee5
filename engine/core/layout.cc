#include "core/layout.h"

#include <cstdio>

namespace spool::internal {

Status ReadMarker(io::FileSystem* fs, const std::string& dir, Marker* marker) {
  const std::string path = dir + "/" + kMarkerFile;
  SPOOL_ASSIGN_OR_RETURN(auto f, fs->Open(path, io::OpenOptions{.read_only = true}));
  std::string text(4096, '\0');
  size_t got = 0;
  SPOOL_RETURN_IF_ERROR(
      fs->Read(*f, 0, {reinterpret_cast<std::byte*>(text.data()), text.size()}, &got));
  text.resize(got);
  int version = 0;
  unsigned long long id = 0, seg_size = 0;
  unsigned shard = 0;
  const int fields =
      std::sscanf(text.c_str(), "spool format %d\nspool id %llu\nshard %u\nsegment size %llu",
                  &version, &id, &shard, &seg_size);
  if (fields < 3) {
    return FailedPreconditionError(dir + " is not a spool: " + path + " is unreadable");
  }
  if (version > kMarkerVersion) {
    return FailedPreconditionError(dir + " was written by spool format " + std::to_string(version) +
                                   ", newer than this build's " + std::to_string(kMarkerVersion));
  }
  marker->version = version;
  marker->spool_id = id;
  marker->shard = shard;
  // The segment size is the spool's, fixed at creation; options only choose it then.
  if (fields == 4 && seg_size >= (1ull << 20) && seg_size % log::kBlockSize == 0) {
    marker->segment_size = seg_size;
  }
  return Status::Ok();
}

}  // namespace spool::internal
