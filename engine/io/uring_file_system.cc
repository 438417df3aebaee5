#include "io/uring_file_system.h"

#include <liburing.h>

#include <algorithm>
#include <cerrno>
#include <deque>
#include <string>
#include <utility>

#include "io/errno_status.h"

namespace spool::io {
namespace {

// user_data of the fsync SQE; writes carry their piece index, which is always smaller.
constexpr uint64_t kSyncTag = ~uint64_t{0};

// Longest read or write of one SQE: the SQE length is 32 bits and a CQE result is an int,
// so longer ops are split into pieces of at most this many bytes (a multiple of
// kDirectIoAlignment, so the pieces of an O_DIRECT op stay aligned).
constexpr size_t kMaxSqeBytes = size_t{1} << 30;

// Rounds in a row that may end without any progress (every write cancelled or
// interrupted, the sync cancelled) before the call gives up instead of spinning.
constexpr int kMaxStalledRounds = 16;

// True for a result that says an SQE did not run and may simply be submitted again:
// cancelled because an earlier SQE of its link chain ended short, or interrupted.
bool IsResubmittable(int res) { return res == -ECANCELED || res == -EINTR || res == -EAGAIN; }

}  // namespace

// One io_uring instance, owned by one call at a time. Thread-compatible.
class UringFileSystem::Ring {
 public:
  static StatusOr<std::unique_ptr<Ring>> Create(unsigned entries, std::string_view path) {
    auto ring = std::unique_ptr<Ring>(new Ring());
    const int ret = io_uring_queue_init(entries, &ring->ring_, 0);
    if (ret < 0) return ErrnoToStatus(-ret, "io_uring_queue_init for", path);
    ring->initialized_ = true;
    return ring;
  }
  ~Ring() {
    if (initialized_) io_uring_queue_exit(&ring_);
  }
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;

  io_uring* get() { return &ring_; }

 private:
  Ring() = default;

  io_uring ring_{};
  bool initialized_ = false;
};

// A ring taken from the pool for the length of one call. It goes back to the pool on
// destruction unless Discard() said its state is unknown (SQEs left unsubmitted or CQEs
// unreaped after a failed io_uring_enter), in which case it is closed.
class UringFileSystem::RingLease {
 public:
  RingLease(UringFileSystem* fs, std::unique_ptr<Ring> ring) : fs_(fs), ring_(std::move(ring)) {}
  ~RingLease() {
    if (!discarded_) fs_->ReleaseRing(std::move(ring_));
  }
  RingLease(const RingLease&) = delete;
  RingLease& operator=(const RingLease&) = delete;

  io_uring* ring() { return ring_->get(); }
  void Discard() { discarded_ = true; }

 private:
  UringFileSystem* const fs_;
  std::unique_ptr<Ring> ring_;
  bool discarded_ = false;
};

namespace {

// Submits the `prepared` SQEs queued on `ring`, waits until every submitted one has
// completed and calls on_cqe(user_data, res) for each. On OK every SQE was submitted and
// reaped, and the ring is empty again. On an error of io_uring_enter itself, *broken is
// set: SQEs may be left unsubmitted or CQEs unreaped, so the ring must not be reused.
template <typename OnCqe>
Status SubmitAndReap(io_uring* ring, unsigned prepared, std::string_view path, bool* broken,
                     OnCqe&& on_cqe) {
  Status status;
  unsigned submitted = 0;
  while (submitted < prepared) {
    // Waits for the completions as well when the kernel took every SQE; a partial
    // submission returns at once and the rest is submitted on the next turn.
    const int ret = io_uring_submit_and_wait(ring, prepared - submitted);
    if (ret == -EINTR) continue;
    if (ret < 0) {
      status = ErrnoToStatus(-ret, "io_uring_submit for", path);
      *broken = true;
      break;
    }
    if (ret == 0) {
      status = InternalError("io_uring_submit for " + std::string(path) + " took no SQE");
      *broken = true;
      break;
    }
    submitted += static_cast<unsigned>(ret);
  }
  // Reap what was submitted even after a submission error: the kernel may still be reading
  // the caller's buffers until their CQEs arrive.
  for (unsigned reaped = 0; reaped < submitted;) {
    io_uring_cqe* cqe = nullptr;
    const int ret = io_uring_wait_cqe(ring, &cqe);
    if (ret == -EINTR) continue;
    if (ret < 0) {
      *broken = true;
      if (status.ok()) status = ErrnoToStatus(-ret, "io_uring_wait_cqe for", path);
      return status;
    }
    on_cqe(io_uring_cqe_get_data64(cqe), cqe->res);
    io_uring_cqe_seen(ring, cqe);
    ++reaped;
  }
  return status;
}

}  // namespace

// A call starts with an empty ring and never queues more SQEs than the ring holds, so a
// full submission queue is a bug; the ring (which may hold SQEs prepared so far) is closed.
Status UringFileSystem::NoSqe(RingLease& lease, std::string_view path) {
  lease.Discard();
  return InternalError("io_uring submission queue unexpectedly full for " + std::string(path));
}

UringFileSystem::UringFileSystem(unsigned ring_entries)
    : ring_entries_(std::max(ring_entries, 2u)) {}

UringFileSystem::~UringFileSystem() = default;

StatusOr<std::unique_ptr<UringFileSystem::Ring>> UringFileSystem::AcquireRing(
    std::string_view path) {
  {
    MutexLock lock(&mu_);
    if (!idle_rings_.empty()) {
      std::unique_ptr<Ring> ring = std::move(idle_rings_.back());
      idle_rings_.pop_back();
      return ring;
    }
  }
  // Created outside the lock: io_uring_setup and its mmaps need not serialize callers.
  return Ring::Create(ring_entries_, path);
}

void UringFileSystem::ReleaseRing(std::unique_ptr<Ring> ring) {
  {
    MutexLock lock(&mu_);
    if (idle_rings_.size() < kMaxIdleRings) {
      idle_rings_.push_back(std::move(ring));
      return;
    }
  }
  // `ring` is closed here, outside the lock.
}

Status UringFileSystem::WriteBatch(File& file, std::span<const WriteOp> ops, Sync sync) {
  SPOOL_ASSIGN_OR_RETURN(PosixFile * posix, AsPosixFile(file));
  const std::string& path = file.path();

  // What is left to write of each op, split so that every piece fits one SQE.
  struct Piece {
    uint64_t offset;
    const char* data;
    size_t remaining;
  };
  std::vector<Piece> pieces;
  pieces.reserve(ops.size());
  for (const WriteOp& op : ops) {
    const auto* data = static_cast<const char*>(op.data);
    for (size_t done = 0; done < op.size;) {
      const size_t n = std::min(op.size - done, kMaxSqeBytes);
      pieces.push_back(Piece{op.offset + done, data + done, n});
      done += n;
    }
  }
  std::deque<size_t> to_submit;  // indices into `pieces`
  for (size_t i = 0; i < pieces.size(); ++i) to_submit.push_back(i);
  bool sync_pending = sync == Sync::kData;
  if (to_submit.empty() && !sync_pending) return Status::Ok();

  SPOOL_ASSIGN_OR_RETURN(std::unique_ptr<Ring> acquired, AcquireRing(path));
  RingLease lease(this, std::move(acquired));
  io_uring* ring = lease.ring();
  const int fd = posix->fd();

  Status status;
  int stalled_rounds = 0;
  int last_retry_errno = 0;
  while (!to_submit.empty() || sync_pending) {
    // The sync goes in the round that holds every write still to do, linked behind them:
    // the kernel starts it only after they all completed, and cancels it if one fails or
    // ends short. Rounds before it (a batch longer than the ring) are independent SQEs at
    // full queue depth, and complete before the sync's round is submitted.
    const bool sync_round = sync_pending && to_submit.size() + 1 <= ring_entries_;
    const size_t writes = std::min<size_t>(to_submit.size(), ring_entries_);
    unsigned prepared = 0;
    for (size_t k = 0; k < writes; ++k) {
      const size_t i = to_submit.front();
      to_submit.pop_front();
      io_uring_sqe* sqe = io_uring_get_sqe(ring);
      if (sqe == nullptr) return NoSqe(lease, path);
      io_uring_prep_write(sqe, fd, pieces[i].data, static_cast<unsigned>(pieces[i].remaining),
                          pieces[i].offset);
      io_uring_sqe_set_data64(sqe, i);
      if (sync_round) sqe->flags |= IOSQE_IO_LINK;
      ++prepared;
    }
    if (sync_round) {
      io_uring_sqe* sqe = io_uring_get_sqe(ring);
      if (sqe == nullptr) return NoSqe(lease, path);
      io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
      io_uring_sqe_set_data64(sqe, kSyncTag);
      ++prepared;
    }

    bool progress = false;
    bool writes_complete = true;  // every write of this round wrote all it was given
    bool sync_seen = false;
    int sync_res = 0;
    bool broken = false;
    Status round = SubmitAndReap(ring, prepared, path, &broken, [&](uint64_t tag, int res) {
      if (tag == kSyncTag) {
        sync_seen = true;
        sync_res = res;
        return;
      }
      Piece& piece = pieces[tag];
      if (res > 0) {
        const size_t n = std::min(static_cast<size_t>(res), piece.remaining);
        piece.data += n;
        piece.offset += n;
        piece.remaining -= n;
        progress = true;
        if (piece.remaining > 0) {  // short write: continue from where it stopped
          writes_complete = false;
          to_submit.push_back(tag);
        }
      } else if (res == 0) {
        // No progress and no reason: resubmitting could spin forever.
        if (status.ok()) status = ErrnoToStatus(EIO, "write (0 bytes written)", path);
        writes_complete = false;
      } else if (IsResubmittable(res)) {
        writes_complete = false;
        last_retry_errno = -res;
        to_submit.push_back(tag);
      } else {
        if (status.ok()) status = ErrnoToStatus(-res, "write", path);
        writes_complete = false;
      }
    });
    if (broken) lease.Discard();
    if (!round.ok()) return round;
    if (!status.ok()) return status;  // every SQE of the round has completed

    if (sync_round) {
      if (!sync_seen) return InternalError("io_uring lost the fsync completion for " + path);
      if (sync_res == 0 && writes_complete) {
        sync_pending = false;
        progress = true;
      } else if (sync_res < 0 && sync_res != -ECANCELED) {
        // The sync ran and failed: report it; never resubmit it to clear the error.
        return ErrnoToStatus(-sync_res, "fdatasync", path);
      }
      // Otherwise the sync was cancelled (a linked write ended short or was cancelled) and
      // never ran, or it ran before every byte was written: it goes again, behind the
      // remaining writes.
    }

    if (progress) {
      stalled_rounds = 0;
    } else if (++stalled_rounds >= kMaxStalledRounds) {
      return ErrnoToStatus(last_retry_errno != 0 ? last_retry_errno : ECANCELED,
                           "write (no progress after repeated resubmission)", path);
    }
  }
  return Status::Ok();
}

Status UringFileSystem::SyncData(File& file) {
  SPOOL_ASSIGN_OR_RETURN(PosixFile * posix, AsPosixFile(file));
  SPOOL_ASSIGN_OR_RETURN(std::unique_ptr<Ring> acquired, AcquireRing(file.path()));
  RingLease lease(this, std::move(acquired));
  io_uring_sqe* sqe = io_uring_get_sqe(lease.ring());
  if (sqe == nullptr) return NoSqe(lease, file.path());
  io_uring_prep_fsync(sqe, posix->fd(), IORING_FSYNC_DATASYNC);
  io_uring_sqe_set_data64(sqe, kSyncTag);
  int sync_res = 0;
  bool broken = false;
  Status status = SubmitAndReap(lease.ring(), 1, file.path(), &broken,
                                [&](uint64_t, int res) { sync_res = res; });
  if (broken) lease.Discard();
  if (!status.ok()) return status;
  // Any failure is reported, -EINTR included: a sync is never repeated to clear an error.
  if (sync_res < 0) return ErrnoToStatus(-sync_res, "fdatasync", file.path());
  return Status::Ok();
}

Status UringFileSystem::Read(File& file, uint64_t offset, std::span<std::byte> out,
                             size_t* bytes_read) {
  *bytes_read = 0;
  SPOOL_ASSIGN_OR_RETURN(PosixFile * posix, AsPosixFile(file));
  if (out.empty()) return Status::Ok();
  SPOOL_ASSIGN_OR_RETURN(std::unique_ptr<Ring> acquired, AcquireRing(file.path()));
  RingLease lease(this, std::move(acquired));

  size_t done = 0;
  int stalled_rounds = 0;
  while (done < out.size()) {
    const size_t n = std::min(out.size() - done, kMaxSqeBytes);
    io_uring_sqe* sqe = io_uring_get_sqe(lease.ring());
    if (sqe == nullptr) return NoSqe(lease, file.path());
    io_uring_prep_read(sqe, posix->fd(), out.data() + done, static_cast<unsigned>(n),
                       offset + done);
    io_uring_sqe_set_data64(sqe, 0);
    int res = 0;
    bool broken = false;
    Status status =
        SubmitAndReap(lease.ring(), 1, file.path(), &broken, [&](uint64_t, int r) { res = r; });
    if (broken) lease.Discard();
    if (!status.ok()) {
      *bytes_read = done;
      return status;
    }
    if (res == 0) break;  // end of file
    if (res > 0) {
      done += std::min(static_cast<size_t>(res), n);
      stalled_rounds = 0;
      continue;
    }
    if (!IsResubmittable(res) || ++stalled_rounds >= kMaxStalledRounds) {
      *bytes_read = done;
      return ErrnoToStatus(-res, "read", file.path());
    }
  }
  *bytes_read = done;
  return Status::Ok();
}

Status UringFileSystem::ReadBatch(File& file, std::span<ReadOp> ops) {
  SPOOL_ASSIGN_OR_RETURN(PosixFile * posix, AsPosixFile(file));
  std::deque<size_t> to_submit;  // ops not yet full and not at end of file
  for (size_t i = 0; i < ops.size(); ++i) {
    ops[i].bytes_read = 0;
    if (ops[i].size > 0) to_submit.push_back(i);
  }
  if (to_submit.empty()) return Status::Ok();
  SPOOL_ASSIGN_OR_RETURN(std::unique_ptr<Ring> acquired, AcquireRing(file.path()));
  RingLease lease(this, std::move(acquired));
  io_uring* ring = lease.ring();
  Status status;
  int stalled_rounds = 0;
  int last_retry_errno = 0;
  while (!to_submit.empty()) {
    const size_t round = std::min<size_t>(to_submit.size(), ring_entries_);
    for (size_t k = 0; k < round; ++k) {
      const size_t i = to_submit.front();
      to_submit.pop_front();
      ReadOp& op = ops[i];
      io_uring_sqe* sqe = io_uring_get_sqe(ring);
      if (sqe == nullptr) return NoSqe(lease, file.path());
      const size_t n = std::min(op.size - op.bytes_read, kMaxSqeBytes);
      io_uring_prep_read(sqe, posix->fd(), static_cast<char*>(op.data) + op.bytes_read,
                         static_cast<unsigned>(n), op.offset + op.bytes_read);
      io_uring_sqe_set_data64(sqe, i);
    }
    bool progress = false;
    bool broken = false;
    Status reaped = SubmitAndReap(
        ring, static_cast<unsigned>(round), file.path(), &broken, [&](uint64_t i, int res) {
          ReadOp& op = ops[i];
          if (res > 0) {
            op.bytes_read += std::min(static_cast<size_t>(res), op.size - op.bytes_read);
            progress = true;
            if (op.bytes_read < op.size) to_submit.push_back(i);
          } else if (res == 0) {
            progress = true;  // end of file: the op is done
          } else if (IsResubmittable(res)) {
            last_retry_errno = -res;
            to_submit.push_back(i);
          } else if (status.ok()) {
            status = ErrnoToStatus(-res, "read", file.path());
          }
        });
    if (broken) lease.Discard();
    if (!reaped.ok()) return reaped;
    if (!status.ok()) return status;  // every SQE of the round has completed
    if (progress) {
      stalled_rounds = 0;
    } else if (++stalled_rounds >= kMaxStalledRounds) {
      return ErrnoToStatus(last_retry_errno != 0 ? last_retry_errno : ECANCELED,
                           "read (no progress after repeated resubmission)", file.path());
    }
  }
  return Status::Ok();
}

}  // namespace spool::io
