// A small MTA-side program using spool from C++: admission, a durable enqueue (synchronous
// and asynchronous), the 250 reply with the queue id, then the delivery side: read the
// body back, record the attempt, remove the message.
//
// Usage: example_cxx SPOOL_DIR   (exit 0 when everything worked)

#include <cstdio>
#include <future>
#include <memory>
#include <string>
#include <utility>

#include "spool/smtp_reply.h"
#include "spool/spool.h"

// What the front-end would send the client for a failed call: "452 4.3.1 ...".
static int Refuse(const char* what, const spool::Status& status) {
  std::printf("%s\n", spool::SmtpReplyFor(status).ToString().c_str());
  std::fprintf(stderr, "%s: %s\n", what, status.ToString().c_str());  // for the log
  return 1;
}

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s SPOOL_DIR\n", argv[0]);
    return 2;
  }
  spool::Options options;
  options.dirs = {argv[1]};  // one directory per disk; each becomes a shard
  options.segment_size = 4 << 20;
  options.min_free_bytes = 16 << 20;
  spool::StatusOr<std::unique_ptr<spool::Spool>> opened = spool::Spool::Open(options);
  if (!opened.ok()) return Refuse("open", opened.status());
  std::unique_ptr<spool::Spool> spool = std::move(*opened);

  // At connect, MAIL FROM (with SIZE=) and DATA: may a message of this size come in?
  const std::string body = "Subject: test\r\n\r\nHello from C++.\r\n";
  if (spool::Status s = spool->Admission(body.size()); !s.ok()) return Refuse("admission", s);

  spool::Envelope envelope;
  envelope.sender = "alice@example.org";
  envelope.recipients = {"bob@example.net", "carol@example.com"};

  // Synchronous: returns once the message is on stable storage.
  spool::StatusOr<spool::MessageId> id = spool->Enqueue(envelope, body);
  if (!id.ok()) return Refuse("enqueue", id.status());
  std::printf("250 2.0.0 Ok: queued as %s\n", id->ToString().c_str());

  // Asynchronous: the callback runs on a spool thread once the message is durable. It
  // must be quick and must not call synchronous Spool methods; here it fulfils a promise.
  std::promise<spool::StatusOr<spool::MessageId>> stored;
  spool->EnqueueAsync(envelope, body, [&stored](const spool::StatusOr<spool::MessageId>& r) {
    stored.set_value(r);
  });
  spool::StatusOr<spool::MessageId> id2 = stored.get_future().get();
  if (!id2.ok()) return Refuse("enqueue async", id2.status());
  std::printf("250 2.0.0 Ok: queued as %s\n", id2->ToString().c_str());

  // Delivery side: the body (checksum-verified), the outcome of an attempt, removal.
  spool::StatusOr<std::string> read = spool->ReadBody(*id);
  if (!read.ok()) return Refuse("read", read.status());
  if (*read != body) {
    std::fprintf(stderr, "read back %zu bytes that differ from the %zu stored\n", read->size(),
                 body.size());
    return 1;
  }
  spool::AttemptResult attempt;
  attempt.recipients = {{0, spool::RecipientStatus::kDelivered},
                        {1, spool::RecipientStatus::kDeferred}};
  attempt.next_attempt_ms = id->micros() / 1000 + 15 * 60 * 1000;  // retry carol later
  if (spool::Status s = spool->RecordAttempt(*id, attempt); !s.ok()) return Refuse("record", s);
  for (const spool::MessageId& m : {*id, *id2}) {
    if (spool::Status s = spool->Remove(m); !s.ok()) return Refuse("remove", s);
  }
  if (spool->Get(*id).status().code() != spool::Code::kNotFound) {
    std::fprintf(stderr, "a removed message is still there\n");
    return 1;
  }
  std::printf("ok\n");
  return 0;
}
