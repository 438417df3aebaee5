#include "bench/harness.h"

#include <linux/futex.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>
#include <vector>

#include "util/histogram.h"

namespace spool::bench {

double CpuMicros() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto us = [](const timeval& tv) { return tv.tv_sec * 1e6 + tv.tv_usec; };
  return us(ru.ru_utime) + us(ru.ru_stime);
}

MachineTicks ReadMachineTicks() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  MachineTicks t;
  if (!(in >> cpu) || cpu != "cpu") return t;
  // user nice system idle iowait irq softirq steal (guest time is inside user and nice)
  uint64_t v = 0;
  for (int i = 0; i < 8 && in >> v; ++i) {
    t.total += v;
    if (i == 7) t.steal = v;
  }
  return t;
}

double StealPercent(const MachineTicks& a, const MachineTicks& b) {
  if (b.total <= a.total) return -1;
  return 100.0 * static_cast<double>(b.steal - a.steal) / static_cast<double>(b.total - a.total);
}

int64_t ProcessWriteBytes() {
  std::ifstream in("/proc/self/io");
  std::string key;
  int64_t value = 0;
  while (in >> key >> value) {
    if (key == "write_bytes:") return value;
  }
  return -1;
}

int64_t DiskUsage(const std::string& path) {
  std::error_code ec;
  int64_t total = 0;
  for (auto it = std::filesystem::recursive_directory_iterator(
           path, std::filesystem::directory_options::skip_permission_denied, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    struct stat st {};
    if (lstat(it->path().c_str(), &st) == 0) total += static_cast<int64_t>(st.st_blocks) * 512;
  }
  return ec ? -1 : total;
}

uint64_t Micros(Clock::duration d) {
  return std::chrono::duration_cast<std::chrono::microseconds>(d).count();
}

uint64_t EmailSize(std::mt19937_64& rng) {
  std::lognormal_distribution<double> dist(9.0, 1.2);
  return std::clamp<uint64_t>(static_cast<uint64_t>(dist(rng)), 256, kMaxEmailSize);
}

const std::string& BodyBytes() {
  // Twice the largest body, so that bodies can start anywhere in the first half.
  static const std::string* bytes = [] {
    static const char kAlphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    auto* s = new std::string(16u << 20, '\0');
    std::mt19937_64 rng(42);
    for (size_t i = 0; i < s->size(); i += 8) {
      uint64_t r = rng();
      for (size_t j = 0; j < 8 && i + j < s->size(); ++j, r >>= 8) (*s)[i + j] = kAlphabet[r & 63];
    }
    for (size_t i = 76; i < s->size(); i += 78) (*s)[i] = '\r', (*s)[i + 1] = '\n';
    return s;
  }();
  return *bytes;
}

namespace {

// Acknowledged messages on their way from one producer to a consumer.
struct alignas(64) Mailbox {
  std::mutex mu;
  std::vector<Handle> items;  // guarded by mu
};

struct alignas(64) ProducerStats {
  // Taken by the producer, or with Config::depth > 1 by the store callbacks, which run on
  // engine threads (several, for a spool with several shards).
  std::mutex mu;
  Histogram latency_us;
  uint64_t msgs = 0;
  uint64_t bytes = 0;
  uint64_t stalls = 0;
};

// What a producer with Config::depth > 1 shares with the callbacks of its stores.
struct alignas(64) AsyncSlot {
  std::atomic<uint32_t> completed{0};  // stores answered; a futex word
  std::atomic<bool> sleeping{false};   // the producer waits in the kernel for `completed`
};

void FutexWait(std::atomic<uint32_t>* word, uint32_t seen) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_PRIVATE, seen, nullptr, nullptr,
          0);
}

void FutexWake(std::atomic<uint32_t>* word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
}

struct alignas(64) ConsumerStats {
  uint64_t consumed = 0;  // during the measurement
  uint64_t deferred = 0;
};

// How long the warm-up may wait for Engine::WarmedUp beyond Config::warmup: 5 s.
constexpr int kMaxExtraWarmupTenths = 50;

// Percent of mixed-workload deliveries that fail temporarily and stay queued.
constexpr int kDeferredPercent = 5;

}  // namespace

StatusOr<Result> RunWorkload(const Config& c, Engine& engine) {
  const bool mixed = c.workload == "mixed";
  const int producers = c.producers;
  const int consumers = mixed || engine.NeedsRemoval() ? c.consumers : 0;
  const bool email = c.size_dist_email || mixed;
  const std::string& body = BodyBytes();

  std::vector<Mailbox> boxes(producers);
  std::vector<ProducerStats> pstats(producers);
  std::vector<ConsumerStats> cstats(std::max(consumers, 0));
  std::atomic<int> phase{0};  // 0 warm-up, 1 measuring, 2 stopped
  std::atomic<bool> producers_done{false};
  std::atomic<bool> failed{false};
  std::atomic<int64_t> backlog{0};  // bytes acknowledged and not yet consumed
  std::mutex error_mu;
  Status first_error;
  auto fail = [&](const Status& s, const char* what) {
    std::lock_guard<std::mutex> l(error_mu);
    if (first_error.ok()) first_error = s.WithContext(what);
    failed = true;
  };

  // What both kinds of producer do around a store. Stalled: the consumers are too far
  // behind, the producer waited a millisecond instead of storing.
  auto stalled = [&](ProducerStats& st) {
    if (consumers == 0 ||
        backlog.load(std::memory_order_relaxed) <= static_cast<int64_t>(c.max_backlog_bytes)) {
      return false;
    }
    if (phase.load(std::memory_order_relaxed) == 1) {
      std::lock_guard<std::mutex> l(st.mu);
      ++st.stalls;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return true;
  };
  auto next_body = [&](std::mt19937_64& rng) {
    const uint64_t size = email ? EmailSize(rng) : c.size;
    const uint64_t start = rng() % (body.size() - size + 1);
    return std::string_view(body).substr(start, size);
  };
  // An acknowledged store: counted if measuring, handed to a consumer if any.
  auto acknowledged = [&](int p, const Handle& h, uint64_t size, Clock::time_point t0) {
    if (phase.load(std::memory_order_relaxed) == 1) {
      const uint64_t us = Micros(Clock::now() - t0);
      ProducerStats& st = pstats[p];
      std::lock_guard<std::mutex> l(st.mu);
      st.latency_us.Record(us);
      ++st.msgs;
      st.bytes += size;
    }
    if (consumers > 0) {
      backlog.fetch_add(static_cast<int64_t>(size), std::memory_order_relaxed);
      std::lock_guard<std::mutex> l(boxes[p].mu);
      boxes[p].items.push_back(h);
    }
  };

  // Shared with the store callbacks, which may outlive this function by a few
  // instructions after their last counter update.
  auto slots = std::make_shared<std::vector<AsyncSlot>>(c.depth > 1 ? producers : 0);
  // A producer keeping c.depth stores in flight.
  auto produce_async = [&](int p) {
    std::mt19937_64 rng(p + 1);
    AsyncSlot& slot = (*slots)[p];
    uint32_t issued = 0;
    auto wait_for_answer = [&](uint32_t seen) {
      slot.sleeping.store(true);
      if (slot.completed.load() == seen) FutexWait(&slot.completed, seen);
    };
    while (phase.load(std::memory_order_relaxed) < 2 && !failed.load()) {
      const uint32_t answered = slot.completed.load();
      if (issued - answered >= static_cast<uint32_t>(c.depth)) {
        wait_for_answer(answered);
        continue;
      }
      if (stalled(pstats[p])) continue;
      const std::string_view piece = next_body(rng);
      const auto t0 = Clock::now();
      ++issued;
      const bool async = engine.StoreAsync(
          piece, p, [&, p, t0, size = piece.size(), keep = slots](const StatusOr<Handle>& h) {
            if (h.ok()) {
              acknowledged(p, *h, size, t0);
            } else {
              fail(h.status(), "store");
            }
            AsyncSlot& s = (*keep)[p];
            s.completed.fetch_add(1);
            if (s.sleeping.exchange(false)) FutexWake(&s.completed);
          });
      if (!async) {
        fail(InvalidArgumentError("engine " + engine.name() + " has no asynchronous store"),
             "store");
        --issued;
        break;
      }
    }
    // Every callback references this run's state: wait for all of them.
    for (uint32_t answered; (answered = slot.completed.load()) != issued;) {
      wait_for_answer(answered);
    }
  };

  std::vector<std::thread> producer_threads, consumer_threads;
  for (int p = 0; p < producers; ++p) {
    producer_threads.emplace_back([&, p] {
      if (c.depth > 1) return produce_async(p);
      std::mt19937_64 rng(p + 1);
      while (phase.load(std::memory_order_relaxed) < 2 && !failed.load()) {
        if (stalled(pstats[p])) continue;
        const std::string_view piece = next_body(rng);
        const auto t0 = Clock::now();
        StatusOr<Handle> h = engine.Store(piece, p);
        if (!h.ok()) {
          fail(h.status(), "store");
          break;
        }
        acknowledged(p, *h, piece.size(), t0);
      }
    });
  }
  for (int k = 0; k < consumers; ++k) {
    consumer_threads.emplace_back([&, k] {
      std::mt19937_64 rng(1000 + k);
      ConsumerStats& st = cstats[k];
      std::vector<Handle> work, taken;
      int idle_ms = 1;
      while (phase.load(std::memory_order_relaxed) < 2 && !failed.load()) {
        const bool done = producers_done.load();
        for (int p = k; p < producers; p += consumers) {
          {
            std::lock_guard<std::mutex> l(boxes[p].mu);
            taken.swap(boxes[p].items);
          }
          work.insert(work.end(), taken.begin(), taken.end());
          taken.clear();
        }
        if (work.empty()) {
          if (done) break;
          // Poll: the producers never wake a consumer, so that their path has no futex.
          std::this_thread::sleep_for(std::chrono::milliseconds(idle_ms));
          idle_ms = std::min(idle_ms * 2, 16);
          continue;
        }
        idle_ms = 1;
        for (const Handle& h : work) {
          if (phase.load(std::memory_order_relaxed) == 2) break;
          Status s;
          bool deferred = false;
          if (mixed) {
            StatusOr<uint64_t> got = engine.Read(h);
            if (!got.ok()) {
              s = got.status().WithContext("read");
            } else if (static_cast<int>(rng() % 100) < kDeferredPercent) {
              s = engine.Defer(h).WithContext("defer");
              deferred = true;
            } else {
              s = engine.Remove(h, /*durable=*/true).WithContext("remove");
            }
          } else {
            s = engine.Remove(h, /*durable=*/false).WithContext("remove");
          }
          if (!s.ok()) {
            fail(s, "consumer");
            break;
          }
          backlog.fetch_sub(static_cast<int64_t>(h.size), std::memory_order_relaxed);
          if (phase.load(std::memory_order_relaxed) == 1) {
            ++st.consumed;
            st.deferred += deferred;
          }
        }
        work.clear();
      }
    });
  }

  auto sleep_while_ok = [&](double seconds) {
    const auto until = Clock::now() + std::chrono::duration<double>(seconds);
    while (Clock::now() < until && !failed.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  };
  // Warm-up: at least c.warmup seconds, then until the engine is steady, within limits.
  sleep_while_ok(c.warmup);
  for (int i = 0; i < kMaxExtraWarmupTenths && !failed.load() && !engine.WarmedUp(); ++i) {
    sleep_while_ok(0.1);
  }
  const EngineCounters counters0 = engine.Counters();
  const int64_t io0 = ProcessWriteBytes();
  const double cpu0 = CpuMicros();
  const MachineTicks ticks0 = ReadMachineTicks();
  const auto start = Clock::now();
  phase = 1;
  sleep_while_ok(c.seconds);
  phase = 2;
  const auto end = Clock::now();
  const double cpu1 = CpuMicros();
  const MachineTicks ticks1 = ReadMachineTicks();
  const int64_t io1 = ProcessWriteBytes();
  const EngineCounters counters1 = engine.Counters();
  for (auto& t : producer_threads) t.join();
  producers_done = true;
  for (auto& t : consumer_threads) t.join();
  if (!first_error.ok()) return first_error;

  Result r;
  r.engine = engine.name();
  r.seconds = std::chrono::duration<double>(end - start).count();
  r.cpu_us = cpu1 - cpu0;
  r.steal_pct = StealPercent(ticks0, ticks1);
  r.consumers = consumers;
  uint64_t stalls = 0;
  for (const ProducerStats& st : pstats) {
    r.latency_us.Merge(st.latency_us);
    r.msgs += st.msgs;
    r.payload_bytes += st.bytes;
    stalls += st.stalls;
  }
  for (const ConsumerStats& st : cstats) {
    r.consumed += st.consumed;
    r.deferred += st.deferred;
  }
  if (counters0.fsyncs >= 0 && counters1.fsyncs >= 0) {
    r.fsyncs_known = true;
    r.fsyncs = static_cast<uint64_t>(counters1.fsyncs - counters0.fsyncs);
    r.disk_bytes = static_cast<uint64_t>(std::max<int64_t>(0, counters1.disk_bytes) -
                                         std::max<int64_t>(0, counters0.disk_bytes));
  } else {
    r.fsyncs_known = false;
  }
  if (io0 >= 0 && io1 >= 0) r.io_write_bytes = io1 - io0;
  const SpaceReport space = engine.Space();
  r.space_used_bytes = space.used_bytes;
  r.space_live_bytes = space.live_bytes;
  r.write_amp = space.write_amp >= 0 ? space.write_amp / 1000.0 : -1;
  r.note = engine.Describe();
  auto add_note = [&](const std::string& s) {
    if (s.empty()) return;
    if (!r.note.empty()) r.note += "; ";
    r.note += s;
  };
  add_note(space.note);
  if (stalls > 0) {
    add_note("backpressure: producers waited " + std::to_string(stalls) +
             " ms-slices for the consumers");
  }
  return r;
}

}  // namespace spool::bench
