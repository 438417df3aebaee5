// The latency histogram (util/histogram.h): percentiles within a bucket's resolution,
// the empty histogram, merging, and values at the ends of the range.

#include "util/histogram.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "test_util.h"

namespace spool {
namespace {

constexpr uint64_t kU64Max = std::numeric_limits<uint64_t>::max();
// Values below this land in a bucket of their own.
constexpr uint64_t kExactBelow = Histogram::kSubBuckets;

// The k-th smallest of `sorted` for quantile q: the value a percentile approximates.
uint64_t TruePercentile(const std::vector<uint64_t>& sorted, double q) {
  const double rank = std::ceil(q * static_cast<double>(sorted.size()));
  const size_t k = rank < 1 ? 0 : static_cast<size_t>(rank) - 1;
  return sorted[std::min(k, sorted.size() - 1)];
}

// Whether `got` is `want` up to one bucket above it: a relative error under
// 1/kSubBuckets.
::testing::AssertionResult WithinABucket(uint64_t got, uint64_t want) {
  if (got >= want && got - want <= want / Histogram::kSubBuckets) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << got << " for " << want;
}

TEST(HistogramTest, EmptyAnswersZero) {
  const Histogram h;
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.sum(), 0u);
  EXPECT_EQ(h.min(), 0u);
  EXPECT_EQ(h.max(), 0u);
  EXPECT_EQ(h.Mean(), 0.0);
  for (const double q : {0.0, 0.5, 0.99, 1.0}) EXPECT_EQ(h.Percentile(q), 0u) << q;
  EXPECT_EQ(h.CountAtMost(kU64Max), 0u);
}

TEST(HistogramTest, SmallValuesAreExact) {
  Histogram h;
  for (uint64_t v = 0; v < kExactBelow; ++v) h.Record(v);
  EXPECT_EQ(h.count(), kExactBelow);
  EXPECT_EQ(h.sum(), kExactBelow * (kExactBelow - 1) / 2);
  EXPECT_EQ(h.min(), 0u);
  EXPECT_EQ(h.max(), kExactBelow - 1);
  EXPECT_DOUBLE_EQ(h.Mean(), (kExactBelow - 1) / 2.0);
  EXPECT_EQ(h.Percentile(0.5), kExactBelow / 2 - 1);
  EXPECT_EQ(h.Percentile(1.0), kExactBelow - 1);
  EXPECT_EQ(h.Percentile(0.0), 0u);
  for (uint64_t limit = 0; limit < kExactBelow; ++limit) {
    EXPECT_EQ(h.CountAtMost(limit), limit + 1) << limit;
  }
}

TEST(HistogramTest, PercentilesOfOneValueAreThatValue) {
  // Clamped to the largest value recorded, the bucket's upper edge is the value itself.
  for (const uint64_t v : {uint64_t{0}, uint64_t{1}, uint64_t{17}, uint64_t{1000003}, kU64Max}) {
    Histogram h;
    h.Record(v);
    for (const double q : {0.0, 0.5, 0.999, 1.0}) EXPECT_EQ(h.Percentile(q), v) << v << " " << q;
    EXPECT_EQ(h.min(), v);
    EXPECT_EQ(h.max(), v);
  }
}

TEST(HistogramTest, ResolutionAtEveryPowerOfTwo) {
  for (int bit = 4; bit < 64; ++bit) {
    for (const uint64_t v : {(uint64_t{1} << bit) - 1, uint64_t{1} << bit,
                             (uint64_t{1} << bit) + (uint64_t{1} << (bit - 1)) + 1}) {
      Histogram h;
      h.Record(v);
      h.Record(kU64Max);  // so that the clamp to the maximum does not hide the edge
      EXPECT_TRUE(WithinABucket(h.Percentile(0.5), v)) << "bit " << bit;
    }
  }
}

TEST(HistogramTest, PercentilesOfRandomSamples) {
  const uint64_t seed = testing::TestSeed(1);
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  // Latencies spread over many orders of magnitude.
  std::lognormal_distribution<double> latency_us(6.0, 2.5);
  Histogram h;
  std::vector<uint64_t> samples;
  for (int i = 0; i < 100000; ++i) {
    const uint64_t v = static_cast<uint64_t>(latency_us(rng));
    samples.push_back(v);
    h.Record(v);
  }
  std::sort(samples.begin(), samples.end());
  uint64_t previous = 0;
  for (const double q : {0.0, 0.001, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 0.9999, 1.0}) {
    const uint64_t got = h.Percentile(q);
    EXPECT_TRUE(WithinABucket(got, TruePercentile(samples, q))) << "q " << q;
    EXPECT_LE(got, h.max());
    EXPECT_GE(got, previous) << "percentiles grow with q";
    previous = got;
  }
  EXPECT_EQ(h.Percentile(1.0), samples.back());
  EXPECT_EQ(h.min(), samples.front());
  EXPECT_EQ(h.max(), samples.back());
  EXPECT_EQ(h.count(), samples.size());
}

TEST(HistogramTest, CountAtMostIsExactAtBucketEdgesAndNeverOver) {
  const uint64_t seed = testing::TestSeed(2);
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  Histogram h;
  std::vector<uint64_t> samples;
  for (int i = 0; i < 10000; ++i) {
    const uint64_t v = rng() >> (rng() % 64);
    samples.push_back(v);
    h.Record(v);
  }
  std::sort(samples.begin(), samples.end());
  auto at_most = [&](uint64_t limit) {
    return static_cast<uint64_t>(std::upper_bound(samples.begin(), samples.end(), limit) -
                                 samples.begin());
  };
  for (int bit = 4; bit <= 64; ++bit) {
    // The upper edge of the last bucket below 2^bit.
    const uint64_t edge = bit == 64 ? kU64Max : (uint64_t{1} << bit) - 1;
    EXPECT_EQ(h.CountAtMost(edge), at_most(edge)) << "edge " << edge;
  }
  for (int i = 0; i < 1000; ++i) {
    const uint64_t limit = rng() >> (rng() % 64);
    const uint64_t got = h.CountAtMost(limit);
    if (limit < kExactBelow) {
      EXPECT_EQ(got, at_most(limit)) << limit;
      continue;
    }
    EXPECT_LE(got, at_most(limit)) << limit;
    // At most the values of limit's own bucket are missing, all within 1/16 below limit.
    EXPECT_GE(got, at_most(limit - limit / Histogram::kSubBuckets - 1)) << limit;
  }
}

TEST(HistogramTest, MergeIsRecordingBoth) {
  std::mt19937_64 rng(testing::TestSeed(3));
  Histogram a, b, both;
  for (int i = 0; i < 5000; ++i) {
    const uint64_t v = rng() >> (rng() % 64);
    (i % 3 == 0 ? a : b).Record(v);
    both.Record(v);
  }
  Histogram merged = a;
  merged.Merge(b);
  EXPECT_EQ(merged.count(), both.count());
  EXPECT_EQ(merged.sum(), both.sum());
  EXPECT_EQ(merged.min(), both.min());
  EXPECT_EQ(merged.max(), both.max());
  for (const double q : {0.0, 0.1, 0.5, 0.9, 0.99, 1.0}) {
    EXPECT_EQ(merged.Percentile(q), both.Percentile(q)) << q;
  }
  for (int bit = 0; bit <= 64; bit += 4) {
    const uint64_t limit = bit == 64 ? kU64Max : uint64_t{1} << bit;
    EXPECT_EQ(merged.CountAtMost(limit), both.CountAtMost(limit)) << limit;
  }
}

TEST(HistogramTest, MergeWithEmpty) {
  Histogram h, empty;
  h.Record(40);
  h.Record(7);
  h.Merge(empty);
  EXPECT_EQ(h.count(), 2u);
  EXPECT_EQ(h.min(), 7u) << "an empty histogram's minimum is no value";
  EXPECT_EQ(h.max(), 40u);
  Histogram into_empty;
  into_empty.Merge(h);
  EXPECT_EQ(into_empty.min(), 7u);
  EXPECT_EQ(into_empty.max(), 40u);
  EXPECT_EQ(into_empty.Percentile(1.0), 40u);
  Histogram both_empty;
  both_empty.Merge(empty);
  EXPECT_EQ(both_empty.count(), 0u);
  EXPECT_EQ(both_empty.min(), 0u);
}

TEST(HistogramTest, ExtremeValues) {
  Histogram h;
  h.Record(0);
  h.Record(kU64Max);
  EXPECT_EQ(h.min(), 0u);
  EXPECT_EQ(h.max(), kU64Max);
  EXPECT_EQ(h.Percentile(0.5), 0u);
  EXPECT_EQ(h.Percentile(1.0), kU64Max);
  EXPECT_EQ(h.CountAtMost(0), 1u);
  EXPECT_EQ(h.CountAtMost(kU64Max - 1), 1u);
  EXPECT_EQ(h.CountAtMost(kU64Max), 2u);
}

TEST(HistogramTest, ClearForgetsEverything) {
  Histogram h;
  h.Record(5);
  h.Record(123456);
  h.Clear();
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.sum(), 0u);
  EXPECT_EQ(h.min(), 0u);
  EXPECT_EQ(h.max(), 0u);
  EXPECT_EQ(h.Percentile(0.5), 0u);
  h.Record(9);
  EXPECT_EQ(h.min(), 9u);
  EXPECT_EQ(h.Percentile(0.5), 9u);
}

}  // namespace
}  // namespace spool
