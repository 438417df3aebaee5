#include "util/histogram.h"

#include <algorithm>
#include <bit>

namespace spool {

int Histogram::BucketOf(uint64_t value) {
  if (value < kSubBuckets) return static_cast<int>(value);
  const int msb = 63 - std::countl_zero(value);  // >= 4
  const int shift = msb - 4;                     // log2(kSubBuckets) == 4
  const int sub = static_cast<int>((value >> shift) & (kSubBuckets - 1));
  return (shift + 1) * kSubBuckets + sub;
}

uint64_t Histogram::BucketUpper(int bucket) {
  if (bucket < kSubBuckets) return static_cast<uint64_t>(bucket);
  const int shift = bucket / kSubBuckets - 1;
  const uint64_t sub = static_cast<uint64_t>(bucket % kSubBuckets);
  const uint64_t base = (uint64_t{kSubBuckets} + sub) << shift;
  return base + ((uint64_t{1} << shift) - 1);
}

void Histogram::Record(uint64_t value) {
  ++buckets_[BucketOf(value)];
  ++count_;
  sum_ += value;
  max_ = std::max(max_, value);
  min_ = std::min(min_, value);
}

void Histogram::Merge(const Histogram& other) {
  for (int i = 0; i < kBuckets; ++i) buckets_[i] += other.buckets_[i];
  count_ += other.count_;
  sum_ += other.sum_;
  max_ = std::max(max_, other.max_);
  min_ = std::min(min_, other.min_);
}

uint64_t Histogram::Percentile(double q) const {
  if (count_ == 0) return 0;
  const double target = q * static_cast<double>(count_);
  uint64_t seen = 0;
  for (int i = 0; i < kBuckets; ++i) {
    seen += buckets_[i];
    if (seen > 0 && static_cast<double>(seen) >= target) {
      return std::min(BucketUpper(i), max_);
    }
  }
  return max_;
}

uint64_t Histogram::CountAtMost(uint64_t limit) const {
  uint64_t n = 0;
  for (int i = 0; i < kBuckets; ++i) {
    if (BucketUpper(i) > limit) break;
    n += buckets_[i];
  }
  return n;
}

}  // namespace spool
