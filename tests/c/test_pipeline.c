/*
 * C tests of event pipeline stages with C handlers (shardkit_pipeline_*):
 * events published as JSON reach the handler on runtime threads, reply
 * events are emitted, a failing event is retried, a rejected one is
 * dead-lettered with the handler's message, bad settings and bad events are
 * refused naming the value, and after shardkit_pipeline_free no handler
 * runs.
 *
 * Built and run by tests/c/run.sh: plain, under ASan+UBSan, and under
 * valgrind.
 */
#define _POSIX_C_SOURCE 200809L

#include "shardkit.h"

#include "check.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct counts {
  atomic_int calls;
  atomic_int flaky_tries;
};

/* Greets each user: a reply event per handled one; "bad-" events are
 * rejected with a message; "flaky-" ones fail their first try. */
static int32_t greet(void *userdata, const char *event, size_t len, shardkit_reply *reply) {
  struct counts *c = userdata;
  atomic_fetch_add(&c->calls, 1);
  if (strlen(event) != len) return SHARDKIT_RETRY; /* NUL-terminated, len bytes */
  if (strstr(event, "\"id\":\"bad-") != NULL) {
    shardkit_reply_error(reply, S("no such user"));
    return SHARDKIT_REJECT;
  }
  if (strstr(event, "\"id\":\"flaky-") != NULL && atomic_fetch_add(&c->flaky_tries, 1) == 0) {
    shardkit_reply_error(reply, S("try again"));
    return SHARDKIT_RETRY;
  }
  const char *id = strstr(event, "\"id\":\"");
  int id_len = 0;
  if (id != NULL) {
    id += 6;
    while (id[id_len] != '\0' && id[id_len] != '"') id_len++;
  }
  char out[256];
  snprintf(out, sizeof out,
           "{\"specversion\":\"1.0\",\"id\":\"greeting-%.*s\",\"source\":\"/c\",\"type\":\"greeting\"}",
           id_len, id ? id : "");
  if (shardkit_reply_emit(reply, SZ(out)) != SHARDKIT_STATUS_OK) return SHARDKIT_RETRY;
  return SHARDKIT_HANDLED;
}

static int count(const char *hay, const char *needle) {
  int n = 0;
  for (const char *p = hay; p && (p = strstr(p, needle)) != NULL; p += strlen(needle)) n++;
  return n;
}

int main(void) {
  check_init();
  shardkit_pipeline *p = NULL;
  struct counts c = {0};

  CHECK_ERR(shardkit_pipeline_open(S("kafka://x"), 4, &p), SHARDKIT_STATUS_INVALID_ARGUMENT,
            "kafka://x");
  CHECK_ERR(shardkit_pipeline_open(S("memory"), 0, &p), SHARDKIT_STATUS_INVALID_ARGUMENT,
            "partitions 0");
  CHECK_STATUS(shardkit_pipeline_open(S("memory"), 4, &p), SHARDKIT_STATUS_OK);
  if (p == NULL) return check_done();

  /* Bad settings: an unknown key, a loop, no handler. */
  CHECK_ERR(shardkit_pipeline_stage(p, S("{name: g, topic: users, retries: 3}"), greet, &c),
            SHARDKIT_STATUS_CONFIG, "retries");
  CHECK_ERR(shardkit_pipeline_stage(p, S("{name: g, topic: users, reply_topic: users}"), greet, &c),
            SHARDKIT_STATUS_CONFIG, "a loop");
  CHECK_ERR(shardkit_pipeline_stage(p, S("{name: g, topic: users}"), NULL, &c),
            SHARDKIT_STATUS_NULL_POINTER, "handler");
  CHECK_STATUS(shardkit_pipeline_stage(p,
                                       S("{name: greet, topic: users, reply_topic: out, "
                                         "min_backoff: 1, max_backoff: 5, lease: 300}"),
                                       greet, &c),
               SHARDKIT_STATUS_OK);

  /* A bad event is refused, naming it, and nothing is published. */
  CHECK_ERR(shardkit_pipeline_publish(p, S("users"), S("[{\"specversion\":\"1.0\",\"id\":\"x\"}]")),
            SHARDKIT_STATUS_INVALID_ARGUMENT, "event 0");
  CHECK_ERR(shardkit_pipeline_publish(p, S("users"), S("{nope")), SHARDKIT_STATUS_INVALID_ARGUMENT,
            "not JSON");

  char events[8192];
  size_t n = 0;
  n += (size_t)snprintf(events + n, sizeof events - n, "[");
  for (int i = 0; i < 20; i++) {
    n += (size_t)snprintf(events + n, sizeof events - n,
                          "{\"specversion\":\"1.0\",\"id\":\"u%02d\",\"source\":\"/t\",\"type\":"
                          "\"user.created\",\"partitionkey\":\"k%d\"},",
                          i, i % 5);
  }
  n += (size_t)snprintf(events + n, sizeof events - n,
                        "{\"specversion\":\"1.0\",\"id\":\"bad-1\",\"source\":\"/t\",\"type\":\"x\"},"
                        "{\"specversion\":\"1.0\",\"id\":\"flaky-1\",\"source\":\"/t\",\"type\":\"x\"}]");
  CHECK_STATUS(shardkit_pipeline_publish(p, S("users"), (const uint8_t *)events, n), SHARDKIT_STATUS_OK);

  char *stats = NULL;
  int done = 0;
  int64_t deadline = now_ms() + 20000 * g_slow;
  while (!done && now_ms() < deadline) {
    shardkit_string_free(stats);
    stats = NULL;
    if (shardkit_pipeline_stats(p, NULL, 0, &stats) != SHARDKIT_STATUS_OK) break;
    done = strstr(stats, "\"handled\":21") != NULL && strstr(stats, "\"dead_lettered\":1") != NULL;
    if (!done) sleep_ms(10);
  }
  CHECK(done);
  if (!done && stats) fprintf(stderr, "test_pipeline: stats %s, %d calls\n", stats, atomic_load(&c.calls));
  if (stats) CHECK_HAS(stats, "\"greet\"");
  shardkit_string_free(stats);
  /* 20 + bad once + flaky twice. */
  CHECK(atomic_load(&c.calls) == 23);

  char *out = NULL;
  CHECK_STATUS(shardkit_pipeline_peek(p, S("out"), 100, &out), SHARDKIT_STATUS_OK);
  CHECK(out != NULL && count(out, "\"type\":\"greeting\"") == 21);
  shardkit_string_free(out);
  char *dlq = NULL;
  CHECK_STATUS(shardkit_pipeline_peek(p, S("users.dlq"), 100, &dlq), SHARDKIT_STATUS_OK);
  if (dlq) {
    CHECK_HAS(dlq, "\"id\":\"bad-1\"");
    CHECK_HAS(dlq, "\"dlqreason\":\"permanent\"");
    CHECK_HAS(dlq, "no such user");
  }
  shardkit_string_free(dlq);

  shardkit_pipeline_free(p, 1000);
  /* After free, no handler runs: the count stays. */
  int after = atomic_load(&c.calls);
  sleep_ms(50);
  CHECK(atomic_load(&c.calls) == after);
  shardkit_pipeline_free(NULL, 0);
  return check_done();
}
