#include "spool/metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>

#include "format_test_util.h"
#include "spool/spool.h"
#include "test_util.h"

namespace spool {
namespace {

using testing::Json;
using testing::JsonParser;
using testing::ParsePrometheus;
using testing::PromText;
using testing::TempDir;

Json ParseJsonOrDie(const std::string& text) {
  Json j;
  std::string error;
  EXPECT_TRUE(JsonParser::Parse(text, &j, &error)) << error << "\n" << text;
  return j;
}

PromText ParsePromOrDie(const std::string& text) {
  PromText p;
  std::string error;
  EXPECT_TRUE(ParsePrometheus(text, &p, &error)) << error << "\n" << text;
  return p;
}

TEST(JsonQuoteTest, EscapesWhatJsonNeeds) {
  EXPECT_EQ(JsonQuote(""), "\"\"");
  EXPECT_EQ(JsonQuote("plain@example.com"), "\"plain@example.com\"");
  EXPECT_EQ(JsonQuote("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(JsonQuote("\r\n\t\b\f"), "\"\\r\\n\\t\\b\\f\"");
  EXPECT_EQ(JsonQuote(std::string("\0\x01\x1f\x7f", 4)), "\"\\u0000\\u0001\\u001f\\u007f\"");
  // Valid UTF-8 stays as it is, of every length.
  EXPECT_EQ(JsonQuote("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x93\xA7"),
            "\"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x93\xA7\"");
}

TEST(JsonQuoteTest, InvalidUtf8BecomesReplacementCharacter) {
  const std::string kFffd = "\xEF\xBF\xBD";
  EXPECT_EQ(JsonQuote("a\xFF"
                      "b"),
            "\"a" + kFffd + "b\"");
  EXPECT_EQ(JsonQuote("\xC0\xAF"), "\"" + kFffd + kFffd + "\"");              // overlong '/'
  EXPECT_EQ(JsonQuote("\xED\xA0\x80"), "\"" + kFffd + kFffd + kFffd + "\"");  // surrogate
  EXPECT_EQ(JsonQuote("\xE2\x82"), "\"" + kFffd + kFffd + "\"");              // cut short
  // Whatever the bytes, the result parses and is valid UTF-8.
  const std::string bytes = testing::RandomBytes(testing::TestSeed(7), 4096);
  Json j = ParseJsonOrDie(JsonQuote(bytes));
  EXPECT_EQ(j.type, Json::Type::kString);
}

TEST(FormatIsoTimeTest, UtcWithMilliseconds) {
  EXPECT_EQ(FormatIsoTime(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(FormatIsoTime(1700000000123), "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(FormatIsoTime(-1), "1969-12-31T23:59:59.999Z");
}

MessageInfo SampleMessage() {
  MessageInfo m;
  m.id = MessageId(1700000000123456, (uint64_t{2} << 48) | 42);
  m.envelope.sender = "we\"ird\\<\x01>\xFF";
  m.envelope.recipients = {"a@example.com", "b\n@example.com"};
  m.envelope.queue = "out\tbound";
  m.envelope.metadata = "x=1";
  m.state = MessageState::kHeld;
  m.size = 12345;
  m.arrival_ms = 1700000000123;
  m.next_attempt_ms = 1700000600000;
  m.attempts = 3;
  m.recipient_status = {RecipientStatus::kDelivered, RecipientStatus::kDeferred};
  return m;
}

TEST(MessageInfoJsonTest, HasEveryFieldAndParses) {
  const MessageInfo m = SampleMessage();
  const std::string text = MessageInfoJson(m);
  EXPECT_EQ(text.find('\n'), std::string::npos);
  Json j = ParseJsonOrDie(text);
  EXPECT_EQ(j["id"].str, m.id.ToString());
  EXPECT_EQ(j["queue"].str, "out\tbound");
  EXPECT_EQ(j["sender"].str, "we\"ird\\<\x01>\xEF\xBF\xBD");
  ASSERT_EQ(j["recipients"].array.size(), 2u);
  EXPECT_EQ(j["recipients"].array[1].str, "b\n@example.com");
  ASSERT_EQ(j["recipient_status"].array.size(), 2u);
  EXPECT_EQ(j["recipient_status"].array[0].str, "delivered");
  EXPECT_EQ(j["recipient_status"].array[1].str, "deferred");
  EXPECT_EQ(j["size"].Uint(), 12345u);
  EXPECT_EQ(j["arrival"].str, "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(j["arrival_ms"].Int(), 1700000000123);
  EXPECT_EQ(j["next_attempt"].str, "2023-11-14T22:23:20.000Z");
  EXPECT_EQ(j["next_attempt_ms"].Int(), 1700000600000);
  EXPECT_EQ(j["attempts"].Uint(), 3u);
  EXPECT_EQ(j["state"].str, "held");
  EXPECT_EQ(j["metadata"].str, "x=1");
}

Metrics SampleMetrics(bool writer) {
  Metrics m;
  m.now_ms = 1700000100000;
  m.writer = writer;
  m.stats.messages = 3;
  m.stats.body_bytes = 300;
  m.stats.oldest_arrival_ms = 1700000000000;
  m.stats.segments_live = 2;
  m.stats.segments_free = 1;
  m.stats.segment_bytes = 3 << 20;
  m.stats.live_bytes = 4096;
  m.stats.disk_free_bytes = 1 << 30;
  m.stats.enqueued = 5;
  m.stats.removed = 2;
  m.stats.batches = 4;
  m.stats.sync_p50_us = 250;
  m.stats.sync_p99_us = 1500;
  m.stats.sync_p999_us = 2000;
  m.stats.mean_batch_records = 1.25;
  m.per_queue = true;
  m.queues = {{"default", MessageState::kQueued, 2, 200},
              {"default", MessageState::kHeld, 0, 0},
              {"default", MessageState::kCorrupt, 0, 0},
              {"we\"ird\\q\nx", MessageState::kQueued, 0, 0},
              {"we\"ird\\q\nx", MessageState::kHeld, 1, 100},
              {"we\"ird\\q\nx", MessageState::kCorrupt, 0, 0}};
  m.health.state = HealthState::kDegraded;
  m.health.shards = {{"/spool/a", Status::Ok()}, {"/spool/b", IoError("write failed", 5)}};
  return m;
}

TEST(FormatPrometheusTest, WriterFigures) {
  const std::string text = FormatPrometheus(SampleMetrics(true));
  PromText p = ParsePromOrDie(text);
  EXPECT_EQ(p.types["spool_messages"], "gauge");
  EXPECT_EQ(p.Value("spool_messages", {{"queue", "default"}, {"state", "queued"}}), "2");
  EXPECT_EQ(p.Value("spool_message_bytes", {{"queue", "default"}, {"state", "queued"}}), "200");
  // Label values are escaped and come back intact.
  EXPECT_EQ(p.Value("spool_messages", {{"queue", "we\"ird\\q\nx"}, {"state", "held"}}), "1");
  EXPECT_EQ(p.Value("spool_stored_messages"), "3");
  EXPECT_EQ(p.Value("spool_stored_body_bytes"), "300");
  EXPECT_EQ(p.Value("spool_oldest_message_age_seconds"), "100");
  EXPECT_EQ(p.Value("spool_segments", {{"state", "live"}}), "2");
  EXPECT_EQ(p.Value("spool_segments", {{"state", "free"}}), "1");
  EXPECT_EQ(p.Value("spool_segment_bytes"), std::to_string(3 << 20));
  EXPECT_EQ(p.Value("spool_live_bytes"), "4096");
  EXPECT_EQ(p.Value("spool_disk_free_bytes"), std::to_string(1 << 30));
  EXPECT_EQ(p.types["spool_enqueued_total"], "counter");
  EXPECT_EQ(p.Value("spool_enqueued_total"), "5");
  EXPECT_EQ(p.Value("spool_removed_total"), "2");
  EXPECT_EQ(p.Value("spool_batches_total"), "4");
  EXPECT_EQ(p.types["spool_fsync_latency_seconds"], "summary");
  EXPECT_EQ(p.Value("spool_fsync_latency_seconds", {{"quantile", "0.5"}}), "0.00025");
  EXPECT_EQ(p.Value("spool_fsync_latency_seconds", {{"quantile", "0.99"}}), "0.0015");
  EXPECT_EQ(p.Value("spool_fsync_latency_seconds", {{"quantile", "0.999"}}), "0.002");
  EXPECT_EQ(p.Value("spool_batch_records_mean"), "1.25");
  EXPECT_EQ(p.Value("spool_health_state", {{"state", "degraded"}}), "1");
  EXPECT_EQ(p.Value("spool_health_state", {{"state", "healthy"}}), "0");
  EXPECT_EQ(p.Value("spool_shard_healthy", {{"dir", "/spool/a"}}), "1");
  EXPECT_EQ(p.Value("spool_shard_healthy", {{"dir", "/spool/b"}}), "0");
}

TEST(FormatPrometheusTest, ReadOnlyLeavesOutProcessFigures) {
  PromText p = ParsePromOrDie(FormatPrometheus(SampleMetrics(false)));
  EXPECT_TRUE(p.HasFamily("spool_messages"));
  EXPECT_TRUE(p.HasFamily("spool_disk_free_bytes"));
  for (const char* name :
       {"spool_enqueued_total", "spool_removed_total", "spool_batches_total",
        "spool_fsync_latency_seconds", "spool_shard_healthy", "spool_health_state"}) {
    EXPECT_FALSE(p.HasFamily(name)) << name;
  }
}

TEST(FormatPrometheusTest, QuantilesAreNaNBeforeTheFirstBatch) {
  Metrics m = SampleMetrics(true);
  m.stats.batches = 0;
  PromText p = ParsePromOrDie(FormatPrometheus(m));
  EXPECT_EQ(p.Value("spool_fsync_latency_seconds", {{"quantile", "0.99"}}), "NaN");
}

TEST(FormatPrometheusTest, TotalsOnlyWithoutPerQueue) {
  Metrics m = SampleMetrics(false);
  m.per_queue = false;
  m.queues.clear();
  PromText p = ParsePromOrDie(FormatPrometheus(m));
  EXPECT_FALSE(p.HasFamily("spool_messages"));
  EXPECT_EQ(p.Value("spool_stored_messages"), "3");
}

TEST(FormatStatsJsonTest, ParsesWithEveryField) {
  Json j = ParseJsonOrDie(FormatStatsJson(SampleMetrics(true)));
  EXPECT_EQ(j["messages"].Uint(), 3u);
  EXPECT_EQ(j["read_only"].boolean, false);
  EXPECT_EQ(j["oldest_arrival_ms"].Int(), 1700000000000);
  EXPECT_EQ(j["oldest_arrival"].str, "2023-11-14T22:13:20.000Z");
  EXPECT_EQ(j["oldest_message_age_seconds"].Double(), 100.0);
  EXPECT_EQ(j["enqueued"].Uint(), 5u);
  EXPECT_EQ(j["sync_p99_us"].Uint(), 1500u);
  ASSERT_EQ(j["queues"].array.size(), 6u);
  EXPECT_EQ(j["queues"].array[4]["queue"].str, "we\"ird\\q\nx");
  EXPECT_EQ(j["queues"].array[4]["state"].str, "held");
  EXPECT_EQ(j["queues"].array[4]["messages"].Uint(), 1u);
  EXPECT_EQ(j["health"]["state"].str, "degraded");
  ASSERT_EQ(j["health"]["shards"].array.size(), 2u);
  EXPECT_EQ(j["health"]["shards"].array[1]["healthy"].boolean, false);

  Metrics empty = SampleMetrics(false);
  empty.stats.oldest_arrival_ms = 0;
  Json e = ParseJsonOrDie(FormatStatsJson(empty));
  EXPECT_TRUE(e["oldest_arrival_ms"].is_null());
  EXPECT_FALSE(e.Has("enqueued"));
  EXPECT_FALSE(e.Has("health"));
  EXPECT_EQ(e["read_only"].boolean, true);
}

// The figures of a live spool, as an MTA would export them.
TEST(CollectMetricsTest, LiveSpool) {
  TempDir dir;
  Options o;
  o.dirs = {dir.Sub("a"), dir.Sub("b")};
  o.segment_size = 1 << 20;
  o.stream_chunk_size = 64 << 10;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Spool> spool, Spool::Open(o));
  Envelope env;
  env.sender = "s@example.com";
  env.recipients = {"r@example.com"};
  MessageId held;
  for (int i = 0; i < 5; ++i) {
    env.queue = i < 3 ? "default" : "slow";
    ASSERT_OK_AND_ASSIGN(MessageId id, spool->Enqueue(env, std::string(100 + i, 'x')));
    if (i == 4) held = id;
  }
  ASSERT_OK(spool->Hold(held));

  ASSERT_OK_AND_ASSIGN(Metrics m, CollectMetrics(*spool));
  EXPECT_TRUE(m.writer);
  EXPECT_EQ(m.stats.messages, 5u);
  ASSERT_EQ(m.queues.size(), 6u);  // 2 queues x 3 states
  EXPECT_EQ(m.queues[0].queue, "default");
  EXPECT_EQ(m.queues[0].messages, 3u);
  EXPECT_EQ(m.queues[0].bytes, 100u + 101 + 102);
  EXPECT_EQ(m.queues[3].queue, "slow");
  EXPECT_EQ(m.queues[3].messages, 1u);  // queued
  EXPECT_EQ(m.queues[4].messages, 1u);  // held
  EXPECT_EQ(m.queues[4].bytes, 104u);

  ASSERT_OK_AND_ASSIGN(std::string text, FormatPrometheus(*spool));
  PromText p = ParsePromOrDie(text);
  EXPECT_EQ(p.Value("spool_messages", {{"queue", "slow"}, {"state", "held"}}), "1");
  EXPECT_EQ(p.Value("spool_enqueued_total"), "5");
  EXPECT_NE(p.Value("spool_batches_total"), "0");
  EXPECT_NE(p.Value("spool_fsync_latency_seconds", {{"quantile", "0.5"}}), "NaN");
  EXPECT_EQ(p.Value("spool_shard_healthy", {{"dir", dir.Sub("a")}}), "1");
  EXPECT_EQ(p.Value("spool_shard_healthy", {{"dir", dir.Sub("b")}}), "1");
  EXPECT_EQ(p.Value("spool_health_state", {{"state", "healthy"}}), "1");

  ASSERT_OK_AND_ASSIGN(std::string json, FormatStatsJson(*spool));
  Json j = ParseJsonOrDie(json);
  EXPECT_EQ(j["messages"].Uint(), 5u);
  EXPECT_EQ(j["enqueued"].Uint(), 5u);
  EXPECT_GE(j["oldest_message_age_seconds"].Double(), 0.0);

  ASSERT_OK_AND_ASSIGN(Metrics totals, CollectMetrics(*spool, {.per_queue = false}));
  EXPECT_FALSE(totals.per_queue);
  EXPECT_TRUE(totals.queues.empty());
}

}  // namespace
}  // namespace spool
