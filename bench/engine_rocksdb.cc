// The `rocksdb` engine: the RocksDB-spool way. Every message (a small envelope + the body)
// is one Put with WriteOptions::sync = true, WAL on, from N producer threads; RocksDB's
// write thread groups concurrent writers into one WAL write + one fsync (its group
// commit). A deferral is a small state key Put with sync; removal is a Delete (with sync
// when durable, else riding on the next synced write group, which orders the WAL).
//
// Tuning (measured in docs/benchmarks.md): the options below, overridable with
// --rocksdb-options "name=value;...".

#include <rocksdb/convenience.h>
#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/statistics.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "bench/harness.h"

namespace spool::bench {
namespace {

// The bench's RocksDB options: what a careful RocksDB-spool would set for large values
// written once and deleted soon (see docs/benchmarks.md for the settings tried).
rocksdb::Options TunedOptions() {
  rocksdb::Options o;
  o.create_if_missing = true;
  // Messages are mostly deleted while still in the memtable: a large memtable means
  // flushes write little, and compaction has little to do.
  o.write_buffer_size = 256ull << 20;
  o.max_write_buffer_number = 4;
  o.max_background_jobs = 2;  // 2 cores
  // Bodies are mail (base64 and text): lz4 would save a little on SSTs but SSTs hold
  // few bodies; the WAL (the bulk of the bytes) is not compressed either way.
  o.compression = rocksdb::kNoCompression;
  // Writers insert into the memtable concurrently, after the group's WAL write, without
  // waiting for each other: the fastest write path measured (docs/benchmarks.md: +40%
  // msgs/s over enable_pipelined_write, which it excludes). What it gives up, snapshot
  // immutability, a spool does not use; a writer still reads its own write.
  o.unordered_write = true;
  o.enable_pipelined_write = false;
  // Let a commit group grow past the default 1 MiB: with 64 KiB bodies that would cap a
  // group at 16 writers (one fsync per 16 messages at 64 producers).
  o.max_write_batch_group_size_bytes = 16ull << 20;
  // Waiting writers spin and yield before they sleep: on 2 cores with 64 producers that
  // takes CPU from the writer that leads the group.
  o.enable_write_thread_adaptive_yield = false;
  o.manual_wal_flush = false;
  o.max_total_wal_size = 1ull << 30;
  o.statistics = rocksdb::CreateDBStatistics();
  return o;
}

std::string Key(uint64_t seq, uint64_t producer) {
  // Big-endian sequence first: keys are in arrival order, like spool's ids.
  char k[16];
  for (int i = 0; i < 8; ++i) k[i] = static_cast<char>(seq >> (56 - 8 * i));
  for (int i = 0; i < 8; ++i) k[8 + i] = static_cast<char>(producer >> (56 - 8 * i));
  return std::string(k, sizeof(k));
}

class RocksDbEngine : public Engine {
 public:
  ~RocksDbEngine() override {
    if (db_) db_->Close().PermitUncheckedError();  // scratch data, removed next
    db_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  Status Open(const Config& c) {
    dir_ = c.dir + "/rocksdb-bench";
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
    std::filesystem::create_directories(c.dir, ec);
    options_ = TunedOptions();
    if (!c.rocksdb_options.empty()) {
      rocksdb::ConfigOptions config;
      config.ignore_unknown_options = false;
      rocksdb::Options tuned = options_;
      rocksdb::Status s =
          rocksdb::GetOptionsFromString(config, tuned, c.rocksdb_options, &options_);
      if (!s.ok()) return InvalidArgumentError("--rocksdb-options: " + s.ToString());
      options_.statistics = tuned.statistics;
    }
    rocksdb::DB* db = nullptr;
    rocksdb::Status s = rocksdb::DB::Open(options_, dir_, &db);
    if (!s.ok()) return IoError("rocksdb open " + dir_ + ": " + s.ToString());
    db_.reset(db);
    sync_.sync = true;
    nosync_.sync = false;
    envelope_ = "sender@example.org\nrecipient@example.net\ndefault\n";
    return Status::Ok();
  }

  std::string name() const override { return "rocksdb"; }

  StatusOr<Handle> Store(std::string_view body, int producer) override {
    const uint64_t seq = next_.fetch_add(1);
    thread_local std::string value;
    const int64_t now = std::chrono::duration_cast<std::chrono::microseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    value.assign(envelope_);
    value.append(reinterpret_cast<const char*>(&now), sizeof(now));
    value.append(body);
    rocksdb::Status s = db_->Put(sync_, Key(seq, producer), value);
    if (!s.ok()) return IoError("rocksdb put: " + s.ToString());
    live_.fetch_add(static_cast<int64_t>(value.size()));
    return Handle{seq, static_cast<uint64_t>(producer), body.size()};
  }

  Status Remove(const Handle& h, bool durable) override {
    rocksdb::Status s = db_->Delete(durable ? sync_ : nosync_, Key(h.a, h.b));
    if (!s.ok()) return IoError("rocksdb delete: " + s.ToString());
    live_.fetch_sub(static_cast<int64_t>(h.size + envelope_.size() + sizeof(int64_t)));
    return Status::Ok();
  }

  StatusOr<uint64_t> Read(const Handle& h) override {
    rocksdb::PinnableSlice value;
    rocksdb::Status s =
        db_->Get(rocksdb::ReadOptions(), db_->DefaultColumnFamily(), Key(h.a, h.b), &value);
    if (!s.ok()) return IoError("rocksdb get: " + s.ToString());
    return value.size();
  }

  Status Defer(const Handle& h) override {
    // The state goes under its own key ("s" + id) so the body is not rewritten.
    char state[32] = "deferred;attempts=1;next=+4h";
    rocksdb::Status s =
        db_->Put(sync_, "s" + Key(h.a, h.b), rocksdb::Slice(state, std::strlen(state)));
    if (!s.ok()) return IoError("rocksdb put state: " + s.ToString());
    return Status::Ok();
  }

  EngineCounters Counters() override {
    rocksdb::Statistics& st = *options_.statistics;
    return {static_cast<int64_t>(st.getTickerCount(rocksdb::WAL_FILE_SYNCED)),
            static_cast<int64_t>(st.getTickerCount(rocksdb::WAL_FILE_BYTES))};
  }

  SpaceReport Space() override {
    SpaceReport r;
    r.used_bytes = DiskUsage(dir_);
    r.live_bytes = live_.load();
    rocksdb::Statistics& st = *options_.statistics;
    const uint64_t user = st.getTickerCount(rocksdb::BYTES_WRITTEN);
    const uint64_t disk = st.getTickerCount(rocksdb::WAL_FILE_BYTES) +
                          st.getTickerCount(rocksdb::FLUSH_WRITE_BYTES) +
                          st.getTickerCount(rocksdb::COMPACT_WRITE_BYTES);
    if (user > 0) r.write_amp = static_cast<int64_t>(1000.0 * disk / user);
    r.note = "flushed " + std::to_string(st.getTickerCount(rocksdb::FLUSH_WRITE_BYTES) >> 20) +
             " MiB, compacted " +
             std::to_string(st.getTickerCount(rocksdb::COMPACT_WRITE_BYTES) >> 20) + " MiB";
    return r;
  }

  std::string Describe() const override {
    return std::string("sync=true, WAL on") +
           (options_.enable_pipelined_write ? ", pipelined" : "") +
           (options_.unordered_write ? ", unordered" : "") + ", write_buffer " +
           std::to_string(options_.write_buffer_size >> 20) + " MiB";
  }

 private:
  std::string dir_;
  rocksdb::Options options_;
  std::unique_ptr<rocksdb::DB> db_;
  rocksdb::WriteOptions sync_, nosync_;
  std::string envelope_;
  std::atomic<uint64_t> next_{1};
  std::atomic<int64_t> live_{0};
};

}  // namespace

StatusOr<std::unique_ptr<Engine>> NewRocksDbEngine(const Config& config) {
  auto e = std::make_unique<RocksDbEngine>();
  SPOOL_RETURN_IF_ERROR(e->Open(config));
  return std::unique_ptr<Engine>(std::move(e));
}

}  // namespace spool::bench
