/*
 * C tests of shardkit's ownership-election ABI: coordinators, sessions,
 * locks, elections, observers, fence gates, shard owners.
 *
 * Built and run by tests/c/run.sh: plain, under ASan+UBSan, and under
 * valgrind. Everything runs against the embedded store; when
 * SHARDKIT_TEST_ETCD names a real etcd (run.sh starts one for the plain
 * run), a short part also runs against it.
 *
 * Every wait is bounded: WAIT_UNTIL polls with a deadline.
 */
#define _POSIX_C_SOURCE 200809L

#include "shardkit.h"

#include "check.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- fixtures ----------------------------------------------------------- */

static shardkit_coordinator *embedded(void) {
  shardkit_coordinator *c = NULL;
  CHECK_STATUS(shardkit_coordinator_new_embedded(&c), SHARDKIT_STATUS_OK);
  return c;
}

static shardkit_session *session(const shardkit_coordinator *c, uint64_t ttl) {
  shardkit_session *s = NULL;
  CHECK_STATUS(shardkit_session_new(c, ttl, &s), SHARDKIT_STATUS_OK);
  return s;
}

static shardkit_lock *new_lock(const shardkit_session *s, const char *name) {
  shardkit_lock *l = NULL;
  CHECK_STATUS(shardkit_lock_new(s, SZ(name), &l), SHARDKIT_STATUS_OK);
  return l;
}

/* ---- statuses, NULLs, bad input ------------------------------------------ */

static void test_status_codes(void) {
  CHECK(SHARDKIT_STATUS_UNAVAILABLE == 11 && SHARDKIT_STATUS_TIMEOUT == 12 &&
        SHARDKIT_STATUS_SESSION_LOST == 13 && SHARDKIT_STATUS_CANCELLED == 14 &&
        SHARDKIT_STATUS_FENCED == 15 && SHARDKIT_STATUS_COMPACTED == 16);
  CHECK(strcmp(shardkit_status_message(SHARDKIT_STATUS_TIMEOUT), "timed out") == 0);
  CHECK(strcmp(shardkit_status_message(SHARDKIT_STATUS_SESSION_LOST), "session lost") == 0);
  CHECK(strcmp(shardkit_status_message(SHARDKIT_STATUS_CANCELLED), "cancelled") == 0);
  CHECK(strcmp(shardkit_status_message(SHARDKIT_STATUS_FENCED),
               "fencing token no longer current") == 0);
  CHECK(strcmp(shardkit_status_message(SHARDKIT_STATUS_COMPACTED), "revision compacted") == 0);
  CHECK(strcmp(shardkit_status_message(SHARDKIT_STATUS_BAD_RESPONSE),
               "bad response from a remote peer") == 0);
  CHECK(strcmp(shardkit_status_message((shardkit_status)18), "unknown status code") == 0);
}

static void test_free_null(void) {
  shardkit_cancel_free(NULL);
  shardkit_coordinator_free(NULL);
  shardkit_session_free(NULL);
  shardkit_lock_free(NULL);
  shardkit_election_free(NULL);
  shardkit_observer_free(NULL);
  shardkit_fence_gate_free(NULL);
  shardkit_shard_owner_free(NULL);
  CHECK(shardkit_session_lease_id(NULL) == 0);
  CHECK(!shardkit_session_is_lost(NULL));
  CHECK(shardkit_session_remaining_ms(NULL) == 0);
  CHECK(!shardkit_cancel_is_cancelled(NULL));
  CHECK(shardkit_fence_gate_newest(NULL, S("r")) == 0);
}

static void noop_leader(void *ud, const shardkit_leader_event *ev) {
  (void)ud, (void)ev;
}

static void noop_lost(void *ud, shardkit_status code, const char *msg, size_t len) {
  (void)ud, (void)code, (void)msg, (void)len;
}

static void noop_owner(void *ud, bool gained, const char *shard, size_t len, int64_t token) {
  (void)ud, (void)gained, (void)shard, (void)len, (void)token;
}

static void test_bad_input(void) {
  shardkit_coordinator *c = embedded(), *bad = NULL;
  shardkit_session *s = NULL;
  shardkit_lock *l = NULL;
  shardkit_election *e = NULL;
  shardkit_observer *o = NULL;
  shardkit_fence_gate *g = NULL;
  shardkit_shard_owner *w = NULL;
  shardkit_fencing_token tok;
  shardkit_cancel *cancel = NULL;
  char long_name[600];
  const char *shards[2] = {"a", "a"};
  size_t shard_lens[2] = {1, 1};
  bool b = false;
  size_t len = 0;
  int64_t rev = 0;

  /* NULL handles and outs. */
  CHECK_ERR(shardkit_coordinator_new_embedded(NULL), SHARDKIT_STATUS_NULL_POINTER, "out");
  CHECK_ERR(shardkit_cancel_new(NULL), SHARDKIT_STATUS_NULL_POINTER, "out");
  CHECK_ERR(shardkit_cancel_cancel(NULL), SHARDKIT_STATUS_NULL_POINTER, "cancel");
  CHECK_ERR(shardkit_session_new(NULL, 5, &s), SHARDKIT_STATUS_NULL_POINTER, "coord");
  CHECK_ERR(shardkit_session_new(c, 5, NULL), SHARDKIT_STATUS_NULL_POINTER, "out");
  CHECK_ERR(shardkit_session_check(NULL), SHARDKIT_STATUS_NULL_POINTER, "session");
  CHECK_ERR(shardkit_session_close(NULL), SHARDKIT_STATUS_NULL_POINTER, "session");
  CHECK_ERR(shardkit_lock_new(NULL, S("x"), &l), SHARDKIT_STATUS_NULL_POINTER, "session");
  CHECK_ERR(shardkit_lock_acquire(NULL, -1, NULL, &tok), SHARDKIT_STATUS_NULL_POINTER, "lock");
  CHECK_ERR(shardkit_lock_release(NULL), SHARDKIT_STATUS_NULL_POINTER, "lock");
  CHECK_ERR(shardkit_election_resign(NULL), SHARDKIT_STATUS_NULL_POINTER, "election");
  CHECK_ERR(shardkit_coordinator_revoke(NULL, 1), SHARDKIT_STATUS_NULL_POINTER, "coord");
  CHECK_ERR(shardkit_fence_gate_admit(NULL, S("r"), 1), SHARDKIT_STATUS_NULL_POINTER, "gate");
  CHECK_ERR(shardkit_shard_owner_close(NULL), SHARDKIT_STATUS_NULL_POINTER, "owner");
  CHECK(s == NULL && l == NULL);

  /* ttl 0, a margin over half the TTL, a lease that does not exist. */
  CHECK_ERR(shardkit_session_new(c, 0, &s), SHARDKIT_STATUS_INVALID_ARGUMENT, "ttl");
  CHECK_ERR(shardkit_session_new_with(c, 2, 1500, 0, &s), SHARDKIT_STATUS_INVALID_ARGUMENT,
            "margin");
  CHECK_ERR(shardkit_session_resume(c, 0x1234, &s), SHARDKIT_STATUS_NOT_FOUND, "1234");
  CHECK(s == NULL);

  s = session(c, 10);
  CHECK_ERR(shardkit_session_on_lost(s, NULL, NULL), SHARDKIT_STATUS_NULL_POINTER, "callback");
  CHECK_ERR(shardkit_session_on_lost(NULL, noop_lost, NULL), SHARDKIT_STATUS_NULL_POINTER,
            "session");
  CHECK_STATUS(shardkit_session_on_lost(s, noop_lost, NULL), SHARDKIT_STATUS_OK);
  /* Names: empty, too long, NULL with a length, invalid UTF-8, control chars. */
  CHECK_ERR(shardkit_lock_new(s, S(""), &l), SHARDKIT_STATUS_INVALID_ARGUMENT, "empty");
  CHECK_ERR(shardkit_lock_new(s, NULL, 0, &l), SHARDKIT_STATUS_INVALID_ARGUMENT, "empty");
  memset(long_name, 'n', sizeof long_name);
  CHECK_ERR(shardkit_lock_new(s, (const uint8_t *)long_name, sizeof long_name, &l),
            SHARDKIT_STATUS_INVALID_ARGUMENT, "600 bytes");
  CHECK_ERR(shardkit_lock_new(s, NULL, 5, &l), SHARDKIT_STATUS_NULL_POINTER,
            "name is NULL but its length is 5");
  CHECK_ERR(shardkit_lock_new(s, S("bad\xff"), &l), SHARDKIT_STATUS_INVALID_UTF8, "byte 3");
  CHECK_ERR(shardkit_lock_new(s, S("tab\there"), &l), SHARDKIT_STATUS_INVALID_ARGUMENT,
            "control");
  CHECK_ERR(shardkit_election_new(s, S(""), &e), SHARDKIT_STATUS_INVALID_ARGUMENT, "empty");
  CHECK_ERR(shardkit_observer_start(c, S(""), NULL, noop_leader, NULL, &o),
            SHARDKIT_STATUS_INVALID_ARGUMENT, "empty");
  CHECK_ERR(shardkit_observer_start(c, S("e"), NULL, NULL, NULL, &o), SHARDKIT_STATUS_NULL_POINTER,
            "callback");
  {
    /* Core's follow policy: the defaults, and a bad one named. */
    shardkit_follow_policy p;
    CHECK_STATUS(shardkit_follow_policy_default(&p), SHARDKIT_STATUS_OK);
    CHECK(p.retry_min_ms == 50 && p.retry_max_ms == 1000 && p.report_after_ms == 5000);
    p.retry_max_ms = 10;
    CHECK_ERR(shardkit_observer_start(c, S("e"), &p, noop_leader, NULL, &o),
              SHARDKIT_STATUS_INVALID_ARGUMENT, "retry_min (50 ms)");
    CHECK_ERR(shardkit_follow_policy_default(NULL), SHARDKIT_STATUS_NULL_POINTER, "out");
  }
  CHECK_ERR(shardkit_fence_gate_new(NULL, 3, &g), SHARDKIT_STATUS_NULL_POINTER, "name");
  CHECK_ERR(shardkit_fence_gate_new(S(""), &g), SHARDKIT_STATUS_INVALID_ARGUMENT, "empty");
  CHECK(l == NULL && e == NULL && o == NULL && g == NULL);

  /* Lock misuse: release or put while not held, token text while not held. */
  l = new_lock(s, "misuse");
  CHECK_ERR(shardkit_lock_release(l), SHARDKIT_STATUS_INVALID_ARGUMENT, "not held");
  CHECK_ERR(shardkit_lock_put(l, S("k"), S("v"), &rev), SHARDKIT_STATUS_FENCED, "not held");
  /* As a guarded write through it would be: FENCED, as core says. */
  CHECK_ERR(shardkit_lock_token_text(l, NULL, 0, &len), SHARDKIT_STATUS_FENCED, "not held");
  CHECK_ERR(shardkit_lock_try_acquire(l, NULL, &tok), SHARDKIT_STATUS_NULL_POINTER,
            "out_acquired");
  CHECK_ERR(shardkit_lock_put(l, NULL, 2, S("v"), &rev), SHARDKIT_STATUS_NULL_POINTER, "key");
  /* Acquiring with a cancel that already fired fails before trying. */
  CHECK_STATUS(shardkit_cancel_new(&cancel), SHARDKIT_STATUS_OK);
  CHECK_STATUS(shardkit_cancel_cancel(cancel), SHARDKIT_STATUS_OK);
  CHECK(shardkit_cancel_is_cancelled(cancel));
  CHECK_ERR(shardkit_lock_acquire(l, -1, cancel, &tok), SHARDKIT_STATUS_CANCELLED, "cancelled");
  shardkit_cancel_free(cancel);
  shardkit_lock_free(l);

  /* Election misuse. */
  CHECK_STATUS(shardkit_election_new(s, S("misuse"), &e), SHARDKIT_STATUS_OK);
  CHECK_ERR(shardkit_election_proclaim(e, S("v")), SHARDKIT_STATUS_FENCED, "not leader");
  CHECK_ERR(shardkit_election_resign(e), SHARDKIT_STATUS_INVALID_ARGUMENT, "not leader");
  shardkit_election_free(e);

  /* Shard owners: duplicate shard, '/' in a worker, no shards, NULL callback. */
  CHECK_ERR(shardkit_shard_owner_start(s, S("g"), S("w"), shards, shard_lens, 2, noop_owner, NULL,
                                       &w),
            SHARDKIT_STATUS_DUPLICATE_NODE, "listed twice");
  CHECK_ERR(shardkit_shard_owner_start(s, S("g"), S("a/b"), shards, shard_lens, 1, noop_owner,
                                       NULL, &w),
            SHARDKIT_STATUS_INVALID_ARGUMENT, "'/'");
  CHECK_ERR(shardkit_shard_owner_start(s, S("g"), S("w"), NULL, NULL, 0, noop_owner, NULL, &w),
            SHARDKIT_STATUS_INVALID_ARGUMENT, "empty");
  CHECK_ERR(shardkit_shard_owner_start(s, S("g"), S("w"), shards, shard_lens, 1, NULL, NULL, &w),
            SHARDKIT_STATUS_NULL_POINTER, "callback");
  CHECK_ERR(shardkit_shard_owner_start(s, S("g"), S("w"), shards, NULL, 1, noop_owner, NULL, &w),
            SHARDKIT_STATUS_NULL_POINTER, "shard_lens");
  CHECK(w == NULL);

  /* Fence gate: tokens are positive. */
  CHECK_STATUS(shardkit_fence_gate_new(S("jobs"), &g), SHARDKIT_STATUS_OK);
  CHECK_ERR(shardkit_fence_gate_admit(g, S("db"), 0), SHARDKIT_STATUS_INVALID_ARGUMENT, "0");
  shardkit_fence_gate_free(g);

  /* Leader lookups: bad name, NULL outs. */
  CHECK_ERR(shardkit_coordinator_leader(c, S(""), NULL, 0, &b, &len, &tok),
            SHARDKIT_STATUS_INVALID_ARGUMENT, "empty");
  CHECK_ERR(shardkit_coordinator_leader(c, S("e"), NULL, 0, NULL, &len, &tok),
            SHARDKIT_STATUS_NULL_POINTER, "out_found");

  /* Endpoint strings. */
  CHECK_ERR(shardkit_coordinator_connect(S(""), 500, &bad), SHARDKIT_STATUS_INVALID_ARGUMENT,
            "names no endpoint");
  CHECK_ERR(shardkit_coordinator_connect(S("nohostport"), 500, &bad),
            SHARDKIT_STATUS_INVALID_ARGUMENT, "nohostport");
  CHECK_ERR(shardkit_coordinator_connect(S("127.0.0.1:0"), 500, &bad),
            SHARDKIT_STATUS_INVALID_ARGUMENT, "127.0.0.1:0");
  CHECK_ERR(shardkit_coordinator_connect(S("127.0.0.1:70000"), 500, &bad),
            SHARDKIT_STATUS_INVALID_ARGUMENT, "70000");
  CHECK_ERR(shardkit_coordinator_connect(S("https://127.0.0.1:2379"), 500, &bad),
            SHARDKIT_STATUS_INVALID_ARGUMENT, "TLS");
  CHECK_ERR(shardkit_coordinator_connect(S("127.0.0.1:2379"), 0, &bad),
            SHARDKIT_STATUS_INVALID_ARGUMENT, "timeout 0");
  CHECK_ERR(shardkit_coordinator_connect(NULL, 9, 500, &bad), SHARDKIT_STATUS_NULL_POINTER,
            "endpoints");
  CHECK(bad == NULL);

  CHECK_STATUS(shardkit_session_close(s), SHARDKIT_STATUS_OK);
  shardkit_session_free(s);
  shardkit_coordinator_free(c);
}

static void test_unreachable_endpoint(void) {
  char ep[64];
  shardkit_coordinator *c = NULL;
  int64_t t0, took;
  snprintf(ep, sizeof ep, "127.0.0.1:%d,http://127.0.0.1:%d", free_port(), free_port());
  t0 = now_ms();
  CHECK_ERR(shardkit_coordinator_connect(SZ(ep), 500, &c), SHARDKIT_STATUS_UNAVAILABLE,
            "127.0.0.1");
  took = now_ms() - t0;
  if (took >= 1500 * g_slow) fprintf(stderr, "connect to %s took %lld ms\n", ep, (long long)took);
  CHECK(took < 1500 * g_slow);
  CHECK(c == NULL);
}

/* ---- locks ------------------------------------------------------------- */

static void test_lock_basics(void) {
  shardkit_coordinator *c = embedded();
  shardkit_session *s = session(c, 10);
  shardkit_lock *l = new_lock(s, "jobs");
  shardkit_fencing_token t1 = {0, 0}, t2 = {0, 0}, t3 = {0, 0};
  bool acquired = false;
  char text[128];
  size_t len = 0;
  int64_t lease = shardkit_session_lease_id(s);

  CHECK(lease != 0);
  CHECK(!shardkit_session_is_lost(s));
  CHECK(shardkit_session_remaining_ms(s) > 5000);
  CHECK_STATUS(shardkit_session_check(s), SHARDKIT_STATUS_OK);

  CHECK_STATUS(shardkit_lock_try_acquire(l, &acquired, &t1), SHARDKIT_STATUS_OK);
  CHECK(acquired && t1.revision > 0 && t1.lease == lease);
  /* Held through this handle: a second acquire is a misuse. */
  CHECK_ERR(shardkit_lock_acquire(l, 100, NULL, &t2), SHARDKIT_STATUS_INVALID_ARGUMENT,
            "already held");
  /* Token text: "lock:jobs@<rev>/<lease hex>", with the buffer protocol. */
  CHECK_STATUS(shardkit_lock_token_text(l, NULL, 0, &len), SHARDKIT_STATUS_BUFFER_TOO_SMALL);
  CHECK(len > 10 && len < sizeof text);
  CHECK_STATUS(shardkit_lock_token_text(l, (uint8_t *)text, sizeof text - 1, &len),
               SHARDKIT_STATUS_OK);
  text[len] = '\0';
  {
    char want[64];
    snprintf(want, sizeof want, "lock:jobs@%lld/", (long long)t1.revision);
    CHECK(strncmp(text, want, strlen(want)) == 0);
  }
  CHECK_STATUS(shardkit_lock_release(l), SHARDKIT_STATUS_OK);
  CHECK_ERR(shardkit_lock_release(l), SHARDKIT_STATUS_INVALID_ARGUMENT, "not held");

  /* Tokens rise with every acquire. */
  CHECK_STATUS(shardkit_lock_acquire(l, -1, NULL, &t2), SHARDKIT_STATUS_OK);
  CHECK(t2.revision > t1.revision && t2.lease == lease);
  CHECK_STATUS(shardkit_lock_release(l), SHARDKIT_STATUS_OK);
  CHECK_STATUS(shardkit_lock_acquire(l, 1000, NULL, &t3), SHARDKIT_STATUS_OK);
  CHECK(t3.revision > t2.revision);
  CHECK_STATUS(shardkit_lock_release(l), SHARDKIT_STATUS_OK);

  shardkit_lock_free(l);
  CHECK_STATUS(shardkit_session_close(s), SHARDKIT_STATUS_OK);
  CHECK_ERR(shardkit_session_check(s), SHARDKIT_STATUS_SESSION_LOST, "closed");
  shardkit_session_free(s);
  shardkit_coordinator_free(c);
}

static void test_lock_contention(void) {
  shardkit_coordinator *c = embedded();
  shardkit_session *sa = session(c, 10), *sb = session(c, 10);
  shardkit_lock *a = new_lock(sa, "contended"), *b = new_lock(sb, "contended");
  /* Two handles under one session exclude each other too. */
  shardkit_lock *a2 = new_lock(sa, "contended");
  shardkit_fencing_token ta = {0, 0}, tb = {7, 7};
  bool got = true;
  int64_t t0, took;

  CHECK_STATUS(shardkit_lock_acquire(a, -1, NULL, &ta), SHARDKIT_STATUS_OK);
  CHECK_STATUS(shardkit_lock_try_acquire(b, &got, &tb), SHARDKIT_STATUS_OK);
  CHECK(!got && tb.revision == 0 && tb.lease == 0);
  got = true;
  CHECK_STATUS(shardkit_lock_try_acquire(a2, &got, &tb), SHARDKIT_STATUS_OK);
  CHECK(!got);

  /* A timed acquire gives up with TIMEOUT after about its timeout. */
  t0 = now_ms();
  CHECK_ERR(shardkit_lock_acquire(b, 200, NULL, &tb), SHARDKIT_STATUS_TIMEOUT, "200 ms");
  took = now_ms() - t0;
  CHECK(took >= 190 && took < 2000 * g_slow);
  CHECK_ERR(shardkit_lock_acquire(b, 0, NULL, &tb), SHARDKIT_STATUS_TIMEOUT, "not acquired");

  CHECK_STATUS(shardkit_lock_release(a), SHARDKIT_STATUS_OK);
  CHECK_STATUS(shardkit_lock_try_acquire(b, &got, &tb), SHARDKIT_STATUS_OK);
  CHECK(got && tb.revision > ta.revision && tb.lease == shardkit_session_lease_id(sb));
  CHECK_STATUS(shardkit_lock_release(b), SHARDKIT_STATUS_OK);

  shardkit_lock_free(a);
  shardkit_lock_free(a2);
  shardkit_lock_free(b);
  CHECK_STATUS(shardkit_session_close(sa), SHARDKIT_STATUS_OK);
  CHECK_STATUS(shardkit_session_close(sb), SHARDKIT_STATUS_OK);
  shardkit_session_free(sa);
  shardkit_session_free(sb);
  shardkit_coordinator_free(c);
}

struct waiter {
  shardkit_lock *lock;
  shardkit_cancel *cancel;
  shardkit_status status;
  shardkit_fencing_token token;
  char error[512];
  int64_t returned_at;
};

static void *waiter_main(void *arg) {
  struct waiter *w = arg;
  w->status = shardkit_lock_acquire(w->lock, -1, w->cancel, &w->token);
  last_error_into(w->error, sizeof w->error);
  w->returned_at = now_ms();
  return NULL;
}

static void test_cancel_from_another_thread(void) {
  shardkit_coordinator *c = embedded();
  shardkit_session *sa = session(c, 10), *sb = session(c, 10);
  shardkit_lock *a = new_lock(sa, "cancel-me"), *b = new_lock(sb, "cancel-me");
  shardkit_fencing_token ta, tb;
  struct waiter w;
  pthread_t th;
  bool got = false;
  int64_t fired;

  memset(&w, 0, sizeof w);
  CHECK_STATUS(shardkit_lock_acquire(a, -1, NULL, &ta), SHARDKIT_STATUS_OK);
  w.lock = b;
  w.status = SHARDKIT_STATUS_OK;
  CHECK_STATUS(shardkit_cancel_new(&w.cancel), SHARDKIT_STATUS_OK);
  CHECK(pthread_create(&th, NULL, waiter_main, &w) == 0);
  sleep_ms(300);
  fired = now_ms();
  CHECK_STATUS(shardkit_cancel_cancel(w.cancel), SHARDKIT_STATUS_OK);
  CHECK(pthread_join(th, NULL) == 0);
  CHECK(w.status == SHARDKIT_STATUS_CANCELLED);
  CHECK(strstr(w.error, "cancelled") != NULL);
  CHECK(w.returned_at - fired < 1000 * g_slow);
  /* The cancelled waiter left the queue: after a release the lock is free. */
  CHECK_STATUS(shardkit_lock_release(a), SHARDKIT_STATUS_OK);
  CHECK_STATUS(shardkit_lock_try_acquire(a, &got, &tb), SHARDKIT_STATUS_OK);
  CHECK(got);
  CHECK_STATUS(shardkit_lock_release(a), SHARDKIT_STATUS_OK);

  shardkit_cancel_free(w.cancel);
  shardkit_lock_free(a);
  shardkit_lock_free(b);
  CHECK_STATUS(shardkit_session_close(sa), SHARDKIT_STATUS_OK);
  CHECK_STATUS(shardkit_session_close(sb), SHARDKIT_STATUS_OK);
  shardkit_session_free(sa);
  shardkit_session_free(sb);
  shardkit_coordinator_free(c);
}

static void test_guarded_put_and_fence_gate(void) {
  shardkit_coordinator *c = embedded();
  shardkit_session *sa = session(c, 10), *sb = session(c, 10);
  shardkit_lock *a = new_lock(sa, "guarded"), *b = new_lock(sb, "guarded");
  shardkit_fence_gate *g = NULL;
  shardkit_fencing_token ta, tb;
  int64_t rev = 0, rev2 = 0;

  CHECK_STATUS(shardkit_lock_acquire(a, -1, NULL, &ta), SHARDKIT_STATUS_OK);
  CHECK_STATUS(shardkit_lock_put(a, S("jobs/state"), S("running"), &rev), SHARDKIT_STATUS_OK);
  CHECK(rev > ta.revision);
  CHECK_STATUS(shardkit_lock_put(a, S("jobs/state"), NULL, 0, &rev2), SHARDKIT_STATUS_OK);
  CHECK(rev2 > rev);
  CHECK_STATUS(shardkit_lock_release(a), SHARDKIT_STATUS_OK);
  /* After release the handle holds nothing: core refuses with FENCED. */
  rev = -1;
  CHECK_ERR(shardkit_lock_put(a, S("jobs/state"), S("stale"), &rev), SHARDKIT_STATUS_FENCED,
            "not held");
  CHECK(rev == -1);

  /* The next holder's token is newer; a gate refuses the older one after it. */
  CHECK_STATUS(shardkit_lock_acquire(b, -1, NULL, &tb), SHARDKIT_STATUS_OK);
  CHECK(tb.revision > ta.revision);
  CHECK_STATUS(shardkit_fence_gate_new(S("guarded"), &g), SHARDKIT_STATUS_OK);
  CHECK_STATUS(shardkit_fence_gate_admit(g, S("db"), ta.revision), SHARDKIT_STATUS_OK);
  CHECK_STATUS(shardkit_fence_gate_admit(g, S("db"), tb.revision), SHARDKIT_STATUS_OK);
  CHECK_STATUS(shardkit_fence_gate_admit(g, S("db"), tb.revision), SHARDKIT_STATUS_OK);
  CHECK_ERR(shardkit_fence_gate_admit(g, S("db"), ta.revision), SHARDKIT_STATUS_FENCED,
            "already seen");
  CHECK(shardkit_fence_gate_newest(g, S("db")) == tb.revision);
  /* Resources are independent. */
  CHECK_STATUS(shardkit_fence_gate_admit(g, S("cache"), ta.revision), SHARDKIT_STATUS_OK);
  CHECK(shardkit_fence_gate_newest(g, S("cache")) == ta.revision);
  CHECK(shardkit_fence_gate_newest(g, S("none")) == 0);
  shardkit_fence_gate_free(g);

  CHECK_STATUS(shardkit_lock_release(b), SHARDKIT_STATUS_OK);
  shardkit_lock_free(a);
  shardkit_lock_free(b);
  CHECK_STATUS(shardkit_session_close(sa), SHARDKIT_STATUS_OK);
  CHECK_STATUS(shardkit_session_close(sb), SHARDKIT_STATUS_OK);
  shardkit_session_free(sa);
  shardkit_session_free(sb);
  shardkit_coordinator_free(c);
}

/* ---- elections and observers ------------------------------------------- */

enum { MAX_EVENTS = 64 };

struct observed {
  pthread_mutex_t mu;
  int n;
  bool has[MAX_EVENTS];
  char value[MAX_EVENTS][32];
  int64_t revision[MAX_EVENTS];
  /* Probes made from inside the first callback. */
  const shardkit_lock *probe_lock;
  const shardkit_coordinator *probe_coord;
  shardkit_status probe_acquire, probe_leader;
  char probe_error[256];
  int probed;
};

static void on_leader(void *ud, const shardkit_leader_event *ev) {
  struct observed *o = ud;
  bool has = ev->has_leader;
  const uint8_t *value = ev->value;
  size_t len = ev->value_len;
  int64_t revision = ev->revision;
  /* The stores here do not fail: every event is a state. */
  record(ev->status == SHARDKIT_STATUS_OK && ev->message_len == 0 && ev->message[0] == '\0',
         __FILE__, __LINE__, "a leader event is a state", NULL);
  record(!has || ev->lease != 0, __FILE__, __LINE__, "a leader has its lease", NULL);
  pthread_mutex_lock(&o->mu);
  if (!o->probed && o->probe_lock) {
    shardkit_fencing_token t;
    bool found;
    size_t vlen;
    o->probed = 1;
    /* Blocking calls from a runtime thread fail instead of deadlocking. */
    o->probe_acquire = shardkit_lock_acquire(o->probe_lock, -1, NULL, &t);
    last_error_into(o->probe_error, sizeof o->probe_error);
    o->probe_leader = shardkit_coordinator_leader(o->probe_coord, S("primary"), NULL, 0, &found,
                                                  &vlen, &t);
  }
  if (o->n < MAX_EVENTS) {
    o->has[o->n] = has;
    o->revision[o->n] = revision;
    o->value[o->n][0] = '\0';
    if (has) {
      size_t n = len < 31 ? len : 31;
      memcpy(o->value[o->n], value, n);
      o->value[o->n][n] = '\0';
    } else {
      record(value == NULL && len == 0 && revision == 0, __FILE__, __LINE__,
             "no-leader callback has NULL/0/0", NULL);
    }
    o->n++;
  }
  pthread_mutex_unlock(&o->mu);
}

static int observed_count(struct observed *o) {
  int n;
  pthread_mutex_lock(&o->mu);
  n = o->n;
  pthread_mutex_unlock(&o->mu);
  return n;
}

/* Whether the last event seen is `value` (NULL: "no leader"). */
static int observed_last_is(struct observed *o, const char *value) {
  int ok;
  pthread_mutex_lock(&o->mu);
  ok = o->n > 0 && (value ? (o->has[o->n - 1] && strcmp(o->value[o->n - 1], value) == 0)
                          : !o->has[o->n - 1]);
  pthread_mutex_unlock(&o->mu);
  return ok;
}

static void test_election_and_observer(void) {
  shardkit_coordinator *c = embedded();
  shardkit_session *s1 = session(c, 10), *s2 = session(c, 10);
  shardkit_election *e1 = NULL, *e2 = NULL;
  shardkit_lock *probe = new_lock(s2, "probe");
  shardkit_observer *obs = NULL;
  struct observed *o = calloc(1, sizeof *o);
  shardkit_fencing_token t1, t2, lt;
  uint8_t buf[64];
  size_t len = 0;
  bool found = true;
  char text[128];

  pthread_mutex_init(&o->mu, NULL);
  o->probe_lock = probe;
  o->probe_coord = c;
  CHECK_STATUS(shardkit_observer_start(c, S("primary"), NULL, on_leader, o, &obs),
               SHARDKIT_STATUS_OK);
  /* First call: the current state, no leader. */
  WAIT_UNTIL(observed_count(o) >= 1, 3000);
  CHECK(observed_last_is(o, NULL));

  CHECK_STATUS(shardkit_coordinator_leader(c, S("primary"), buf, sizeof buf, &found, &len, &lt),
               SHARDKIT_STATUS_OK);
  CHECK(!found && len == 0 && lt.revision == 0 && lt.lease == 0);

  CHECK_STATUS(shardkit_election_new(s1, S("primary"), &e1), SHARDKIT_STATUS_OK);
  CHECK_STATUS(shardkit_election_new(s2, S("primary"), &e2), SHARDKIT_STATUS_OK);
  CHECK_STATUS(shardkit_election_campaign(e1, S("alpha"), -1, NULL, &t1), SHARDKIT_STATUS_OK);
  CHECK(t1.revision > 0 && t1.lease == shardkit_session_lease_id(s1));
  WAIT_UNTIL(observed_last_is(o, "alpha"), 3000);
  CHECK(observed_last_is(o, "alpha"));

  CHECK_STATUS(shardkit_coordinator_leader(c, S("primary"), buf, sizeof buf, &found, &len, &lt),
               SHARDKIT_STATUS_OK);
  CHECK(found && len == 5 && memcmp(buf, "alpha", 5) == 0);
  CHECK(lt.revision == t1.revision && lt.lease == t1.lease);
  /* Too small a buffer: BUFFER_TOO_SMALL with the size needed. */
  len = 0;
  CHECK_STATUS(shardkit_coordinator_leader(c, S("primary"), buf, 2, &found, &len, &lt),
               SHARDKIT_STATUS_BUFFER_TOO_SMALL);
  CHECK(len == 5);

  CHECK_STATUS(shardkit_election_token_text(e1, (uint8_t *)text, sizeof text - 1, &len),
               SHARDKIT_STATUS_OK);
  text[len] = '\0';
  CHECK(strncmp(text, "leader:primary@", 15) == 0);

  /* A second candidate waits; with a timeout it gives up. */
  CHECK_ERR(shardkit_election_campaign(e2, S("beta"), 200, NULL, &t2), SHARDKIT_STATUS_TIMEOUT,
            "primary");

  CHECK_STATUS(shardkit_election_proclaim(e1, S("alpha2")), SHARDKIT_STATUS_OK);
  WAIT_UNTIL(observed_last_is(o, "alpha2"), 3000);
  CHECK(observed_last_is(o, "alpha2"));

  CHECK_STATUS(shardkit_election_resign(e1), SHARDKIT_STATUS_OK);
  CHECK_ERR(shardkit_election_token_text(e1, (uint8_t *)text, sizeof text - 1, &len),
            SHARDKIT_STATUS_FENCED, "not leader");
  WAIT_UNTIL(observed_last_is(o, NULL), 3000);
  CHECK(observed_last_is(o, NULL));
  CHECK_STATUS(shardkit_coordinator_leader(c, S("primary"), buf, sizeof buf, &found, &len, &lt),
               SHARDKIT_STATUS_OK);
  CHECK(!found);

  CHECK_STATUS(shardkit_election_campaign(e2, S("beta"), 2000, NULL, &t2), SHARDKIT_STATUS_OK);
  CHECK(t2.revision > t1.revision);
  WAIT_UNTIL(observed_last_is(o, "beta"), 3000);
  CHECK(observed_last_is(o, "beta"));
  pthread_mutex_lock(&o->mu);
  CHECK(o->revision[o->n - 1] == t2.revision);
  pthread_mutex_unlock(&o->mu);

  /* The probe made inside the first callback (a runtime thread). */
  pthread_mutex_lock(&o->mu);
  CHECK(o->probed);
  CHECK(o->probe_acquire == SHARDKIT_STATUS_INVALID_ARGUMENT);
  CHECK(strstr(o->probe_error, "runtime thread") != NULL);
  CHECK(o->probe_leader == SHARDKIT_STATUS_INVALID_ARGUMENT);
  pthread_mutex_unlock(&o->mu);

  shardkit_observer_free(obs);
  pthread_mutex_destroy(&o->mu);
  free(o);

  CHECK_STATUS(shardkit_election_resign(e2), SHARDKIT_STATUS_OK);
  shardkit_election_free(e1);
  shardkit_election_free(e2);
  shardkit_lock_free(probe);
  CHECK_STATUS(shardkit_session_close(s1), SHARDKIT_STATUS_OK);
  CHECK_STATUS(shardkit_session_close(s2), SHARDKIT_STATUS_OK);
  shardkit_session_free(s1);
  shardkit_session_free(s2);
  shardkit_coordinator_free(c);
}

/* The observer's userdata is freed right after shardkit_observer_free: the
 * callback must not be running then nor run later (ASan/valgrind would see
 * the use after free). The callback is slow, so the free overlaps a call. */
struct slow_obs {
  pthread_mutex_t mu;
  int calls;
  int inside;
};

static void slow_leader(void *ud, const shardkit_leader_event *ev) {
  struct slow_obs *o = ud;
  (void)ev;
  pthread_mutex_lock(&o->mu);
  o->inside = 1;
  o->calls++;
  pthread_mutex_unlock(&o->mu);
  sleep_ms(200);
  pthread_mutex_lock(&o->mu);
  o->inside = 0;
  pthread_mutex_unlock(&o->mu);
}

static int slow_inside(struct slow_obs *o) {
  int v;
  pthread_mutex_lock(&o->mu);
  v = o->inside;
  pthread_mutex_unlock(&o->mu);
  return v;
}

/* An observer that frees itself from inside its callback. */
struct self_free {
  pthread_mutex_t mu;
  shardkit_observer *self;
  int calls;
  int freed;
};

static void self_freeing(void *ud, const shardkit_leader_event *ev) {
  struct self_free *sf = ud;
  bool has = ev->has_leader;
  pthread_mutex_lock(&sf->mu);
  sf->calls++;
  if (has && sf->self) {
    shardkit_observer *me = sf->self;
    sf->self = NULL;
    pthread_mutex_unlock(&sf->mu);
    shardkit_observer_free(me); /* must not deadlock on itself */
    pthread_mutex_lock(&sf->mu);
    sf->freed = 1;
  }
  pthread_mutex_unlock(&sf->mu);
}

static void test_observer_free_waits(void) {
  shardkit_coordinator *c = embedded();
  shardkit_session *s = session(c, 10);
  shardkit_election *e = NULL;
  shardkit_observer *obs = NULL, *obs2 = NULL;
  struct slow_obs *o = calloc(1, sizeof *o);
  struct self_free sf;
  shardkit_fencing_token t;
  int calls_at_free;

  pthread_mutex_init(&o->mu, NULL);
  CHECK_STATUS(shardkit_observer_start(c, S("slow"), NULL, slow_leader, o, &obs),
               SHARDKIT_STATUS_OK);
  WAIT_UNTIL(slow_inside(o), 3000);
  CHECK(slow_inside(o));
  shardkit_observer_free(obs); /* mid-call: waits for it */
  CHECK(!slow_inside(o));
  pthread_mutex_lock(&o->mu);
  calls_at_free = o->calls;
  pthread_mutex_unlock(&o->mu);
  CHECK(calls_at_free == 1);
  pthread_mutex_destroy(&o->mu);
  free(o);
  /* Changes after the free reach no callback (a call would touch freed
   * memory). */
  CHECK_STATUS(shardkit_election_new(s, S("slow"), &e), SHARDKIT_STATUS_OK);
  CHECK_STATUS(shardkit_election_campaign(e, S("x"), -1, NULL, &t), SHARDKIT_STATUS_OK);
  CHECK_STATUS(shardkit_election_proclaim(e, S("y")), SHARDKIT_STATUS_OK);
  sleep_ms(300);

  /* Self-free from inside the callback, on the first "has leader" call. */
  memset(&sf, 0, sizeof sf);
  pthread_mutex_init(&sf.mu, NULL);
  pthread_mutex_lock(&sf.mu);
  CHECK_STATUS(shardkit_observer_start(c, S("slow"), NULL, self_freeing, &sf, &obs2),
               SHARDKIT_STATUS_OK);
  sf.self = obs2;
  pthread_mutex_unlock(&sf.mu);
  {
    int freed = 0;
    int64_t deadline = now_ms() + 3000 * g_slow;
    while (!freed && now_ms() < deadline) {
      pthread_mutex_lock(&sf.mu);
      freed = sf.freed;
      pthread_mutex_unlock(&sf.mu);
      if (!freed) sleep_ms(10);
    }
    CHECK(freed);
  }
  CHECK_STATUS(shardkit_election_proclaim(e, S("z")), SHARDKIT_STATUS_OK);
  sleep_ms(200);
  pthread_mutex_lock(&sf.mu);
  CHECK(sf.calls == 1);
  pthread_mutex_unlock(&sf.mu);
  pthread_mutex_destroy(&sf.mu);

  shardkit_election_free(e);
  CHECK_STATUS(shardkit_session_close(s), SHARDKIT_STATUS_OK);
  shardkit_session_free(s);
  shardkit_coordinator_free(c);
}

/* ---- session loss --------------------------------------------------------- */

struct lost {
  pthread_mutex_t mu;
  int calls;
  shardkit_status code;
  char message[512];
  size_t message_len;
  int nul_terminated;
  pthread_t thread;
  const shardkit_lock *probe_lock;
  shardkit_status probe;
};

static void on_lost(void *ud, shardkit_status code, const char *msg, size_t len) {
  struct lost *l = ud;
  pthread_mutex_lock(&l->mu);
  l->calls++;
  l->code = code;
  l->message_len = len;
  l->nul_terminated = msg[len] == '\0';
  snprintf(l->message, sizeof l->message, "%.*s", (int)len, msg);
  l->thread = pthread_self();
  if (l->probe_lock) {
    shardkit_fencing_token t;
    l->probe = shardkit_lock_acquire(l->probe_lock, 100, NULL, &t);
  }
  pthread_mutex_unlock(&l->mu);
}

static int lost_calls(struct lost *l) {
  int n;
  pthread_mutex_lock(&l->mu);
  n = l->calls;
  pthread_mutex_unlock(&l->mu);
  return n;
}

static void test_on_lost(void) {
  shardkit_coordinator *c = embedded();
  shardkit_session *victim = session(c, 3), *other = session(c, 10), *closed = session(c, 3);
  shardkit_session *freed = session(c, 3), *resumed = NULL;
  shardkit_lock *probe = new_lock(other, "probe");
  shardkit_lock *held = new_lock(victim, "held");
  shardkit_lock *keeper = new_lock(freed, "keeper");
  struct lost *l = calloc(1, sizeof *l), *l2 = calloc(1, sizeof *l2);
  struct lost *lc = calloc(1, sizeof *lc), *lf = calloc(1, sizeof *lf);
  shardkit_fencing_token t;
  int64_t rev = 0, lease = shardkit_session_lease_id(victim);
  char hex[32];
  shardkit_status st = SHARDKIT_STATUS_OK;

  pthread_mutex_init(&l->mu, NULL);
  pthread_mutex_init(&l2->mu, NULL);
  pthread_mutex_init(&lc->mu, NULL);
  pthread_mutex_init(&lf->mu, NULL);
  l->probe_lock = probe;

  /* Resuming a live lease works (and shares it). */
  CHECK_STATUS(shardkit_session_resume(c, lease, &resumed), SHARDKIT_STATUS_OK);
  CHECK(shardkit_session_lease_id(resumed) == lease);
  shardkit_session_free(resumed);

  CHECK_STATUS(shardkit_session_on_lost(victim, on_lost, l), SHARDKIT_STATUS_OK);
  CHECK_STATUS(shardkit_session_on_lost(closed, on_lost, lc), SHARDKIT_STATUS_OK);
  CHECK_STATUS(shardkit_session_on_lost(freed, on_lost, lf), SHARDKIT_STATUS_OK);
  CHECK_STATUS(shardkit_lock_acquire(held, -1, NULL, &t), SHARDKIT_STATUS_OK);

  /* Another party revokes the lease: the keepalive notices and the session
   * is lost, its callback called once on a runtime thread. */
  CHECK_STATUS(shardkit_coordinator_revoke(c, lease), SHARDKIT_STATUS_OK);
  WAIT_UNTIL(lost_calls(l) >= 1, 5000);
  CHECK(lost_calls(l) == 1);
  pthread_mutex_lock(&l->mu);
  CHECK(l->code == SHARDKIT_STATUS_SESSION_LOST);
  snprintf(hex, sizeof hex, "%llx", (unsigned long long)lease);
  CHECK(strstr(l->message, hex) != NULL);
  CHECK(l->nul_terminated && l->message_len == strlen(l->message));
  CHECK(!pthread_equal(l->thread, pthread_self()));
  CHECK(l->probe == SHARDKIT_STATUS_INVALID_ARGUMENT);
  pthread_mutex_unlock(&l->mu);
  CHECK(shardkit_session_is_lost(victim));
  CHECK(shardkit_session_remaining_ms(victim) == 0);
  CHECK_ERR(shardkit_session_check(victim), SHARDKIT_STATUS_SESSION_LOST, hex);
  /* The hold is gone with the lease: guarded writes are refused. */
  st = shardkit_lock_put(held, S("k"), S("v"), &rev);
  CHECK(st == SHARDKIT_STATUS_SESSION_LOST);
  CHECK_STATUS(shardkit_lock_release(held), SHARDKIT_STATUS_FENCED);

  /* Registered after the loss: called at once, on this thread. */
  CHECK_STATUS(shardkit_session_on_lost(victim, on_lost, l2), SHARDKIT_STATUS_OK);
  CHECK(lost_calls(l2) == 1);
  pthread_mutex_lock(&l2->mu);
  CHECK(pthread_equal(l2->thread, pthread_self()));
  pthread_mutex_unlock(&l2->mu);
  sleep_ms(300);
  CHECK(lost_calls(l) == 1); /* exactly once */

  /* A closed session never calls back, even once its lease is revoked. */
  CHECK_STATUS(shardkit_session_close(closed), SHARDKIT_STATUS_OK);
  CHECK(!shardkit_session_is_lost(closed));

  /* A freed session handle whose lease lives on through a lock: the loss
   * happens, but the callback was disarmed by the free. */
  {
    int64_t freed_lease = shardkit_session_lease_id(freed);
    shardkit_session_free(freed);
    CHECK_STATUS(shardkit_coordinator_revoke(c, freed_lease), SHARDKIT_STATUS_OK);
  }
  {
    bool got = false;
    int64_t deadline = now_ms() + 5000 * g_slow;
    st = SHARDKIT_STATUS_OK;
    while (st != SHARDKIT_STATUS_SESSION_LOST && now_ms() < deadline) {
      st = shardkit_lock_try_acquire(keeper, &got, &t);
      if (st == SHARDKIT_STATUS_OK && got) {
        (void)shardkit_lock_release(keeper);
      }
      if (st != SHARDKIT_STATUS_SESSION_LOST) sleep_ms(50);
    }
    CHECK_STATUS(st, SHARDKIT_STATUS_SESSION_LOST);
  }
  sleep_ms(100);
  CHECK(lost_calls(lf) == 0);
  CHECK(lost_calls(lc) == 0);

  shardkit_lock_free(keeper);
  shardkit_lock_free(held);
  shardkit_lock_free(probe);
  CHECK_STATUS(shardkit_session_close(victim), SHARDKIT_STATUS_OK);
  CHECK_STATUS(shardkit_session_close(other), SHARDKIT_STATUS_OK);
  shardkit_session_free(victim);
  shardkit_session_free(other);
  shardkit_session_free(closed);
  shardkit_coordinator_free(c);
  pthread_mutex_destroy(&l->mu);
  pthread_mutex_destroy(&l2->mu);
  pthread_mutex_destroy(&lc->mu);
  pthread_mutex_destroy(&lf->mu);
  free(l);
  free(l2);
  free(lc);
  free(lf);
}

/* ---- shard ownership ------------------------------------------------------ */

enum { SHARDS = 8 };
static const char *const g_shards[SHARDS] = {"s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7"};

struct ownership {
  pthread_mutex_t mu;
  int owner[SHARDS]; /* worker index, or -1 */
  int64_t token[SHARDS];
  int conflicts;     /* a gain while another worker held the shard */
  int bad_events;    /* a loss of a shard not held, an unknown shard */
  int events;
};

struct worker_ctx {
  struct ownership *own;
  int index;
};

static int shard_index(const char *shard, size_t len) {
  int i;
  for (i = 0; i < SHARDS; i++)
    if (strlen(g_shards[i]) == len && memcmp(g_shards[i], shard, len) == 0) return i;
  return -1;
}

static void on_ownership(void *ud, bool gained, const char *shard, size_t len, int64_t token) {
  struct worker_ctx *w = ud;
  struct ownership *o = w->own;
  int i = shard_index(shard, len);
  pthread_mutex_lock(&o->mu);
  o->events++;
  if (i < 0 || shard[len] != '\0') {
    o->bad_events++;
  } else if (gained) {
    if (o->owner[i] != -1 || token <= o->token[i]) o->conflicts++;
    o->owner[i] = w->index;
    o->token[i] = token;
  } else {
    if (o->owner[i] != w->index || token != 0) o->bad_events++;
    o->owner[i] = -1;
  }
  pthread_mutex_unlock(&o->mu);
}

/* How many shards worker `index` holds (per the callbacks); -1: any. */
static int owned_by(struct ownership *o, int index) {
  int i, n = 0;
  pthread_mutex_lock(&o->mu);
  for (i = 0; i < SHARDS; i++)
    if (index < 0 ? o->owner[i] != -1 : o->owner[i] == index) n++;
  pthread_mutex_unlock(&o->mu);
  return n;
}

/* Whether every shard is owned by exactly one of `a` and `b`, per
 * shardkit_shard_owner_owns. */
static int exactly_one_owner(const shardkit_shard_owner *a, const shardkit_shard_owner *b) {
  int i;
  for (i = 0; i < SHARDS; i++) {
    bool in_a = false, in_b = false;
    int64_t t;
    if (shardkit_shard_owner_owns(a, SZ(g_shards[i]), &in_a, &t) != SHARDKIT_STATUS_OK ||
        shardkit_shard_owner_owns(b, SZ(g_shards[i]), &in_b, &t) != SHARDKIT_STATUS_OK ||
        in_a == in_b)
      return 0;
  }
  return 1;
}

static void test_shard_owner(void) {
  shardkit_coordinator *c = embedded();
  shardkit_session *s1 = session(c, 10), *s2 = session(c, 10);
  shardkit_shard_owner *w1 = NULL, *w2 = NULL, *dup = NULL;
  struct ownership *o = calloc(1, sizeof *o);
  struct worker_ctx c1, c2;
  size_t lens[SHARDS];
  int i, n1, n2;

  pthread_mutex_init(&o->mu, NULL);
  for (i = 0; i < SHARDS; i++) {
    o->owner[i] = -1;
    lens[i] = strlen(g_shards[i]);
  }
  c1.own = o;
  c1.index = 1;
  c2.own = o;
  c2.index = 2;
  CHECK_STATUS(shardkit_shard_owner_start(s1, S("g"), S("w1"), (const char *const *)g_shards,
                                          lens, SHARDS, on_ownership, &c1, &w1),
               SHARDKIT_STATUS_OK);
  WAIT_UNTIL(owned_by(o, 1) == SHARDS, 5000);
  CHECK(owned_by(o, 1) == SHARDS);
  /* The same worker name again is refused while w1 is live. */
  CHECK_ERR(shardkit_shard_owner_start(s2, S("g"), S("w1"), (const char *const *)g_shards, lens,
                                       SHARDS, on_ownership, &c2, &dup),
            SHARDKIT_STATUS_DUPLICATE_NODE, "w1");
  CHECK(dup == NULL);

  CHECK_STATUS(shardkit_shard_owner_start(s2, S("g"), S("w2"), (const char *const *)g_shards,
                                          lens, SHARDS, on_ownership, &c2, &w2),
               SHARDKIT_STATUS_OK);
  WAIT_UNTIL(owned_by(o, 2) > 0 && owned_by(o, -1) == SHARDS, 5000);
  n1 = owned_by(o, 1);
  n2 = owned_by(o, 2);
  CHECK(n1 > 0 && n2 > 0 && n1 + n2 == SHARDS);
  /* Each shard is owned by exactly one worker, as both handles say (once
   * the rebalance settled: a shard moving over is briefly owned by none). */
  WAIT_UNTIL(exactly_one_owner(w1, w2), 5000);
  for (i = 0; i < SHARDS; i++) {
    bool a = false, b = false;
    int64_t ta = -1, tb = -1;
    CHECK_STATUS(shardkit_shard_owner_owns(w1, SZ(g_shards[i]), &a, &ta), SHARDKIT_STATUS_OK);
    CHECK_STATUS(shardkit_shard_owner_owns(w2, SZ(g_shards[i]), &b, &tb), SHARDKIT_STATUS_OK);
    CHECK(a != b);
    CHECK(a ? (ta > 0 && tb == 0) : (tb > 0 && ta == 0));
  }
  CHECK_ERR(shardkit_shard_owner_owns(w1, S("bad\xff"), NULL, NULL), SHARDKIT_STATUS_INVALID_UTF8,
            "shard");

  /* Closing w1 hands its shards to w2. */
  CHECK_STATUS(shardkit_shard_owner_close(w1), SHARDKIT_STATUS_OK);
  CHECK(owned_by(o, 1) == 0); /* lost calls were made before close returned */
  WAIT_UNTIL(owned_by(o, 2) == SHARDS, 5000);
  CHECK(owned_by(o, 2) == SHARDS);
  pthread_mutex_lock(&o->mu);
  CHECK(o->conflicts == 0);
  CHECK(o->bad_events == 0);
  pthread_mutex_unlock(&o->mu);

  /* Free without close: no more calls (the context is freed right after). */
  shardkit_shard_owner_free(w2);
  shardkit_shard_owner_free(w1);
  pthread_mutex_destroy(&o->mu);
  free(o);
  CHECK_STATUS(shardkit_session_close(s1), SHARDKIT_STATUS_OK);
  CHECK_STATUS(shardkit_session_close(s2), SHARDKIT_STATUS_OK);
  shardkit_session_free(s1);
  shardkit_session_free(s2);
  shardkit_coordinator_free(c);
}

static void test_describe(void) {
  shardkit_coordinator *c = embedded();
  char buf[64];
  size_t len = 0;
  CHECK_STATUS(shardkit_coordinator_describe(c, (uint8_t *)buf, sizeof buf - 1, &len),
               SHARDKIT_STATUS_OK);
  buf[len] = '\0';
  CHECK(strcmp(buf, "embedded store") == 0);
  CHECK_STATUS(shardkit_coordinator_describe(c, (uint8_t *)buf, 3, &len),
               SHARDKIT_STATUS_BUFFER_TOO_SMALL);
  CHECK(len == strlen("embedded store"));
  shardkit_coordinator_free(c);
}

/* ---- a real etcd (SHARDKIT_TEST_ETCD) ----------------------------------- */

/* A lock held for one scope under a lease of its own (core's ScopedLock). */
static void test_scoped_lock(void) {
  shardkit_coordinator *c = embedded();
  shardkit_scoped_lock *a = NULL, *b = NULL, *bad = NULL;
  shardkit_session *resumed = NULL;
  shardkit_cancel *cancel = NULL;
  shardkit_fencing_token t1, t2, t;
  bool held = true;

  CHECK_ERR(shardkit_scoped_lock_new(c, S(""), 10, &bad), SHARDKIT_STATUS_INVALID_ARGUMENT,
            "empty");
  CHECK_ERR(shardkit_scoped_lock_new(c, S("x"), 0, &bad), SHARDKIT_STATUS_INVALID_ARGUMENT,
            "ttl 0s");
  CHECK_ERR(shardkit_scoped_lock_new(NULL, S("x"), 10, &bad), SHARDKIT_STATUS_NULL_POINTER,
            "coord");
  CHECK_ERR(shardkit_scoped_lock_new(c, S("x"), 10, NULL), SHARDKIT_STATUS_NULL_POINTER, "out");
  CHECK(bad == NULL);

  CHECK_STATUS(shardkit_scoped_lock_new(c, S("scoped"), 30, &a), SHARDKIT_STATUS_OK);
  CHECK_STATUS(shardkit_scoped_lock_new(c, S("scoped"), 30, &b), SHARDKIT_STATUS_OK);
  CHECK_ERR(shardkit_scoped_lock_release(a), SHARDKIT_STATUS_INVALID_ARGUMENT, "not held");
  CHECK_STATUS(shardkit_scoped_lock_token(a, &held, &t), SHARDKIT_STATUS_OK);
  CHECK(!held && t.revision == 0 && t.lease == 0);

  CHECK_STATUS(shardkit_scoped_lock_acquire(a, -1, NULL, &t1), SHARDKIT_STATUS_OK);
  CHECK(t1.revision > 0 && t1.lease != 0);
  CHECK_STATUS(shardkit_scoped_lock_token(a, &held, &t), SHARDKIT_STATUS_OK);
  CHECK(held && t.revision == t1.revision && t.lease == t1.lease);
  CHECK_ERR(shardkit_scoped_lock_acquire(a, -1, NULL, &t), SHARDKIT_STATUS_INVALID_ARGUMENT,
            "already held");
  CHECK_ERR(shardkit_scoped_lock_acquire(b, 100, NULL, &t2), SHARDKIT_STATUS_TIMEOUT, "scoped");
  CHECK_STATUS(shardkit_scoped_lock_token(b, &held, &t), SHARDKIT_STATUS_OK);
  CHECK(!held);

  /* The release revokes the hold's lease. */
  CHECK_STATUS(shardkit_scoped_lock_release(a), SHARDKIT_STATUS_OK);
  CHECK_ERR(shardkit_session_resume(c, t1.lease, &resumed), SHARDKIT_STATUS_NOT_FOUND,
            "expired or was revoked");
  CHECK(resumed == NULL);
  CHECK_STATUS(shardkit_scoped_lock_acquire(b, 5000, NULL, &t2), SHARDKIT_STATUS_OK);
  CHECK(t2.revision > t1.revision && t2.lease != t1.lease);

  /* Freed while held: the lock is free again long before the 30 s TTL. */
  shardkit_scoped_lock_free(b);
  CHECK_STATUS(shardkit_scoped_lock_acquire(a, 5000, NULL, &t), SHARDKIT_STATUS_OK);
  CHECK(t.revision > t2.revision);
  CHECK_STATUS(shardkit_scoped_lock_release(a), SHARDKIT_STATUS_OK);

  /* A cancel that already fired: CANCELLED, and the handle stays usable. */
  CHECK_STATUS(shardkit_cancel_new(&cancel), SHARDKIT_STATUS_OK);
  CHECK_STATUS(shardkit_cancel_cancel(cancel), SHARDKIT_STATUS_OK);
  CHECK_ERR(shardkit_scoped_lock_acquire(a, -1, cancel, &t), SHARDKIT_STATUS_CANCELLED,
            "cancelled");
  CHECK_STATUS(shardkit_scoped_lock_acquire(a, 5000, NULL, &t), SHARDKIT_STATUS_OK);
  CHECK_STATUS(shardkit_scoped_lock_release(a), SHARDKIT_STATUS_OK);

  /* Another type of handle where a scoped lock belongs. */
  CHECK_ERR(shardkit_scoped_lock_release((const shardkit_scoped_lock *)c),
            SHARDKIT_STATUS_INVALID_ARGUMENT,
            "is not a shardkit_scoped_lock handle: it is a shardkit_coordinator");
  CHECK_ERR(shardkit_scoped_lock_release(NULL), SHARDKIT_STATUS_NULL_POINTER, "lock");

  shardkit_cancel_free(cancel);
  shardkit_scoped_lock_free(a);
  shardkit_scoped_lock_free(NULL);
  shardkit_coordinator_free(c);
}

static void test_etcd(const char *endpoints) {
  shardkit_coordinator *c = NULL;
  shardkit_session *s1 = NULL, *s2 = NULL;
  shardkit_lock *a = NULL, *b = NULL;
  shardkit_election *e = NULL;
  shardkit_observer *obs = NULL;
  struct observed *o = calloc(1, sizeof *o);
  struct lost *l = calloc(1, sizeof *l);
  shardkit_fencing_token ta, tb, te, lt;
  char buf[128];
  size_t len = 0;
  bool got = true, found = false;
  int64_t rev = 0;

  fprintf(stderr, "etcd part against %s\n", endpoints);
  pthread_mutex_init(&o->mu, NULL);
  pthread_mutex_init(&l->mu, NULL);
  CHECK_STATUS(shardkit_coordinator_connect(SZ(endpoints), 5000, &c), SHARDKIT_STATUS_OK);
  if (!c) goto out;
  CHECK_STATUS(shardkit_coordinator_describe(c, (uint8_t *)buf, sizeof buf - 1, &len),
               SHARDKIT_STATUS_OK);
  buf[len] = '\0';
  CHECK(strncmp(buf, "etcd at http://127.0.0.1:", 25) == 0);
  CHECK_STATUS(shardkit_session_new(c, 5, &s1), SHARDKIT_STATUS_OK);
  CHECK_STATUS(shardkit_session_new(c, 5, &s2), SHARDKIT_STATUS_OK);
  if (!s1 || !s2) goto out;
  a = new_lock(s1, "etcd-jobs");
  b = new_lock(s2, "etcd-jobs");
  CHECK_STATUS(shardkit_lock_acquire(a, 5000, NULL, &ta), SHARDKIT_STATUS_OK);
  CHECK_STATUS(shardkit_lock_try_acquire(b, &got, &tb), SHARDKIT_STATUS_OK);
  CHECK(!got);
  CHECK_STATUS(shardkit_lock_put(a, S("etcd-jobs/state"), S("x"), &rev), SHARDKIT_STATUS_OK);
  CHECK(rev > ta.revision);
  CHECK_ERR(shardkit_lock_acquire(b, 200, NULL, &tb), SHARDKIT_STATUS_TIMEOUT, "200 ms");
  CHECK_STATUS(shardkit_lock_release(a), SHARDKIT_STATUS_OK);
  CHECK_STATUS(shardkit_lock_acquire(b, 5000, NULL, &tb), SHARDKIT_STATUS_OK);
  CHECK(tb.revision > ta.revision);
  CHECK_STATUS(shardkit_lock_release(b), SHARDKIT_STATUS_OK);

  CHECK_STATUS(shardkit_observer_start(c, S("etcd-primary"), NULL, on_leader, o, &obs),
               SHARDKIT_STATUS_OK);
  WAIT_UNTIL(observed_count(o) >= 1, 5000);
  CHECK(observed_last_is(o, NULL));
  CHECK_STATUS(shardkit_election_new(s1, S("etcd-primary"), &e), SHARDKIT_STATUS_OK);
  CHECK_STATUS(shardkit_election_campaign(e, S("node-1"), 5000, NULL, &te), SHARDKIT_STATUS_OK);
  WAIT_UNTIL(observed_last_is(o, "node-1"), 5000);
  CHECK(observed_last_is(o, "node-1"));
  CHECK_STATUS(shardkit_coordinator_leader(c, S("etcd-primary"), (uint8_t *)buf, sizeof buf,
                                           &found, &len, &lt),
               SHARDKIT_STATUS_OK);
  CHECK(found && len == 6 && lt.revision == te.revision);

  /* Revoking s1's lease ends its leadership and the session. */
  CHECK_STATUS(shardkit_session_on_lost(s1, on_lost, l), SHARDKIT_STATUS_OK);
  CHECK_STATUS(shardkit_coordinator_revoke(c, shardkit_session_lease_id(s1)), SHARDKIT_STATUS_OK);
  WAIT_UNTIL(observed_last_is(o, NULL), 5000);
  CHECK(observed_last_is(o, NULL));
  WAIT_UNTIL(lost_calls(l) == 1, 5000);
  CHECK(lost_calls(l) == 1);
  CHECK(l->code == SHARDKIT_STATUS_SESSION_LOST);

out:
  shardkit_observer_free(obs);
  shardkit_election_free(e);
  shardkit_lock_free(a);
  shardkit_lock_free(b);
  if (s2) CHECK_STATUS(shardkit_session_close(s2), SHARDKIT_STATUS_OK);
  shardkit_session_free(s1);
  shardkit_session_free(s2);
  shardkit_coordinator_free(c);
  pthread_mutex_destroy(&o->mu);
  pthread_mutex_destroy(&l->mu);
  free(o);
  free(l);
}

int main(void) {
  const char *etcd = getenv("SHARDKIT_TEST_ETCD");
  check_init();
  test_status_codes();
  test_free_null();
  test_describe();
  test_bad_input();
  test_unreachable_endpoint();
  test_lock_basics();
  test_lock_contention();
  test_cancel_from_another_thread();
  test_guarded_put_and_fence_gate();
  test_election_and_observer();
  test_observer_free_waits();
  test_on_lost();
  test_shard_owner();
  test_scoped_lock();
  if (etcd && *etcd) {
    test_etcd(etcd);
  } else {
    fprintf(stderr, "SHARDKIT_TEST_ETCD not set: etcd part skipped\n");
  }
  /* A freed shard owner's or observer's task is aborted, and the runtime's
   * threads drop it (and the store it holds) a moment later: wait for that
   * before exit, or valgrind's leak check can find the store still alive. */
  sleep_ms(100L * g_slow);
  return check_done();
}
