/* A small MTA-side program using spool from C: admission, a durable enqueue (synchronous,
 * then asynchronous with the completion fd in a poll() loop), the 250 reply with the queue
 * id, then read the bodies back and remove the messages.
 *
 * Usage: example_c SPOOL_DIR   (exit 0 when everything worked) */

#define _POSIX_C_SOURCE 200809L

#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "spool/c.h"

/* What the front-end would send the client for a failed call: "452 4.3.1 ...". */
static int refuse(const char* what, const spool_reply_t* reply) {
  printf("%d %s %s\n", reply->code, reply->enhanced, reply->text);
  fprintf(stderr, "%s: %s\n", what, spool_last_error_detail()); /* for the log */
  return 1;
}

struct pending {
  int done;
  int rc;
  char id[SPOOL_ID_SIZE];
  spool_reply_t reply;
};

/* Runs on the thread that calls spool_run_completions: here, main's poll() loop. */
static void on_stored(void* arg, int rc, const char* id, const spool_reply_t* reply) {
  struct pending* p = arg;
  p->done = 1;
  p->rc = rc;
  if (rc == 0) {
    snprintf(p->id, sizeof(p->id), "%s", id);
  } else {
    p->reply = *reply;
  }
}

static int check_body(spool_t* s, const char* id, const char* want, size_t want_len) {
  void* body;
  size_t len;
  spool_reply_t err;
  if (spool_read_body(s, id, &body, &len, &err) != 0) return refuse("read", &err);
  const int same = len == want_len && memcmp(body, want, len) == 0;
  spool_free(body);
  if (!same) fprintf(stderr, "message %s reads back different\n", id);
  return same ? 0 : 1;
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s SPOOL_DIR\n", argv[0]);
    return 2;
  }
  spool_options_t* options = spool_options_create();
  spool_options_set_segment_size(options, 4 << 20);
  spool_options_set_min_free_bytes(options, 16 << 20);
  spool_reply_t err;
  spool_t* s = spool_open_with_options(argv[1], options, &err);
  spool_options_destroy(options);
  if (s == NULL) return refuse("open", &err);

  const char body[] = "Subject: test\r\n\r\nHello from C.\r\n";
  const size_t body_len = sizeof(body) - 1;
  const char* const recipients[] = {"bob@example.net", "carol@example.com"};

  /* At connect, MAIL FROM (with SIZE=) and DATA: may a message of this size come in? */
  if (spool_admission(s, body_len, &err) != 0) return refuse("admission", &err);

  /* Synchronous: returns once the message is on stable storage. */
  char id[SPOOL_ID_SIZE];
  if (spool_enqueue(s, "alice@example.org", recipients, 2, body, body_len, id, sizeof(id), &err) !=
      0) {
    return refuse("enqueue", &err);
  }
  printf("250 2.0.0 Ok: queued as %s\n", id);

  /* Asynchronous: an event loop watches the completion fd and runs the callbacks. */
  spool_envelope_t envelope = {"alice@example.org", recipients, 2, "default", NULL, 0};
  struct pending p = {0, 0, "", {0, "", ""}};
  if (spool_enqueue_async(s, &envelope, body, body_len, on_stored, &p, &err) != 0) {
    return refuse("enqueue async", &err);
  }
  struct pollfd pfd = {spool_completion_fd(s), POLLIN, 0};
  while (!p.done) {
    if (poll(&pfd, 1, 10000) <= 0) {
      fprintf(stderr, "no completion within 10 s\n");
      return 1;
    }
    spool_run_completions(s);
  }
  if (p.rc != 0) return refuse("enqueue async", &p.reply);
  printf("250 2.0.0 Ok: queued as %s\n", p.id);

  /* Delivery side: read back (checksum-verified), remove. */
  if (check_body(s, id, body, body_len) != 0 || check_body(s, p.id, body, body_len) != 0) {
    return 1;
  }
  if (spool_remove(s, id, &err) != 0) return refuse("remove", &err);
  if (spool_remove(s, p.id, &err) != 0) return refuse("remove", &err);
  spool_close(s);
  printf("ok\n");
  return 0;
}
