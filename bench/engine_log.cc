// The `log` engine: spool's segment log alone, no index and no envelope. Shows what the
// spool's index, ids and envelopes cost on top of the group commit.

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "bench/harness.h"
#include "io/file_system.h"
#include "log/log.h"
#include "util/futex.h"

namespace spool::bench {
namespace {

class LogEngine : public Engine {
 public:
  ~LogEngine() override {
    stop_ = true;
    if (recycler_.joinable()) recycler_.join();
    log_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);  // scratch data
  }

  Status Open(const Config& c) {
    io::Backend backend;
    io::ParseBackend(c.backend, &backend);
    SPOOL_ASSIGN_OR_RETURN(fs_, io::NewFileSystem(backend));
    dir_ = c.dir + "/log-bench";
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
    SPOOL_RETURN_IF_ERROR(fs_->CreateDir(dir_));
    options_.direct_io = c.io_mode == "direct";
    options_.spool_id = 1;
    SPOOL_ASSIGN_OR_RETURN(log_, log::Log::Open(fs_.get(), dir_, options_, {}, nullptr));
    // The bench keeps no data: a recycler frees sealed segments as they fill, so the run
    // measures the steady state (recycled segments, no zero-filling on the write path).
    recycler_ = std::thread([this] {
      while (!stop_.load()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        const uint64_t active = log_->ActiveSegment();
        for (uint64_t seq : log_->LiveSegments()) {
          if (seq + 1 < active) log_->Recycle(seq).IgnoreError();  // best effort in a bench
        }
      }
    });
    return Status::Ok();
  }

  std::string name() const override { return "log"; }

  StatusOr<Handle> Store(std::string_view body, int producer) override {
    const log::AppendRecord rec = MessageRecord(body, producer);
    // As the spool's synchronous Enqueue does: on an idle log this thread writes itself.
    Completion done;
    Status status;
    log::Location loc;
    log_->AppendLeading({&rec, 1}, [&](const Status& s, std::span<const log::Location> locs) {
      status = s;
      if (s.ok()) loc = locs[0];
      done.Notify();
    });
    done.Wait();
    SPOOL_RETURN_IF_ERROR(status);
    return Handle{loc.segment, loc.offset, body.size()};
  }

  bool StoreAsync(std::string_view body, int producer, StoreCallback done) override {
    const log::AppendRecord rec = MessageRecord(body, producer);
    log_->AppendAsync({&rec, 1}, [done = std::move(done), size = body.size()](
                                     const Status& s, std::span<const log::Location> loc) {
      if (!s.ok()) return done(s);
      done(Handle{loc[0].segment, loc[0].offset, size});
    });
    return true;
  }

  // Space is bounded by the recycler.
  bool NeedsRemoval() const override { return false; }
  Status Remove(const Handle&, bool) override { return Status::Ok(); }

  StatusOr<uint64_t> Read(const Handle& h) override {
    const log::Location loc{h.a, h.b, static_cast<uint32_t>(log::RecordFootprint(h.size))};
    StatusOr<log::Record> r = log_->Read(loc);
    // The recycler may have freed the segment already: the read is best effort.
    return r.ok() ? r->payload.size() : 0;
  }

  Status Defer(const Handle&) override { return Status::Ok(); }

  bool WarmedUp() override {
    return log_->Stats().segments_free >= static_cast<uint64_t>(options_.ready_segments);
  }

  EngineCounters Counters() override {
    const log::LogStats s = log_->Stats();
    return {static_cast<int64_t>(s.batches), static_cast<int64_t>(s.bytes)};
  }

  SpaceReport Space() override {
    SpaceReport r;
    const log::LogStats s = log_->Stats();
    char buf[160];
    std::snprintf(buf, sizeof(buf),
                  "space N/A (the bench recycles every sealed segment); %.1f records/batch, "
                  "write p50 %llu us",
                  s.batches ? static_cast<double>(s.records) / s.batches : 0.0,
                  static_cast<unsigned long long>(s.sync_us.Percentile(0.5)));
    r.note = buf;
    return r;
  }

  std::string Describe() const override {
    return options_.direct_io ? "O_DIRECT+O_DSYNC" : "buffered+fdatasync";
  }

 private:
  log::AppendRecord MessageRecord(std::string_view body, int producer) {
    log::AppendRecord rec;
    rec.type = log::RecordType::kMessage;
    rec.id = {static_cast<uint64_t>(producer) + 1, next_id_.fetch_add(1)};
    rec.parts[0] = {reinterpret_cast<const std::byte*>(body.data()), body.size()};
    rec.part_count = 1;
    return rec;
  }

  std::unique_ptr<io::FileSystem> fs_;
  std::string dir_;
  log::LogOptions options_;
  std::unique_ptr<log::Log> log_;
  std::atomic<uint64_t> next_id_{1};
  std::atomic<bool> stop_{false};
  std::thread recycler_;
};

}  // namespace

StatusOr<std::unique_ptr<Engine>> NewLogEngine(const Config& config) {
  auto e = std::make_unique<LogEngine>();
  SPOOL_RETURN_IF_ERROR(e->Open(config));
  return std::unique_ptr<Engine>(std::move(e));
}

}  // namespace spool::bench
