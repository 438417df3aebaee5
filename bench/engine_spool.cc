// The `spool` engine: spool::Spool over one directory with default options, producers
// calling the synchronous Enqueue (1 recipient). Removal is Spool::Remove, always durable
// (the API has no other); deferral is RecordAttempt with the next attempt 4 hours away.

#include <chrono>
#include <filesystem>

#include "bench/harness.h"
#include "spool/spool.h"

namespace spool::bench {
namespace {

// A deferred message's next attempt: far beyond any run.
constexpr int64_t kDeferMs = 4 * 3600 * 1000;

class SpoolEngine : public Engine {
 public:
  ~SpoolEngine() override {
    spool_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);  // scratch data
  }

  Status Open(const Config& c) {
    dir_ = c.dir + "/spool-bench";
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
    Options o;
    o.dirs = {dir_};
    o.io_backend = c.backend;
    o.direct_io = c.io_mode == "direct";
    ingest_ = c.workload == "ingest" && c.consumers > 0;
    SPOOL_ASSIGN_OR_RETURN(spool_, Spool::Open(o));
    envelope_.sender = "sender@example.org";
    envelope_.recipients = {"recipient@example.net"};
    start_ = spool_->GetStats();
    return Status::Ok();
  }

  std::string name() const override { return "spool"; }

  StatusOr<Handle> Store(std::string_view body, int) override {
    SPOOL_ASSIGN_OR_RETURN(MessageId id, spool_->Enqueue(envelope_, body));
    return Handle{id.time(), id.tag(), body.size()};
  }

  bool StoreAsync(std::string_view body, int, StoreCallback done) override {
    spool_->EnqueueAsync(
        envelope_, body,
        [done = std::move(done), size = body.size()](const StatusOr<MessageId>& id) {
          if (!id.ok()) return done(id.status());
          done(Handle{id->time(), id->tag(), size});
        });
    return true;
  }

  // A durable removal waits for its commit; otherwise RemoveAsync, which becomes durable
  // with a later commit, like the rocksdb engine's Delete without sync.
  Status Remove(const Handle& h, bool durable) override {
    if (durable) return spool_->Remove(MessageId(h.a, h.b));
    spool_->RemoveAsync(MessageId(h.a, h.b), nullptr);
    return Status::Ok();
  }

  StatusOr<uint64_t> Read(const Handle& h) override {
    SPOOL_ASSIGN_OR_RETURN(std::string body, spool_->ReadBody(MessageId(h.a, h.b)));
    return body.size();
  }

  Status Defer(const Handle& h) override {
    AttemptResult a;
    a.recipients = {{0, RecipientStatus::kDeferred}};
    a.next_attempt_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count() +
                        kDeferMs;
    return spool_->RecordAttempt(MessageId(h.a, h.b), a);
  }

  // Ingest with removal reaches its steady state once reclamation recycles segments
  // (before that every segment is new and zero-filled by the pre-formatter, doubling the
  // bytes written).
  bool WarmedUp() override { return !ingest_ || spool_->GetStats().reclaimed_segments > 0; }

  EngineCounters Counters() override {
    const Stats s = spool_->GetStats();
    return {static_cast<int64_t>(s.batches), static_cast<int64_t>(s.log_bytes_written)};
  }

  SpaceReport Space() override {
    const Stats s = spool_->GetStats();
    SpaceReport r;
    r.used_bytes = static_cast<int64_t>(s.segment_bytes);
    r.live_bytes = static_cast<int64_t>(s.live_bytes);
    const uint64_t written = s.log_bytes_written - start_.log_bytes_written;
    const uint64_t relocated = s.relocated_bytes - start_.relocated_bytes;
    if (written > relocated)
      r.write_amp = static_cast<int64_t>(1000.0 * written / (written - relocated));
    char buf[256];
    std::snprintf(buf, sizeof(buf),
                  "%llu messages stored, %llu segments (%llu free), %llu reclaimed, "
                  "%.1f records/batch, sync p50 %llu us",
                  static_cast<unsigned long long>(s.messages),
                  static_cast<unsigned long long>(s.segments_live),
                  static_cast<unsigned long long>(s.segments_free),
                  static_cast<unsigned long long>(s.reclaimed_segments), s.mean_batch_records,
                  static_cast<unsigned long long>(s.sync_p50_us));
    r.note = buf;
    return r;
  }

  std::string Describe() const override {
    return spool_->options().direct_io ? "O_DIRECT+O_DSYNC" : "buffered+fdatasync";
  }

 private:
  std::string dir_;
  bool ingest_ = true;
  std::unique_ptr<Spool> spool_;
  Envelope envelope_;
  Stats start_;
};

}  // namespace

StatusOr<std::unique_ptr<Engine>> NewSpoolEngine(const Config& config) {
  auto e = std::make_unique<SpoolEngine>();
  SPOOL_RETURN_IF_ERROR(e->Open(config));
  return std::unique_ptr<Engine>(std::move(e));
}

}  // namespace spool::bench
