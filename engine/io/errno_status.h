// The one boundary where errno values become Statuses: `-errno` turns into a Status here,
// in the I/O layer, and nowhere else.
//
// Classification (docs/errors.md, "The reply table"): ENOSPC and EDQUOT -> kStorageFull;
// EACCES, EPERM and EROFS -> kPermission; every other errno -> kIoError. The message reads
// "<what> <path>: <strerror> (<ENAME>)" for the operator's log.

#ifndef SPOOL_IO_ERRNO_STATUS_H_
#define SPOOL_IO_ERRNO_STATUS_H_

#include <string_view>

#include "spool/status.h"

namespace spool::io {

// REQUIRES: err > 0 (a positive errno value; pass -res for io_uring results).
Status ErrnoToStatus(int err, std::string_view what, std::string_view path);

// The classification alone.
Code CodeForErrno(int err);

// "ENOSPC", or "unknown errno" when the name is unknown (ErrnoToStatus then adds the
// number).
std::string_view ErrnoName(int err);

}  // namespace spool::io

#endif  // SPOOL_IO_ERRNO_STATUS_H_
