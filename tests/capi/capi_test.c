/* Tests of the C API (spool/c.h), written in C11: every function, its errors, and the
 * completion fd driven by poll(). Real spools in temporary directories.
 *
 * A small harness: each TEST is a function; CHECK stops the test at the first failure and
 * prints the condition with spool_last_error_detail(); SameBytes compares bodies and says
 * where they differ. Exit status 0 when all pass. */

#define _XOPEN_SOURCE 700

#include <ftw.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "spool/c.h"

static int g_failures = 0;
static const char* g_test = "";
static char g_dir[4096]; /* the current test's temporary directory */

#define CHECK(cond)                                                                          \
  do {                                                                                       \
    if (!(cond)) {                                                                           \
      fprintf(stderr, "%s:%d: %s: CHECK failed: %s\n  last error: %s\n", __FILE__, __LINE__, \
              g_test, #cond, spool_last_error_detail());                                     \
      ++g_failures;                                                                          \
      return;                                                                                \
    }                                                                                        \
  } while (0)

/* Whether got[0, got_len) and want[0, want_len) are the same bytes. If not, prints both
 * sizes and the offset of the first difference: one short line whatever the sizes. */
static int SameBytes(const void* got, size_t got_len, const void* want, size_t want_len) {
  const unsigned char* g = got;
  const unsigned char* w = want;
  size_t i = 0;
  while (i < got_len && i < want_len && g[i] == w[i]) ++i;
  if (i == got_len && i == want_len) return 1;
  fprintf(stderr, "%s: sizes %zu (got) and %zu (want), first difference at offset %zu", g_test,
          got_len, want_len, i);
  if (i < got_len && i < want_len) fprintf(stderr, ": 0x%02x (got), 0x%02x (want)", g[i], w[i]);
  fputc('\n', stderr);
  return 0;
}

/* A reply equal to code + enhanced code. */
#define CHECK_REPLY(reply, want_code, want_enhanced)     \
  do {                                                   \
    CHECK((reply).code == (want_code));                  \
    CHECK(strcmp((reply).enhanced, want_enhanced) == 0); \
    CHECK((reply).text[0] != '\0');                      \
  } while (0)

#define CHECK_OK_REPLY(reply)           \
  do {                                  \
    CHECK((reply).code == 0);           \
    CHECK((reply).enhanced[0] == '\0'); \
    CHECK((reply).text[0] == '\0');     \
  } while (0)

static int RemoveEntry(const char* path, const struct stat* sb, int flag, struct FTW* ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static void RunTest(const char* name, void (*test)(void)) {
  const char* base = getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp";
  snprintf(g_dir, sizeof(g_dir), "%s/spool-capi-test-XXXXXX", base);
  if (mkdtemp(g_dir) == NULL) {
    perror("mkdtemp");
    exit(1);
  }
  g_test = name;
  const int before = g_failures;
  test();
  printf("%s %s\n", g_failures == before ? "[  OK  ]" : "[ FAIL ]", name);
  nftw(g_dir, RemoveEntry, 16, FTW_DEPTH | FTW_PHYS);
}

/* "<g_dir>/<name>" in a static buffer (one at a time). */
static const char* Path(const char* name) {
  static char path[sizeof(g_dir) + 64];
  snprintf(path, sizeof(path), "%s/%s", g_dir, name);
  return path;
}

/* Small segments and free-space limits that fit any test machine. */
static spool_options_t* TestOptions(void) {
  spool_options_t* o = spool_options_create();
  spool_options_set_segment_size(o, 1 << 20);
  spool_options_set_stream_chunk_size(o, 64 << 10);
  spool_options_set_min_free_bytes(o, 1 << 20);
  spool_options_set_min_free_inodes(o, 10);
  return o;
}

static spool_t* OpenTest(const char* dirs) {
  spool_options_t* o = TestOptions();
  spool_reply_t err;
  spool_t* s = spool_open_with_options(dirs, o, &err);
  spool_options_destroy(o);
  if (s == NULL) {
    fprintf(stderr, "%s: open %s: %d %s %s (%s)\n", g_test, dirs, err.code, err.enhanced, err.text,
            spool_last_error_detail());
  }
  return s;
}

static int CountVisitor(void* arg, const spool_message_info_t* info) {
  (void)info;
  ++*(size_t*)arg;
  return 0;
}

static size_t CountMessages(spool_t* s) {
  size_t n = 0;
  if (spool_foreach(s, CountVisitor, &n, NULL) != 0) return (size_t)-1;
  return n;
}

static const char* const kRcpts[] = {"bob@example.net", "carol@example.com"};

/* ---- Open, enqueue, read, remove: the core calls ------------------------------------------- */

static void TestEnqueueReadRemove(void) {
  spool_reply_t err;
  spool_t* s = spool_open(Path("spool"), &err);
  CHECK(s != NULL);
  CHECK_OK_REPLY(err);

  const char body[] = "Subject: hi\r\n\r\nbinary \0 inside\r\n";
  char id[SPOOL_ID_SIZE];
  memset(&err, 0x55, sizeof(err)); /* must be overwritten on success */
  CHECK(spool_enqueue(s, "alice@example.org", kRcpts, 2, body, sizeof(body), id, sizeof(id),
                      &err) == 0);
  CHECK_OK_REPLY(err);
  CHECK(strlen(id) == SPOOL_ID_LEN);
  for (size_t i = 0; i < SPOOL_ID_LEN; ++i) {
    const char c = id[i];
    CHECK((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'));
  }
  CHECK(spool_last_error_code() == SPOOL_CODE_OK);
  CHECK(spool_last_error_detail()[0] == '\0');

  void* out = NULL;
  size_t len = 0;
  CHECK(spool_read_body(s, id, &out, &len, &err) == 0);
  CHECK(SameBytes(out, len, body, sizeof(body)));
  CHECK(((char*)out)[len] == '\0');
  spool_free(out);

  /* An empty body (NULL with length 0) and the null sender "". */
  char id2[SPOOL_ID_SIZE];
  CHECK(spool_enqueue(s, "", kRcpts, 1, NULL, 0, id2, sizeof(id2), NULL) == 0);
  CHECK(strcmp(id, id2) < 0); /* time-ordered */
  CHECK(spool_read_body(s, id2, &out, &len, NULL) == 0);
  CHECK(len == 0);
  spool_free(out);

  CHECK(spool_remove(s, id, &err) == 0);
  CHECK_OK_REPLY(err);
  out = (void*)1;
  CHECK(spool_read_body(s, id, &out, &len, &err) == -1);
  CHECK(out == NULL);
  CHECK_REPLY(err, 451, "4.3.0");
  CHECK(spool_last_error_code() == SPOOL_CODE_NOT_FOUND);
  CHECK(strstr(spool_last_error_detail(), "not_found") != NULL);
  CHECK(spool_remove(s, id, &err) == -1);
  CHECK(spool_last_error_code() == SPOOL_CODE_NOT_FOUND);
  spool_close(s);

  /* Durable: the second message is there after reopening, the removed one is not. */
  s = spool_open(Path("spool"), &err);
  CHECK(s != NULL);
  CHECK(spool_read_body(s, id2, &out, &len, NULL) == 0);
  spool_free(out);
  CHECK(spool_read_body(s, id, &out, &len, NULL) == -1);
  CHECK(CountMessages(s) == 1);
  spool_close(s);
  spool_close(NULL);
  spool_free(NULL);
}

static void TestBadInputNeverCrashesNorStores(void) {
  spool_reply_t err;
  char id[SPOOL_ID_SIZE];
  void* out;
  size_t len;

  CHECK(spool_open(NULL, &err) == NULL);
  CHECK_REPLY(err, 501, "5.5.4");
  CHECK(spool_last_error_code() == SPOOL_CODE_INVALID_ARGUMENT);
  CHECK(spool_open("", &err) == NULL);
  CHECK_REPLY(err, 501, "5.5.4");
  char dirs[2 * sizeof(g_dir) + 16];
  snprintf(dirs, sizeof(dirs), "%s/a,,%s/b", g_dir, g_dir);
  CHECK(spool_open(dirs, NULL) == NULL);
  CHECK(strstr(spool_last_error_detail(), "empty directory") != NULL);

  /* NULL spool everywhere. */
  CHECK(spool_enqueue(NULL, "a@b", kRcpts, 1, "x", 1, id, sizeof(id), &err) == -1);
  CHECK_REPLY(err, 501, "5.5.4");
  CHECK(spool_read_body(NULL, "x", &out, &len, &err) == -1);
  CHECK(spool_remove(NULL, "x", &err) == -1);
  CHECK(spool_hold(NULL, "x", NULL) == -1);
  CHECK(spool_release(NULL, "x", NULL) == -1);
  CHECK(spool_requeue(NULL, "x", NULL) == -1);
  CHECK(spool_record_attempt(NULL, "x", NULL, 0, -1, 1, NULL) == -1);
  CHECK(spool_admission(NULL, 0, &err) == -1);
  CHECK_REPLY(err, 501, "5.5.4");
  CHECK(spool_begin(NULL, NULL, &err) == NULL);
  CHECK(spool_append(NULL, "x", 1, &err) == -1);
  CHECK(spool_commit(NULL, id, sizeof(id), &err) == -1);
  spool_abort(NULL);
  CHECK(spool_completion_fd(NULL) == -1);
  CHECK(spool_run_completions(NULL) == 0);
  CHECK(spool_max_message_size(NULL) == 0);
  spool_health_t h;
  CHECK(spool_get_health(NULL, &h, NULL) == -1);
  spool_stats_t st;
  CHECK(spool_get_stats(NULL, &st, NULL) == -1);
  char* text;
  CHECK(spool_metrics(NULL, SPOOL_METRICS_JSON, &text, NULL) == -1);
  size_t n;
  CHECK(spool_scan_due(NULL, NULL, 0, NULL, 0, &n, NULL) == -1);
  CHECK(spool_foreach(NULL, CountVisitor, &n, NULL) == -1);
  spool_message_info_t* info;
  CHECK(spool_get(NULL, "x", &info, NULL) == -1);
  spool_message_info_free(NULL);
  spool_options_destroy(NULL);
  spool_options_set_max_message_size(NULL, 1);

  spool_t* s = OpenTest(Path("spool"));
  CHECK(s != NULL);

  /* Envelopes: no recipients, NULL recipients, a NULL or empty recipient, NULL sender. */
  CHECK(spool_enqueue(s, "a@b", kRcpts, 0, "x", 1, id, sizeof(id), &err) == -1);
  CHECK_REPLY(err, 501, "5.5.4");
  CHECK(strstr(spool_last_error_detail(), "recipient") != NULL);
  CHECK(spool_enqueue(s, "a@b", NULL, 1, "x", 1, id, sizeof(id), &err) == -1);
  CHECK_REPLY(err, 501, "5.5.4");
  const char* const with_null[] = {"bob@example.net", NULL};
  CHECK(spool_enqueue(s, "a@b", with_null, 2, "x", 1, id, sizeof(id), &err) == -1);
  CHECK_REPLY(err, 501, "5.5.4");
  const char* const with_empty[] = {""};
  CHECK(spool_enqueue(s, "a@b", with_empty, 1, "x", 1, id, sizeof(id), &err) == -1);
  CHECK_REPLY(err, 501, "5.5.4");
  CHECK(spool_enqueue(s, NULL, kRcpts, 1, "x", 1, id, sizeof(id), &err) == -1);
  CHECK_REPLY(err, 501, "5.5.4");
  /* A NULL body with a length, an id buffer too small or missing. */
  CHECK(spool_enqueue(s, "a@b", kRcpts, 1, NULL, 5, id, sizeof(id), &err) == -1);
  CHECK_REPLY(err, 501, "5.5.4");
  CHECK(spool_enqueue(s, "a@b", kRcpts, 1, "x", 1, id, SPOOL_ID_LEN, &err) == -1);
  CHECK_REPLY(err, 501, "5.5.4");
  CHECK(strstr(spool_last_error_detail(), "SPOOL_ID_SIZE") != NULL);
  CHECK(spool_enqueue(s, "a@b", kRcpts, 1, "x", 1, NULL, 0, &err) == -1);
  spool_envelope_t e = {"a@b", kRcpts, 1, "", NULL, 0}; /* empty queue name */
  CHECK(spool_enqueue_envelope(s, &e, "x", 1, id, sizeof(id), &err) == -1);
  CHECK_REPLY(err, 501, "5.5.4");
  e.queue = NULL;
  e.metadata_len = 3; /* NULL metadata with a length */
  CHECK(spool_enqueue_envelope(s, &e, "x", 1, id, sizeof(id), &err) == -1);
  CHECK(spool_enqueue_envelope(s, NULL, "x", 1, id, sizeof(id), &err) == -1);
  CHECK(CountMessages(s) == 0); /* nothing of the above was stored */

  /* Ids: NULL, malformed, too long. */
  const char* bad_ids[] = {"", "xyz", "!!!!!!!!!!!!!!!!!!!!!!", "0123456789012345678901234567"};
  for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); ++i) {
    CHECK(spool_read_body(s, bad_ids[i], &out, &len, &err) == -1);
    CHECK_REPLY(err, 501, "5.5.4");
    CHECK(spool_remove(s, bad_ids[i], &err) == -1);
    CHECK_REPLY(err, 501, "5.5.4");
    CHECK(spool_hold(s, bad_ids[i], &err) == -1);
    CHECK(spool_get(s, bad_ids[i], &info, &err) == -1);
    CHECK_REPLY(err, 501, "5.5.4");
  }
  CHECK(spool_read_body(s, NULL, &out, &len, &err) == -1);
  CHECK_REPLY(err, 501, "5.5.4");
  CHECK(spool_remove(s, NULL, &err) == -1);
  CHECK(spool_read_body(s, "x", NULL, &len, &err) == -1);
  CHECK(spool_read_body(s, "x", &out, NULL, &err) == -1);
  CHECK(spool_get(s, "x", NULL, &err) == -1);
  CHECK(spool_get_health(s, NULL, &err) == -1);
  CHECK(spool_get_stats(s, NULL, &err) == -1);
  CHECK(spool_metrics(s, SPOOL_METRICS_JSON, NULL, &err) == -1);
  CHECK(spool_metrics(s, 42, &text, &err) == -1);
  CHECK_REPLY(err, 501, "5.5.4");
  CHECK(spool_scan_due(s, NULL, 0, NULL, 5, &n, &err) == -1);
  CHECK(spool_scan_due(s, NULL, 0, NULL, 0, NULL, &err) == -1);
  CHECK(spool_foreach(s, NULL, NULL, &err) == -1);
  CHECK(spool_read_body_stream(s, "x", NULL, NULL, &err) == -1);

  /* A failed call does not disturb the next good one. */
  CHECK(spool_enqueue(s, "a@b", kRcpts, 1, "x", 1, id, sizeof(id), NULL) == 0);
  CHECK(CountMessages(s) == 1);
  spool_close(s);
}

static void TestSecondWriterIsRefused(void) {
  spool_options_t* o = TestOptions();
  spool_options_set_lock_holder(o, "capi_test first opener");
  spool_reply_t err;
  spool_t* first = spool_open_with_options(Path("spool"), o, &err);
  CHECK(first != NULL);
  spool_t* second = spool_open_with_options(Path("spool"), o, &err);
  spool_options_destroy(o);
  CHECK(second == NULL);
  CHECK_REPLY(err, 421, "4.3.2");
  CHECK(spool_last_error_code() == SPOOL_CODE_FAILED_PRECONDITION);
  CHECK(strstr(spool_last_error_detail(), "capi_test first opener") != NULL);
  /* The reply never carries paths. */
  CHECK(strchr(err.text, '/') == NULL);
  spool_close(first);

  /* Not a spool: a file where the directory should be; with create_if_missing off, a
   * missing directory. */
  FILE* f = fopen(Path("file"), "w");
  CHECK(f != NULL);
  fclose(f);
  CHECK(spool_open(Path("file"), &err) == NULL);
  CHECK(err.code >= 400);
  o = TestOptions();
  spool_options_set_create_if_missing(o, 0);
  CHECK(spool_open_with_options(Path("missing"), o, &err) == NULL);
  CHECK(err.code >= 400);
  spool_options_destroy(o);
}

/* ---- Options ------------------------------------------------------------------------------ */

static void TestOptionsAndAdmission(void) {
  spool_options_t* o = TestOptions();
  spool_options_set_max_message_size(o, 1000);
  spool_options_set_io_backend(o, "posix");
  spool_options_set_direct_io(o, 0);
  spool_options_set_max_commit_wait_ms(o, 1000);
  spool_options_set_checkpoint_interval_ms(o, 500);
  spool_options_set_reclaim(o, 0);
  spool_options_set_reprobe_interval_ms(o, 200);
  spool_options_set_scrub_bytes_per_sec(o, 0);
  spool_options_set_lock_holder(o, NULL);
  spool_options_set_create_if_missing(o, 1);
  spool_reply_t err;
  spool_t* s = spool_open_with_options(Path("spool"), o, &err);
  CHECK(s != NULL);
  CHECK(spool_max_message_size(s) == 1000);

  CHECK(spool_admission(s, 0, &err) == 0);
  CHECK_OK_REPLY(err);
  CHECK(spool_admission(s, 1000, &err) == 0);
  CHECK(spool_admission(s, 1001, &err) == -1);
  CHECK_REPLY(err, 552, "5.3.4");
  CHECK(spool_last_error_code() == SPOOL_CODE_TOO_BIG);

  static char big[2000];
  char id[SPOOL_ID_SIZE];
  CHECK(spool_enqueue(s, "a@b", kRcpts, 1, big, sizeof(big), id, sizeof(id), &err) == -1);
  CHECK_REPLY(err, 552, "5.3.4");
  CHECK(spool_enqueue(s, "a@b", kRcpts, 1, big, 1000, id, sizeof(id), &err) == 0);

  /* A read-only open beside the writer: reads work, writes are refused with 421. */
  spool_options_set_read_only(o, 1);
  spool_t* ro = spool_open_with_options(Path("spool"), o, &err);
  CHECK(ro != NULL);
  void* out;
  size_t len;
  CHECK(spool_read_body(ro, id, &out, &len, &err) == 0);
  CHECK(len == 1000);
  spool_free(out);
  char id2[SPOOL_ID_SIZE];
  CHECK(spool_enqueue(ro, "a@b", kRcpts, 1, "x", 1, id2, sizeof(id2), &err) == -1);
  CHECK_REPLY(err, 421, "4.3.2");
  CHECK(spool_remove(ro, id, &err) == -1);
  CHECK(spool_admission(ro, 0, &err) == -1);
  CHECK_REPLY(err, 421, "4.3.2");
  spool_close(ro);
  spool_close(s);

  /* Free space under the configured minimum: 452 4.3.1 at admission and at enqueue. */
  spool_options_set_read_only(o, 0);
  spool_options_set_min_free_bytes(o, UINT64_C(1) << 62);
  s = spool_open_with_options(Path("spool"), o, &err);
  CHECK(s != NULL);
  CHECK(spool_admission(s, 0, &err) == -1);
  CHECK_REPLY(err, 452, "4.3.1");
  CHECK(spool_last_error_code() == SPOOL_CODE_STORAGE_FULL);
  CHECK(spool_enqueue(s, "a@b", kRcpts, 1, "x", 1, id2, sizeof(id2), &err) == -1);
  CHECK_REPLY(err, 452, "4.3.1");
  spool_health_t h;
  CHECK(spool_get_health(s, &h, &err) == 0);
  CHECK(h.state == SPOOL_REFUSING);
  CHECK_REPLY(h.reply, 452, "4.3.1");
  CHECK(h.shards == 1);
  CHECK(h.shards_failed == 1);
  spool_close(s);

  /* An unknown I/O backend is bad input. */
  spool_options_set_min_free_bytes(o, 1 << 20);
  spool_options_set_io_backend(o, "carrier-pigeon");
  CHECK(spool_open_with_options(Path("spool"), o, &err) == NULL);
  CHECK_REPLY(err, 501, "5.5.4");
  spool_options_set_io_backend(o, NULL); /* back to "auto" */
  s = spool_open_with_options(Path("spool"), o, &err);
  CHECK(s != NULL);
  spool_close(s);
  spool_options_destroy(o);
}

/* ---- Envelope and state ------------------------------------------------------------------- */

static void TestEnvelopeGetAndState(void) {
  spool_t* s = OpenTest(Path("spool"));
  CHECK(s != NULL);
  const char metadata[] = {'m', 0, 'd', (char)0xff};
  spool_envelope_t e = {"alice@example.org", kRcpts, 2, "slow", metadata, sizeof(metadata)};
  char id[SPOOL_ID_SIZE];
  spool_reply_t err;
  const int64_t before = spool_now_ms();
  CHECK(spool_enqueue_envelope(s, &e, "hello", 5, id, sizeof(id), &err) == 0);

  spool_message_info_t* info = NULL;
  CHECK(spool_get(s, id, &info, &err) == 0);
  CHECK(info != NULL);
  CHECK(strcmp(info->id, id) == 0);
  CHECK(strcmp(info->sender, "alice@example.org") == 0);
  CHECK(info->n_recipients == 2);
  CHECK(strcmp(info->recipients[0], kRcpts[0]) == 0);
  CHECK(strcmp(info->recipients[1], kRcpts[1]) == 0);
  CHECK(info->recipient_status[0] == SPOOL_RCPT_PENDING);
  CHECK(info->recipient_status[1] == SPOOL_RCPT_PENDING);
  CHECK(strcmp(info->queue, "slow") == 0);
  CHECK(info->metadata_len == sizeof(metadata));
  CHECK(memcmp(info->metadata, metadata, sizeof(metadata)) == 0);
  CHECK(info->state == SPOOL_STATE_QUEUED);
  CHECK(info->size == 5);
  CHECK(info->attempts == 0);
  CHECK(info->arrival_ms >= before - 1000 && info->arrival_ms <= spool_now_ms() + 1000);
  spool_message_info_free(info);

  /* Not due before it is scheduled: record an attempt with a later next attempt. */
  const int64_t later = spool_now_ms() + 3600 * 1000;
  spool_rcpt_result_t results[] = {{0, SPOOL_RCPT_DELIVERED}, {1, SPOOL_RCPT_DEFERRED}};
  CHECK(spool_record_attempt(s, id, results, 2, later, 1, &err) == 0);
  CHECK_OK_REPLY(err);
  CHECK(spool_get(s, id, &info, &err) == 0);
  CHECK(info->recipient_status[0] == SPOOL_RCPT_DELIVERED);
  CHECK(info->recipient_status[1] == SPOOL_RCPT_DEFERRED);
  CHECK(info->attempts == 1);
  CHECK(info->next_attempt_ms == later);
  spool_free(info); /* spool_free works too */

  /* Keep the next attempt, count nothing, no results. */
  CHECK(spool_record_attempt(s, id, NULL, 0, SPOOL_NEXT_ATTEMPT_KEEP, 0, &err) == 0);
  CHECK(spool_get(s, id, &info, &err) == 0);
  CHECK(info->attempts == 1);
  CHECK(info->next_attempt_ms == later);
  spool_message_info_free(info);

  spool_id_t due[8];
  size_t n = 99;
  CHECK(spool_scan_due(s, "slow", spool_now_ms(), due, 8, &n, &err) == 0);
  CHECK(n == 0);
  CHECK(spool_scan_due(s, "slow", later, due, 8, &n, &err) == 0);
  CHECK(n == 1);
  CHECK(strcmp(due[0].text, id) == 0);

  CHECK(spool_requeue(s, id, &err) == 0);
  CHECK(spool_scan_due(s, "slow", spool_now_ms(), due, 8, &n, &err) == 0);
  CHECK(n == 1);

  CHECK(spool_hold(s, id, &err) == 0);
  CHECK(spool_get(s, id, &info, &err) == 0);
  CHECK(info->state == SPOOL_STATE_HELD);
  spool_message_info_free(info);
  CHECK(spool_scan_due(s, "slow", later, due, 8, &n, &err) == 0);
  CHECK(n == 0);
  CHECK(spool_release(s, id, &err) == 0);
  CHECK(spool_get(s, id, &info, &err) == 0);
  CHECK(info->state == SPOOL_STATE_QUEUED);
  spool_message_info_free(info);
  CHECK(spool_scan_due(s, "slow", spool_now_ms(), due, 8, &n, &err) == 0);
  CHECK(n == 1);

  /* Bad attempt results. */
  spool_rcpt_result_t bad_status[] = {{0, 7}};
  CHECK(spool_record_attempt(s, id, bad_status, 1, -1, 1, &err) == -1);
  CHECK_REPLY(err, 501, "5.5.4");
  spool_rcpt_result_t bad_index[] = {{5, SPOOL_RCPT_FAILED}};
  CHECK(spool_record_attempt(s, id, bad_index, 1, -1, 1, &err) == -1);
  CHECK_REPLY(err, 501, "5.5.4");
  CHECK(spool_record_attempt(s, id, NULL, 1, -1, 1, &err) == -1);
  CHECK_REPLY(err, 501, "5.5.4");
  CHECK(spool_get(s, id, &info, &err) == 0);
  CHECK(info->attempts == 1); /* none of them changed anything */
  CHECK(info->recipient_status[0] == SPOOL_RCPT_DELIVERED);
  spool_message_info_free(info);

  /* A well-formed id that names no message. */
  CHECK(spool_remove(s, id, &err) == 0);
  CHECK(spool_get(s, id, &info, &err) == -1);
  CHECK(spool_last_error_code() == SPOOL_CODE_NOT_FOUND);
  CHECK_REPLY(err, 451, "4.3.0");
  CHECK(spool_record_attempt(s, id, results, 2, later, 1, &err) == -1);
  CHECK(spool_last_error_code() == SPOOL_CODE_NOT_FOUND);
  CHECK(spool_hold(s, id, &err) == -1);
  CHECK(spool_release(s, id, &err) == -1);
  CHECK(spool_requeue(s, id, &err) == -1);
  CHECK(spool_last_error_code() == SPOOL_CODE_NOT_FOUND);
  spool_close(s);
}

/* ---- Scans -------------------------------------------------------------------------------- */

struct Visits {
  size_t seen;
  size_t stop_after;
  size_t in_other;
};

static int Visit(void* arg, const spool_message_info_t* info) {
  struct Visits* v = arg;
  ++v->seen;
  if (strcmp(info->queue, "other") == 0) ++v->in_other;
  return v->stop_after != 0 && v->seen >= v->stop_after;
}

static void TestScanAndForeach(void) {
  char dirs[2 * sizeof(g_dir) + 16];
  snprintf(dirs, sizeof(dirs), "%s/a,%s/b", g_dir, g_dir); /* two shards */
  spool_t* s = OpenTest(dirs);
  CHECK(s != NULL);
  char ids[7][SPOOL_ID_SIZE];
  for (int i = 0; i < 7; ++i) {
    spool_envelope_t e = {"a@b", kRcpts, 1, i < 5 ? NULL : "other", NULL, 0};
    char body[32];
    const int len = snprintf(body, sizeof(body), "message %d", i);
    CHECK(spool_enqueue_envelope(s, &e, body, (size_t)len, ids[i], sizeof(ids[i]), NULL) == 0);
  }
  for (int i = 0; i < 7; ++i) {
    void* out;
    size_t len;
    char want[32];
    snprintf(want, sizeof(want), "message %d", i);
    CHECK(spool_read_body(s, ids[i], &out, &len, NULL) == 0);
    CHECK(SameBytes(out, len, want, strlen(want)));
    spool_free(out);
  }

  spool_id_t due[10];
  size_t n = 0;
  spool_reply_t err;
  CHECK(spool_scan_due(s, NULL, spool_now_ms(), due, 3, &n, &err) == 0);
  CHECK(n == 3);
  CHECK(spool_scan_due(s, "default", spool_now_ms(), due, 10, &n, &err) == 0);
  CHECK(n == 5);
  for (size_t i = 0; i < n; ++i) CHECK(strlen(due[i].text) == SPOOL_ID_LEN);
  CHECK(spool_scan_due(s, "other", spool_now_ms(), due, 10, &n, &err) == 0);
  CHECK(n == 2);
  CHECK(spool_scan_due(s, "nosuchqueue", spool_now_ms(), due, 10, &n, &err) == 0);
  CHECK(n == 0);
  CHECK(spool_scan_due(s, NULL, spool_now_ms(), NULL, 0, &n, &err) == 0);
  CHECK(n == 0);

  struct Visits v = {0, 0, 0};
  CHECK(spool_foreach(s, Visit, &v, &err) == 0);
  CHECK(v.seen == 7);
  CHECK(v.in_other == 2);
  struct Visits stop = {0, 2, 0};
  CHECK(spool_foreach(s, Visit, &stop, &err) == 0); /* stopping early is a success */
  CHECK(stop.seen == 2);
  spool_close(s);
}

/* ---- Asynchronous enqueue and the completion fd ------------------------------------------- */

enum { kAsyncMessages = 40 };

struct AsyncState {
  spool_t* spool;
  size_t calls;
  size_t failures;
  int last_reply_code;
  char last_enhanced[16];
  char ids[kAsyncMessages][SPOOL_ID_SIZE];
  int read_back; /* bodies read from inside the callback (sync calls are allowed there) */
};

struct AsyncArg {
  struct AsyncState* state;
  int index;
};

static void OnEnqueued(void* arg, int rc, const char* id, const spool_reply_t* reply) {
  struct AsyncArg* a = arg;
  struct AsyncState* st = a->state;
  ++st->calls;
  if (rc != 0) {
    ++st->failures;
    st->last_reply_code = reply->code;
    snprintf(st->last_enhanced, sizeof(st->last_enhanced), "%s", reply->enhanced);
    return;
  }
  snprintf(st->ids[a->index], SPOOL_ID_SIZE, "%s", id);
  void* out;
  size_t len;
  if (st->spool != NULL && spool_read_body(st->spool, id, &out, &len, NULL) == 0) {
    ++st->read_back;
    spool_free(out);
  }
}

/* Waits with poll() on the completion fd until `want` callbacks ran (10 s at most). */
static int PollUntil(spool_t* s, struct AsyncState* st, size_t want) {
  struct pollfd p = {spool_completion_fd(s), POLLIN, 0};
  for (int rounds = 0; st->calls < want && rounds < 1000; ++rounds) {
    const int r = poll(&p, 1, 10000);
    if (r < 0) return -1;
    if (r == 0) return -1;                        /* nothing for 10 s: a lost completion */
    if (spool_run_completions(s) == 0) return -1; /* readable, yet nothing to run */
  }
  return st->calls == want ? 0 : -1;
}

static void TestAsyncEnqueueWithPoll(void) {
  spool_t* s = OpenTest(Path("spool"));
  CHECK(s != NULL);
  const int fd = spool_completion_fd(s);
  CHECK(fd >= 0);
  CHECK(spool_completion_fd(s) == fd);
  struct pollfd p = {fd, POLLIN, 0};
  CHECK(poll(&p, 1, 0) == 0); /* nothing pending: not readable */
  CHECK(spool_run_completions(s) == 0);

  static struct AsyncState st;
  memset(&st, 0, sizeof(st));
  st.spool = s;
  static struct AsyncArg args[kAsyncMessages];
  static char bodies[kAsyncMessages][100];
  spool_reply_t err;
  for (int i = 0; i < kAsyncMessages; ++i) {
    args[i].state = &st;
    args[i].index = i;
    snprintf(bodies[i], sizeof(bodies[i]), "async body %d", i);
    spool_envelope_t e = {"a@b", kRcpts, 2, NULL, NULL, 0};
    CHECK(spool_enqueue_async(s, &e, bodies[i], strlen(bodies[i]), OnEnqueued, &args[i], &err) ==
          0);
    CHECK_OK_REPLY(err);
  }
  /* Callbacks never run on spool threads: none has run before we ask. */
  CHECK(st.calls == 0);
  CHECK(PollUntil(s, &st, kAsyncMessages) == 0);
  CHECK(st.failures == 0);
  CHECK(st.read_back == kAsyncMessages);
  CHECK(poll(&p, 1, 0) == 0); /* drained: not readable any more */
  for (int i = 0; i < kAsyncMessages; ++i) {
    void* out;
    size_t len;
    CHECK(spool_read_body(s, st.ids[i], &out, &len, NULL) == 0);
    CHECK(SameBytes(out, len, bodies[i], strlen(bodies[i])));
    spool_free(out);
  }

  /* Failures reach the callback too, with their reply: no recipients (501), too big. */
  memset(&st, 0, sizeof(st));
  spool_envelope_t none = {"a@b", kRcpts, 0, NULL, NULL, 0};
  args[0].state = &st;
  CHECK(spool_enqueue_async(s, &none, "x", 1, OnEnqueued, &args[0], &err) == 0);
  CHECK(PollUntil(s, &st, 1) == 0);
  CHECK(st.failures == 1);
  CHECK(st.last_reply_code == 501);
  CHECK(strcmp(st.last_enhanced, "5.5.4") == 0);

  /* Malformed calls fail at once and never call back. */
  spool_envelope_t e = {"a@b", kRcpts, 1, NULL, NULL, 0};
  CHECK(spool_enqueue_async(s, &e, "x", 1, NULL, NULL, &err) == -1);
  CHECK_REPLY(err, 501, "5.5.4");
  CHECK(spool_enqueue_async(NULL, &e, "x", 1, OnEnqueued, &args[0], &err) == -1);
  CHECK(spool_enqueue_async(s, NULL, "x", 1, OnEnqueued, &args[0], &err) == -1);
  CHECK(spool_enqueue_async(s, &e, NULL, 3, OnEnqueued, &args[0], &err) == -1);
  CHECK(poll(&p, 1, 0) == 0);
  CHECK(st.calls == 1);

  /* A large body (chunked, stored off the caller's thread) completes the same way. */
  memset(&st, 0, sizeof(st));
  const size_t big_len = 700 << 10;
  char* big = malloc(big_len);
  CHECK(big != NULL);
  for (size_t i = 0; i < big_len; ++i) big[i] = (char)(i * 7 + 3);
  CHECK(spool_enqueue_async(s, &e, big, big_len, OnEnqueued, &args[0], &err) == 0);
  CHECK(PollUntil(s, &st, 1) == 0);
  CHECK(st.failures == 0);
  void* out;
  size_t len;
  CHECK(spool_read_body(s, st.ids[0], &out, &len, NULL) == 0);
  CHECK(SameBytes(out, len, big, big_len));
  spool_free(out);
  free(big);

  /* Completions still in flight at close run in spool_close, with their real outcome. */
  memset(&st, 0, sizeof(st));
  for (int i = 0; i < 5; ++i) {
    CHECK(spool_enqueue_async(s, &e, "closing", 7, OnEnqueued, &args[i], &err) == 0);
  }
  spool_close(s);
  CHECK(st.calls == 5);
  CHECK(st.failures == 0);
  s = OpenTest(Path("spool"));
  CHECK(s != NULL);
  for (int i = 0; i < 5; ++i) {
    CHECK(spool_read_body(s, st.ids[i], &out, &len, NULL) == 0);
    CHECK(SameBytes(out, len, "closing", 7));
    spool_free(out);
  }
  spool_close(s);
}

/* Several threads enqueue (asynchronously and synchronously) while the main thread runs
 * the completions: the threading model of spool/c.h. Callbacks run on the main thread
 * only, so their counters need no lock. */
enum { kThreads = 4, kPerThread = 25 };

struct Producer {
  spool_t* spool;
  int index;
  int failures;  /* of calls made on the producer thread */
  size_t* calls; /* counted by callbacks, on the main thread */
};

static void CountCall(void* arg, int rc, const char* id, const spool_reply_t* reply) {
  (void)reply;
  size_t* calls = arg;
  if (rc == 0 && id != NULL && strlen(id) == SPOOL_ID_LEN) ++*calls;
}

static void* Produce(void* arg) {
  struct Producer* p = arg;
  const char* const rcpts[] = {"bob@example.net"};
  spool_envelope_t e = {"a@b", rcpts, 1, NULL, NULL, 0};
  for (int i = 0; i < kPerThread; ++i) {
    char body[64];
    const int len = snprintf(body, sizeof(body), "thread %d message %d", p->index, i);
    if (spool_enqueue_async(p->spool, &e, body, (size_t)len, CountCall, p->calls, NULL) != 0) {
      ++p->failures;
    }
    char id[SPOOL_ID_SIZE];
    if (spool_enqueue(p->spool, "a@b", rcpts, 1, body, (size_t)len, id, sizeof(id), NULL) != 0) {
      ++p->failures;
    }
  }
  return NULL;
}

static void TestThreads(void) {
  spool_t* s = OpenTest(Path("spool"));
  CHECK(s != NULL);
  size_t calls = 0;
  pthread_t threads[kThreads];
  struct Producer producers[kThreads];
  for (int i = 0; i < kThreads; ++i) {
    producers[i] = (struct Producer){s, i, 0, &calls};
    CHECK(pthread_create(&threads[i], NULL, Produce, &producers[i]) == 0);
  }
  struct pollfd p = {spool_completion_fd(s), POLLIN, 0};
  for (int rounds = 0; calls < kThreads * kPerThread && rounds < 10000; ++rounds) {
    if (poll(&p, 1, 10000) <= 0) break;
    spool_run_completions(s);
  }
  for (int i = 0; i < kThreads; ++i) {
    CHECK(pthread_join(threads[i], NULL) == 0);
    CHECK(producers[i].failures == 0);
  }
  CHECK(calls == kThreads * kPerThread);
  CHECK(CountMessages(s) == 2 * kThreads * kPerThread);
  spool_close(s);
}

/* ---- Streamed bodies ---------------------------------------------------------------------- */

struct Collect {
  char* data;
  size_t len;
  size_t pieces;
  size_t stop_after;
};

static int CollectSink(void* arg, const void* data, size_t len) {
  struct Collect* c = arg;
  memcpy(c->data + c->len, data, len);
  c->len += len;
  ++c->pieces;
  return c->stop_after != 0 && c->pieces >= c->stop_after;
}

static void TestStreamedBodies(void) {
  spool_options_t* o = TestOptions();
  spool_options_set_max_message_size(o, 4 << 20);
  spool_reply_t err;
  spool_t* s = spool_open_with_options(Path("spool"), o, &err);
  spool_options_destroy(o);
  CHECK(s != NULL);

  const size_t total = 3 << 20;
  char* body = malloc(total);
  CHECK(body != NULL);
  for (size_t i = 0; i < total; ++i) body[i] = (char)((i * 31) ^ (i >> 9));
  spool_envelope_t e = {"a@b", kRcpts, 2, "big", NULL, 0};
  spool_writer_t* w = spool_begin(s, &e, &err);
  CHECK(w != NULL);
  CHECK_OK_REPLY(err);
  for (size_t off = 0; off < total; off += 50000) {
    const size_t piece = total - off < 50000 ? total - off : 50000;
    CHECK(spool_append(w, body + off, piece, &err) == 0);
  }
  CHECK(spool_append(w, NULL, 0, &err) == 0);
  CHECK(spool_append(w, NULL, 1, &err) == -1);
  CHECK_REPLY(err, 501, "5.5.4");
  CHECK(CountMessages(s) == 0); /* nothing visible before the commit */
  char id[SPOOL_ID_SIZE];
  CHECK(spool_commit(w, id, sizeof(id), &err) == 0);
  CHECK_OK_REPLY(err);
  CHECK(CountMessages(s) == 1);

  void* out;
  size_t len;
  CHECK(spool_read_body(s, id, &out, &len, &err) == 0);
  CHECK(SameBytes(out, len, body, total));
  spool_free(out);

  struct Collect c = {malloc(total), 0, 0, 0};
  CHECK(c.data != NULL);
  CHECK(spool_read_body_stream(s, id, CollectSink, &c, &err) == 0);
  CHECK(SameBytes(c.data, c.len, body, total));
  CHECK(c.pieces > 1);
  struct Collect first = {c.data, 0, 0, 1};
  CHECK(spool_read_body_stream(s, id, CollectSink, &first, &err) == 0); /* stops early */
  CHECK(first.pieces == 1 && first.len < total);
  free(c.data);
  CHECK(spool_read_body_stream(s, "bad", CollectSink, &c, &err) == -1);
  CHECK_REPLY(err, 501, "5.5.4");

  /* Abort: nothing stored. */
  w = spool_begin(s, &e, &err);
  CHECK(w != NULL);
  CHECK(spool_append(w, body, 200000, &err) == 0);
  spool_abort(w);
  CHECK(CountMessages(s) == 1);

  /* Over the size limit while streaming: 552, then abort. */
  w = spool_begin(s, &e, &err);
  CHECK(w != NULL);
  CHECK(spool_append(w, body, total, &err) == 0);
  CHECK(spool_append(w, body, total, &err) == -1);
  CHECK_REPLY(err, 552, "5.3.4");
  CHECK(spool_commit(w, id, sizeof(id), &err) == -1); /* and frees w */
  CHECK(CountMessages(s) == 1);

  /* An id buffer too small: 501, the message is discarded, the writer freed. */
  w = spool_begin(s, &e, &err);
  CHECK(w != NULL);
  CHECK(spool_append(w, "short", 5, &err) == 0);
  CHECK(spool_commit(w, id, 4, &err) == -1);
  CHECK_REPLY(err, 501, "5.5.4");
  CHECK(CountMessages(s) == 1);

  /* A bad envelope. */
  spool_envelope_t none = {"a@b", kRcpts, 0, NULL, NULL, 0};
  CHECK(spool_begin(s, &none, &err) == NULL);
  CHECK_REPLY(err, 501, "5.5.4");

  /* A writer left open at close: aborted by spool_close, then only spool_abort works. */
  w = spool_begin(s, &e, &err);
  CHECK(w != NULL);
  CHECK(spool_append(w, body, 100000, &err) == 0);
  spool_close(s);
  CHECK(spool_append(w, "x", 1, &err) == -1);
  CHECK_REPLY(err, 421, "4.3.2");
  spool_abort(w);
  free(body);

  s = OpenTest(Path("spool"));
  CHECK(s != NULL);
  CHECK(CountMessages(s) == 1);
  spool_close(s);
}

/* ---- Health, statistics, metrics, log ----------------------------------------------------- */

static int g_log_lines = 0;
static void OnLog(void* arg, int level, const char* message) {
  (void)arg;
  if (level >= SPOOL_LOG_DEBUG && level <= SPOOL_LOG_ERROR && message != NULL) ++g_log_lines;
}

static void TestHealthStatsMetrics(void) {
  spool_set_log_callback(OnLog, NULL);
  spool_t* s = OpenTest(Path("spool"));
  CHECK(s != NULL);
  spool_reply_t err;
  spool_health_t h;
  CHECK(spool_get_health(s, &h, &err) == 0);
  CHECK(h.state == SPOOL_HEALTHY);
  CHECK(h.reply.code == 0);
  CHECK(h.shards == 1 && h.shards_failed == 0);

  char id[SPOOL_ID_SIZE];
  for (int i = 0; i < 3; ++i) {
    CHECK(spool_enqueue(s, "a@b", kRcpts, 1, "0123456789", 10, id, sizeof(id), &err) == 0);
  }
  CHECK(spool_remove(s, id, &err) == 0);
  spool_stats_t st;
  CHECK(spool_get_stats(s, &st, &err) == 0);
  CHECK(st.messages == 2);
  CHECK(st.body_bytes == 20);
  CHECK(st.enqueued == 3);
  CHECK(st.removed == 1);
  CHECK(st.batches >= 1);
  CHECK(st.oldest_arrival_ms > 0);
  CHECK(st.segments_live >= 1);
  CHECK(st.disk_free_bytes > 0);
  CHECK(st.faults == 0 && st.recoveries == 0);
  CHECK(st.corrupt_found == 0 && st.quarantined == 0);

  char* text = NULL;
  CHECK(spool_metrics(s, SPOOL_METRICS_PROMETHEUS, &text, &err) == 0);
  CHECK(text != NULL);
  CHECK(strstr(text, "spool_stored_messages 2") != NULL);
  spool_free(text);
  CHECK(spool_metrics(s, SPOOL_METRICS_JSON, &text, &err) == 0);
  CHECK(text[0] == '{');
  CHECK(strstr(text, "\"messages\":2") != NULL);
  spool_free(text);
  spool_close(s);
  spool_set_log_callback(NULL, NULL);
}

int main(void) {
  RunTest("EnqueueReadRemove", TestEnqueueReadRemove);
  RunTest("BadInputNeverCrashesNorStores", TestBadInputNeverCrashesNorStores);
  RunTest("SecondWriterIsRefused", TestSecondWriterIsRefused);
  RunTest("OptionsAndAdmission", TestOptionsAndAdmission);
  RunTest("EnvelopeGetAndState", TestEnvelopeGetAndState);
  RunTest("ScanAndForeach", TestScanAndForeach);
  RunTest("AsyncEnqueueWithPoll", TestAsyncEnqueueWithPoll);
  RunTest("Threads", TestThreads);
  RunTest("StreamedBodies", TestStreamedBodies);
  RunTest("HealthStatsMetrics", TestHealthStatsMetrics);
  if (g_failures != 0) {
    fprintf(stderr, "%d test(s) failed\n", g_failures);
    return 1;
  }
  printf("all passed\n");
  return 0;
}
