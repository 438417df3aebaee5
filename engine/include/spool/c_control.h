/* The control channel of a spool (spool/control.h) for C programs: an MTA written in C
 * offers hold, release, requeue, delete, list and stats in its own admin interface by
 * sending the channel's requests (docs/operations.md, "The control channel") to the
 * socket of the spool it has open, and passing the answer on.
 *
 * Conventions as spool/c.h: 0 on success, -1 on failure with *err filled (err may be
 * NULL); memory handed out is freed with spool_free.
 */

#ifndef SPOOL_C_CONTROL_H_
#define SPOOL_C_CONTROL_H_

#include "spool/c.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Runs `request_json` (one JSON object, no newline) on the spool `s` in this process, as
 * its control socket's server would, and returns every response line, each ending in
 * '\n', in *response_out (NUL-terminated; free with spool_free; NULL when nothing was
 * answered). For an MTA's admin interface that shares the process with the spool.
 * Returns 0 when the final line says "ok":true, -1 otherwise with the reply of the
 * failure the final line names (501 5.5.4 for a malformed request, 451 4.3.0 for a
 * filter that matches nothing, ...). Blocks for the whole request: a bulk change returns
 * once every change it reports is durable. Thread-safe, like every call on `s` but
 * spool_close. */
int spool_control(spool_t* s, const char* request_json, char** response_out,
                  spool_reply_t* err);

/* Sends `request_json` (one JSON object, no newline) to the control socket of the
 * process that holds the spool over `dirs` (comma-separated shard directories; this
 * process too, when it has the spool open), waits for the answer and returns every
 * response line, each ending in '\n', in *response_out (NUL-terminated; free with
 * spool_free; NULL on failure). Returns 0 when the final line says "ok":true; -1
 * otherwise: 501 5.5.4 for a request the server refused as malformed or a NULL
 * argument, 421 4.3.2 when no process serves the spool's socket or it refused this
 * user, 451 4.3.0 for a connection that broke (what its progress lines reported is
 * durable) or another failure the final line names. Blocks for the whole request: a
 * bulk change returns once every change it reports is durable. Thread-safe. */
int spool_control_request(const char* dirs, const char* request_json, char** response_out,
                          spool_reply_t* err);

#ifdef __cplusplus
}
#endif

#endif /* SPOOL_C_CONTROL_H_ */
