// spool_set_metadata (spool/c.h) over Spool::SetMetadata.

#include <string>
#include <string_view>

#include "capi/c_api_internal.h"
#include "spool/c.h"
#include "spool/spool.h"

static_assert(SPOOL_MAX_METADATA_SIZE == spool::kMaxMetadataSize,
              "SPOOL_MAX_METADATA_SIZE is spool::kMaxMetadataSize");

extern "C" int spool_set_metadata(spool_t* s, const char* id, const void* metadata,
                                  size_t metadata_len, spool_reply_t* err) {
  static const char kFn[] = "spool_set_metadata";
  return spool::capi::IdCall(
      kFn, s, id, err, [&](spool::Spool& sp, const spool::MessageId& m) -> spool::Status {
        if (metadata == nullptr && metadata_len != 0) {
          return spool::capi::Invalid(kFn, "metadata is NULL but metadata_len is not 0");
        }
        return sp.SetMetadata(m, spool::capi::BodyView(metadata, metadata_len));
      });
}
