// A latency histogram with logarithmic buckets (about 4% wide), good for percentiles
// from 1 us to hours without storing samples.
//
// Thread-safety: thread-compatible. Record/Merge need external synchronization; the
// engine keeps one per writer thread and merges under a lock when asked for statistics.

#ifndef SPOOL_UTIL_HISTOGRAM_H_
#define SPOOL_UTIL_HISTOGRAM_H_

#include <array>
#include <cstdint>

namespace spool {

class Histogram {
 public:
  // Sub-buckets per power of two: the resolution of a percentile is 1/kSubBuckets.
  static constexpr int kSubBuckets = 16;
  static constexpr int kBuckets = 64 * kSubBuckets;

  void Record(uint64_t value);
  void Merge(const Histogram& other);
  void Clear() { *this = Histogram(); }

  uint64_t count() const { return count_; }
  uint64_t sum() const { return sum_; }
  uint64_t max() const { return max_; }
  uint64_t min() const { return count_ ? min_ : 0; }
  double Mean() const { return count_ ? static_cast<double>(sum_) / count_ : 0; }
  // The value at quantile q in [0, 1] (0.99 for p99): the upper edge of its bucket,
  // clamped to the largest recorded value.
  uint64_t Percentile(double q) const;
  // Number of recorded values in the buckets wholly at or below limit (for Prometheus
  // cumulative buckets): the number of values <= limit when limit is a bucket's upper
  // edge (any limit below kSubBuckets; 2^k - 1), otherwise short by the values of limit's
  // own bucket, which lie less than limit / kSubBuckets below it.
  uint64_t CountAtMost(uint64_t limit) const;

 private:
  static int BucketOf(uint64_t value);
  static uint64_t BucketUpper(int bucket);

  std::array<uint64_t, kBuckets> buckets_{};
  uint64_t count_ = 0;
  uint64_t sum_ = 0;
  uint64_t max_ = 0;
  uint64_t min_ = UINT64_MAX;
};

}  // namespace spool

#endif  // SPOOL_UTIL_HISTOGRAM_H_
