/*
 * C tests of shardkit's merge ABI (top-k, intersection, union) and of the
 * HTTP/JSON scatter client (shardkit_http_scatter_*).
 *
 * Built and run by tests/c/run.sh: plain, under ASan+UBSan, and under
 * valgrind. The leaves are a small HTTP/1.1 server in this file (one thread
 * per connection on 127.0.0.1, port chosen by the kernel), routing by path:
 *
 *   /ok...  200 {"path":"<path>","got":<request body>}
 *   /bad    200 with malformed JSON
 *   /500    500 {"error":"boom"}
 *   /slow   sleeps SLOW_MS (times SHARDKIT_TEST_SLOW), then answers as /ok
 *
 * Every response carries `Connection: close`. Merge results are compared
 * with naive references (sort, bitmap counts) on seeded random inputs.
 */
#define _POSIX_C_SOURCE 200809L

#include "shardkit.h"

#include "check.h"

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- the leaf server -------------------------------------------------------- */

#define MAX_CONNS 512
#define SLOW_MS 1500

static struct {
  int fd;
  int port;
  pthread_t acceptor;
  pthread_mutex_t mu;
  int stopping;
  pthread_t conns[MAX_CONNS];
  int nconns;
  int requests; /* requests answered or started, for the tied test */
} g_srv = {.fd = -1, .mu = PTHREAD_MUTEX_INITIALIZER};

static int stopping(void) {
  pthread_mutex_lock(&g_srv.mu);
  int s = g_srv.stopping;
  pthread_mutex_unlock(&g_srv.mu);
  return s;
}

/* Writes all of buf; MSG_NOSIGNAL so a client that hung up (a cancelled
 * call) is an error here, not a SIGPIPE. */
static void send_all(int fd, const char *buf, size_t len) {
  while (len > 0) {
    ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
    if (n <= 0) return;
    buf += n;
    len -= (size_t)n;
  }
}

static void respond(int fd, int status, const char *reason, const char *body) {
  char head[256];
  int n = snprintf(head, sizeof head,
                   "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                   "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                   status, reason, strlen(body));
  send_all(fd, head, (size_t)n);
  send_all(fd, body, strlen(body));
}

/* Reads one request: headers up to the blank line, then Content-Length
 * bytes of body. Returns the body (NUL-terminated, in buf) or NULL. */
static char *read_request(int fd, char *buf, size_t cap, char *path, size_t path_cap) {
  size_t have = 0;
  char *end = NULL;
  while (end == NULL) {
    if (have + 1 >= cap) return NULL;
    ssize_t n = recv(fd, buf + have, cap - 1 - have, 0);
    if (n <= 0) return NULL;
    have += (size_t)n;
    buf[have] = '\0';
    end = strstr(buf, "\r\n\r\n");
  }
  /* "POST /path HTTP/1.1" */
  const char *sp = strchr(buf, ' ');
  if (sp == NULL) return NULL;
  size_t plen = strcspn(sp + 1, " ");
  if (plen >= path_cap) return NULL;
  memcpy(path, sp + 1, plen);
  path[plen] = '\0';
  size_t clen = 0;
  for (char *h = buf; h < end; h = strstr(h, "\r\n") + 2) {
    if (strncmp(h, "content-length:", 15) == 0 || strncmp(h, "Content-Length:", 15) == 0)
      clen = (size_t)strtoul(h + 15, NULL, 10);
  }
  char *body = end + 4;
  size_t head_len = (size_t)(body - buf);
  if (head_len + clen + 1 > cap) return NULL;
  while (have < head_len + clen) {
    ssize_t n = recv(fd, buf + have, head_len + clen - have, 0);
    if (n <= 0) return NULL;
    have += (size_t)n;
  }
  body[clen] = '\0';
  return body;
}

static void *serve_conn(void *arg) {
  int fd = (int)(intptr_t)arg;
  char buf[8192], path[256];
  char *body = read_request(fd, buf, sizeof buf, path, sizeof path);
  if (body != NULL) {
    pthread_mutex_lock(&g_srv.mu);
    g_srv.requests++;
    pthread_mutex_unlock(&g_srv.mu);
    if (strncmp(path, "/slow", 5) == 0) {
      /* Sleeps in steps so that stopping the server does not wait it out. */
      int64_t until = now_ms() + (int64_t)SLOW_MS * g_slow;
      while (now_ms() < until && !stopping()) sleep_ms(10);
    }
    if (strcmp(path, "/bad") == 0) {
      respond(fd, 200, "OK", "{\"answer\": [1, 2");
    } else if (strcmp(path, "/500") == 0) {
      respond(fd, 500, "Internal Server Error", "{\"error\":\"boom\"}");
    } else if (strncmp(path, "/ok", 3) == 0 || strncmp(path, "/slow", 5) == 0) {
      char out[8192 + 300];
      snprintf(out, sizeof out, "{\"path\":\"%s\",\"got\":%s}", path, *body ? body : "null");
      respond(fd, 200, "OK", out);
    } else {
      respond(fd, 404, "Not Found", "{\"error\":\"no route\"}");
    }
  }
  close(fd);
  return NULL;
}

static void *accept_loop(void *arg) {
  (void)arg;
  for (;;) {
    int c = accept(g_srv.fd, NULL, NULL);
    if (c < 0) {
      if (stopping()) return NULL;
      continue;
    }
    pthread_mutex_lock(&g_srv.mu);
    int slot = g_srv.nconns < MAX_CONNS ? g_srv.nconns++ : -1;
    pthread_mutex_unlock(&g_srv.mu);
    if (slot < 0 || pthread_create(&g_srv.conns[slot], NULL, serve_conn, (void *)(intptr_t)c)) {
      close(c);
      if (slot >= 0) {
        pthread_mutex_lock(&g_srv.mu);
        g_srv.nconns--;
        pthread_mutex_unlock(&g_srv.mu);
      }
    }
  }
}

static int server_start(void) {
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  g_srv.fd = socket(AF_INET, SOCK_STREAM, 0);
  if (g_srv.fd < 0 || bind(g_srv.fd, (struct sockaddr *)&a, sizeof a) != 0 ||
      listen(g_srv.fd, 128) != 0 || getsockname(g_srv.fd, (struct sockaddr *)&a, &len) != 0)
    return -1;
  g_srv.port = ntohs(a.sin_port);
  return pthread_create(&g_srv.acceptor, NULL, accept_loop, NULL) == 0 ? 0 : -1;
}

static void server_stop(void) {
  pthread_mutex_lock(&g_srv.mu);
  g_srv.stopping = 1;
  pthread_mutex_unlock(&g_srv.mu);
  /* Wakes the blocked accept (Linux returns EINVAL after shutdown). */
  shutdown(g_srv.fd, SHUT_RDWR);
  pthread_join(g_srv.acceptor, NULL);
  close(g_srv.fd);
  for (int i = 0; i < g_srv.nconns; i++) pthread_join(g_srv.conns[i], NULL);
}

static int requests(void) {
  pthread_mutex_lock(&g_srv.mu);
  int n = g_srv.requests;
  pthread_mutex_unlock(&g_srv.mu);
  return n;
}

/* ---- scatter fixtures -------------------------------------------------------- */

/* "http://127.0.0.1:<port><path>" into a static ring of buffers, so a test
 * can build several leaf strings inline. Paths may hold '|' to give replicas:
 * url("/ok/a|" ...) is not supported; use replicas2() for that. */
static const char *url(const char *path) {
  static char ring[16][160];
  static int next;
  char *b = ring[next++ % 16];
  snprintf(b, sizeof ring[0], "http://127.0.0.1:%d%s", g_srv.port, path);
  return b;
}

static const char *replicas2(const char *p1, const char *p2) {
  static char ring[4][340];
  static int next;
  char *b = ring[next++ % 4];
  snprintf(b, sizeof ring[0], "http://127.0.0.1:%d%s|http://127.0.0.1:%d%s", g_srv.port, p1,
           g_srv.port, p2);
  return b;
}

static shardkit_http_scatter *scatter_of(const char *const *leaves, size_t n,
                                         const shardkit_scatter_options *opts) {
  shardkit_http_scatter *s = NULL;
  CHECK_STATUS(shardkit_http_scatter_new(leaves, n, opts, &s), SHARDKIT_STATUS_OK);
  return s;
}

#define BODY "{\"q\":\"abc\"}"
#define TIMEOUT_MS (2000u * (unsigned)g_slow)

/* ---- scatter tests -------------------------------------------------------------- */

static void test_gather_all(void) {
  const char *leaves[] = {url("/ok/0"), url("/ok/1"), url("/ok/2")};
  shardkit_http_scatter *s = scatter_of(leaves, 3, NULL);
  CHECK(shardkit_http_scatter_len(s) == 3);
  char *json = NULL;
  /* Twice: the second call runs over pooled or fresh connections alike. */
  for (int round = 0; round < 2; round++) {
    CHECK_STATUS(shardkit_http_scatter_gather(s, BODY, strlen(BODY), TIMEOUT_MS, S("all"), &json),
                 SHARDKIT_STATUS_OK);
    CHECK_HAS(json, "\"answered\":3");
    CHECK_HAS(json, "\"total\":3");
    CHECK_HAS(json, "\"degraded\":false");
    CHECK_HAS(json, "\"missing\":[]");
    CHECK_HAS(json, "\"path\":\"/ok/0\"");
    CHECK_HAS(json, "\"path\":\"/ok/2\"");
    CHECK_HAS(json, "\"got\":{\"q\":\"abc\"}");
    CHECK_HAS(json, "\"leaf\":1");
    shardkit_string_free(json);
    json = NULL;
  }
  /* k of n. */
  CHECK_STATUS(shardkit_http_scatter_gather(s, BODY, strlen(BODY), TIMEOUT_MS, S("2"), &json),
               SHARDKIT_STATUS_OK);
  CHECK_HAS(json, "\"total\":3");
  shardkit_string_free(json);
  json = NULL;
  CHECK_ERR(shardkit_http_scatter_gather(s, BODY, strlen(BODY), TIMEOUT_MS, S("4"), &json),
            SHARDKIT_STATUS_INVALID_ARGUMENT, "coverage 4: K must be between 1 and the 3 leaves");
  CHECK(json == NULL);
  /* An empty body is sent as such (the leaf echoes null). */
  CHECK_STATUS(shardkit_http_scatter_gather(s, NULL, 0, TIMEOUT_MS, S("all"), &json),
               SHARDKIT_STATUS_OK);
  CHECK_HAS(json, "\"got\":null");
  shardkit_string_free(json);
  shardkit_http_scatter_free(s);
}

static void test_best_effort_with_slow_leaf(void) {
  const char *leaves[] = {url("/ok/0"), url("/slow")};
  shardkit_http_scatter *s = scatter_of(leaves, 2, NULL);
  char *json = NULL;
  unsigned timeout = 300u * (unsigned)g_slow;
  int64_t t0 = now_ms();
  CHECK_STATUS(shardkit_http_scatter_gather(s, BODY, strlen(BODY), timeout, S("best-effort"), &json),
               SHARDKIT_STATUS_OK);
  int64_t took = now_ms() - t0;
  CHECK(took >= (int64_t)timeout - 5);
  CHECK(took < (int64_t)SLOW_MS * g_slow);
  CHECK_HAS(json, "\"answered\":1");
  CHECK_HAS(json, "\"degraded\":true");
  CHECK_HAS(json, "\"missing\":[{\"code\":12");
  CHECK_HAS(json, "\"kind\":\"timed out\"");
  CHECK_HAS(json, "\"leaf\":1");
  shardkit_string_free(json);
  json = NULL;
  /* Every leaf required: the deadline cuts the slow one off. */
  CHECK_ERR(shardkit_http_scatter_gather(s, BODY, strlen(BODY), timeout, S("all"), &json),
            SHARDKIT_STATUS_TIMEOUT, "coverage 1/2");
  CHECK(json == NULL);
  shardkit_http_scatter_free(s);
}

static void test_bad_leaves(void) {
  int dead = free_port();
  char refused[80];
  snprintf(refused, sizeof refused, "http://127.0.0.1:%d/ok", dead);
  const char *leaves[] = {url("/ok/0"), url("/bad"), url("/500"), refused};
  shardkit_http_scatter *s = scatter_of(leaves, 4, NULL);
  char *json = NULL;
  CHECK_STATUS(shardkit_http_scatter_gather(s, BODY, strlen(BODY), TIMEOUT_MS, S("best-effort"), &json),
               SHARDKIT_STATUS_OK);
  CHECK_HAS(json, "\"answered\":1");
  CHECK_HAS(json, "\"total\":4");
  /* Missing entries in leaf order, keys in serde_json's sorted order. */
  CHECK_HAS(json, "{\"code\":17,\"error\":\"leaf http://127.0.0.1:");
  CHECK_HAS(json, "malformed JSON");
  CHECK_HAS(json, "\"kind\":\"bad response from a remote peer\",\"leaf\":1}");
  CHECK_HAS(json, "status 500");
  CHECK_HAS(json, "boom");
  CHECK_HAS(json, "\"leaf\":2}");
  CHECK_HAS(json, "{\"code\":11,");
  CHECK_HAS(json, "\"leaf\":3}");
  shardkit_string_free(json);
  json = NULL;
  shardkit_http_scatter_free(s);

  /* Every leaf required, one malformed: the gather fails and names it. */
  const char *two[] = {url("/ok/0"), url("/bad")};
  s = scatter_of(two, 2, NULL);
  CHECK_ERR(shardkit_http_scatter_gather(s, BODY, strlen(BODY), TIMEOUT_MS, S("all"), &json),
            SHARDKIT_STATUS_UNAVAILABLE, "malformed JSON");
  CHECK(strstr(last_error(), "bad response") != NULL);
  CHECK(json == NULL);
  shardkit_http_scatter_free(s);

  /* Root distribution reports the leaf's own error kind. */
  const char *bad[] = {url("/bad")}, *err500[] = {url("/500")};
  s = scatter_of(bad, 1, NULL);
  CHECK_ERR(shardkit_http_scatter_first(s, BODY, strlen(BODY), TIMEOUT_MS, &json),
            SHARDKIT_STATUS_BAD_RESPONSE, "malformed JSON");
  shardkit_http_scatter_free(s);
  s = scatter_of(err500, 1, NULL);
  CHECK_ERR(shardkit_http_scatter_first(s, BODY, strlen(BODY), TIMEOUT_MS, &json),
            SHARDKIT_STATUS_BAD_RESPONSE, "500");
  CHECK(json == NULL);
  shardkit_http_scatter_free(s);
}

/* The coverage policy is spelled as in every binding and the CLI, and
 * parsed by core's one parser; a bad one is an error naming it. */
static void test_coverage_spellings(void) {
  const char *leaves[] = {url("/ok/0"), url("/ok/1"), url("/ok/2")};
  shardkit_http_scatter *s = scatter_of(leaves, 3, NULL);
  const char *good[] = {"all", "best-effort", "best_effort", "2", "2/3", " 3 ", "1 / 3"};
  struct {
    const char *text, *says;
  } bad[] = {
      {"most", "coverage \"most\": expected all, best-effort, K or K/N"},
      {"All", "coverage \"All\""},
      {"0", "coverage 0: K must be between 1 and the 3 leaves"},
      {"4", "coverage 4: K must be between 1 and the 3 leaves"},
      {"2/4", "coverage \"2/4\": N is 4 but the scatter has 3 leaves"},
      {"2/x", "coverage \"2/x\""},
      {"-1", "coverage \"-1\""},
  };
  char *json = NULL;
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    CHECK_STATUS(shardkit_http_scatter_gather(s, BODY, strlen(BODY), TIMEOUT_MS, SZ(good[i]),
                                              &json),
                 SHARDKIT_STATUS_OK);
    CHECK_HAS(json, "\"answered\":3");
    shardkit_string_free(json);
    json = NULL;
  }
  /* NULL/0 (the empty buffer) takes the default: all. */
  CHECK_STATUS(shardkit_http_scatter_gather(s, BODY, strlen(BODY), TIMEOUT_MS, NULL, 0, &json),
               SHARDKIT_STATUS_OK);
  shardkit_string_free(json);
  json = NULL;
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    CHECK_ERR(shardkit_http_scatter_gather(s, BODY, strlen(BODY), TIMEOUT_MS, SZ(bad[i].text),
                                           &json),
              SHARDKIT_STATUS_INVALID_ARGUMENT, bad[i].says);
    CHECK(json == NULL);
  }
  CHECK_ERR(shardkit_http_scatter_gather(s, BODY, strlen(BODY), TIMEOUT_MS, S("\xff"), &json),
            SHARDKIT_STATUS_INVALID_UTF8, "coverage");
  CHECK_ERR(shardkit_http_scatter_gather(s, BODY, strlen(BODY), TIMEOUT_MS, NULL, 3, &json),
            SHARDKIT_STATUS_NULL_POINTER, "coverage is NULL but its length is 3");
  shardkit_http_scatter_free(s);
}

static void test_first(void) {
  const char *one[] = {replicas2("/ok/a", "/ok/b")};
  shardkit_http_scatter *s = scatter_of(one, 1, NULL);
  char *json = NULL;
  CHECK_STATUS(shardkit_http_scatter_first(s, BODY, strlen(BODY), TIMEOUT_MS, &json),
               SHARDKIT_STATUS_OK);
  CHECK_HAS(json, "\"got\":{\"q\":\"abc\"}");
  CHECK_HAS(json, "\"path\":\"/ok/");
  shardkit_string_free(json);
  json = NULL;
  shardkit_http_scatter_free(s);

  /* A failing replica fails over to the other. */
  const char *failover[] = {replicas2("/500", "/ok/c")};
  s = scatter_of(failover, 1, NULL);
  for (int i = 0; i < 3; i++) {
    CHECK_STATUS(shardkit_http_scatter_first(s, BODY, strlen(BODY), TIMEOUT_MS, &json),
                 SHARDKIT_STATUS_OK);
    CHECK_HAS(json, "\"path\":\"/ok/c\"");
    shardkit_string_free(json);
    json = NULL;
  }
  shardkit_http_scatter_free(s);

  /* Slow root: timeout. */
  const char *slow[] = {url("/slow")};
  s = scatter_of(slow, 1, NULL);
  CHECK_ERR(shardkit_http_scatter_first(s, BODY, strlen(BODY), 200u * (unsigned)g_slow, &json),
            SHARDKIT_STATUS_TIMEOUT, "did not answer");
  shardkit_http_scatter_free(s);

  const char *two[] = {url("/ok/0"), url("/ok/1")};
  s = scatter_of(two, 2, NULL);
  CHECK_ERR(shardkit_http_scatter_first(s, BODY, strlen(BODY), TIMEOUT_MS, &json),
            SHARDKIT_STATUS_INVALID_ARGUMENT, "exactly one leaf");
  CHECK(json == NULL);
  shardkit_http_scatter_free(s);
}

static void test_options(void) {
  shardkit_scatter_options o;
  CHECK_STATUS(shardkit_scatter_options_default(&o), SHARDKIT_STATUS_OK);
  CHECK(!o.hedge && !o.tied && o.hedge_percentile == 0.95 && o.hedge_budget == 0.05 &&
        o.hedge_min_samples == 20);
  CHECK_STATUS(shardkit_scatter_options_default(NULL), SHARDKIT_STATUS_NULL_POINTER);

  /* Tied requests: both replicas are asked at once. */
  o.tied = true;
  const char *one[] = {replicas2("/ok/t1", "/ok/t2")};
  shardkit_http_scatter *s = scatter_of(one, 1, &o);
  char *json = NULL;
  int before = requests();
  CHECK_STATUS(shardkit_http_scatter_gather(s, BODY, strlen(BODY), TIMEOUT_MS, S("all"), &json),
               SHARDKIT_STATUS_OK);
  CHECK_HAS(json, "\"path\":\"/ok/t");
  shardkit_string_free(json);
  json = NULL;
  shardkit_http_scatter_free(s);
  /* The loser may be cancelled before the server reads it; one is certain. */
  CHECK(requests() - before >= 1);

  /* Hedging on, after one sample, with the whole budget: a hedge may go
   * out, and the gather still has exactly one answer per leaf. */
  CHECK_STATUS(shardkit_scatter_options_default(&o), SHARDKIT_STATUS_OK);
  o.hedge = true;
  o.hedge_min_samples = 1;
  o.hedge_budget = 1.0;
  o.hedge_percentile = 0.5;
  const char *hedged[] = {replicas2("/ok/h", "/ok/h")};
  s = scatter_of(hedged, 1, &o);
  for (int i = 0; i < 3; i++) {
    CHECK_STATUS(shardkit_http_scatter_gather(s, BODY, strlen(BODY), TIMEOUT_MS, S("all"), &json),
                 SHARDKIT_STATUS_OK);
    CHECK_HAS(json, "\"answered\":1");
    shardkit_string_free(json);
    json = NULL;
  }
  shardkit_http_scatter_free(s);

  o.hedge_percentile = 1.5;
  s = NULL;
  CHECK_ERR(shardkit_http_scatter_new(hedged, 1, &o, &s), SHARDKIT_STATUS_INVALID_ARGUMENT,
            "1.5");
  CHECK(s == NULL);
  /* Hedge settings are ignored while hedging is off. */
  o.hedge = false;
  CHECK_STATUS(shardkit_http_scatter_new(hedged, 1, &o, &s), SHARDKIT_STATUS_OK);
  shardkit_http_scatter_free(s);
}

static void test_scatter_errors(void) {
  shardkit_http_scatter *s = NULL;
  const char *ok[] = {url("/ok/0")};
  CHECK_ERR(shardkit_http_scatter_new(NULL, 0, NULL, &s), SHARDKIT_STATUS_EMPTY_NODE_SET,
            "empty leaf set");
  CHECK_ERR(shardkit_http_scatter_new(NULL, 2, NULL, &s), SHARDKIT_STATUS_NULL_POINTER,
            "leaves");
  const char *with_null[] = {url("/ok/0"), NULL};
  CHECK_ERR(shardkit_http_scatter_new(with_null, 2, NULL, &s), SHARDKIT_STATUS_NULL_POINTER,
            "leaves[1]");
  CHECK_ERR(shardkit_http_scatter_new(ok, 1, NULL, NULL), SHARDKIT_STATUS_NULL_POINTER, "out");
  const char *ftp[] = {url("/ok/0"), "ftp://127.0.0.1/x"};
  CHECK_ERR(shardkit_http_scatter_new(ftp, 2, NULL, &s), SHARDKIT_STATUS_INVALID_ARGUMENT,
            "\"ftp://127.0.0.1/x\"");
  const char *noscheme[] = {"127.0.0.1:80/x"};
  CHECK_ERR(shardkit_http_scatter_new(noscheme, 1, NULL, &s), SHARDKIT_STATUS_INVALID_ARGUMENT,
            "127.0.0.1:80/x");
  const char *empty_url[] = {"http://127.0.0.1:1/a||http://127.0.0.1:1/b"};
  CHECK_ERR(shardkit_http_scatter_new(empty_url, 1, NULL, &s), SHARDKIT_STATUS_INVALID_ARGUMENT,
            "leaves[0]");
  const char *empty_leaf[] = {url("/ok/0"), ""};
  CHECK_ERR(shardkit_http_scatter_new(empty_leaf, 2, NULL, &s), SHARDKIT_STATUS_INVALID_ARGUMENT,
            "leaves[1]");
  const char *bad_utf8[] = {"http://127.0.0.1:1/\xff"};
  CHECK_ERR(shardkit_http_scatter_new(bad_utf8, 1, NULL, &s), SHARDKIT_STATUS_INVALID_UTF8,
            "leaves[0]");
  CHECK(s == NULL);

  s = scatter_of(ok, 1, NULL);
  char *json = NULL;
  CHECK_ERR(shardkit_http_scatter_gather(s, BODY, strlen(BODY), 0, S("all"), &json),
            SHARDKIT_STATUS_INVALID_ARGUMENT, "timeout_ms");
  CHECK_ERR(shardkit_http_scatter_first(s, BODY, strlen(BODY), 0, &json),
            SHARDKIT_STATUS_INVALID_ARGUMENT, "timeout_ms");
  CHECK_ERR(shardkit_http_scatter_gather(s, BODY, strlen(BODY), TIMEOUT_MS, S("-2"), &json),
            SHARDKIT_STATUS_INVALID_ARGUMENT, "coverage \"-2\": expected all, best-effort");
  CHECK_ERR(shardkit_http_scatter_gather(s, NULL, 5, TIMEOUT_MS, S("all"), &json),
            SHARDKIT_STATUS_NULL_POINTER, "body");
  CHECK_ERR(shardkit_http_scatter_gather(s, BODY, strlen(BODY), TIMEOUT_MS, S("all"), NULL),
            SHARDKIT_STATUS_NULL_POINTER, "out_json");
  CHECK_ERR(shardkit_http_scatter_gather(NULL, BODY, strlen(BODY), TIMEOUT_MS, S("all"), &json),
            SHARDKIT_STATUS_NULL_POINTER, "s is NULL");
  CHECK_ERR(shardkit_http_scatter_first(NULL, BODY, strlen(BODY), TIMEOUT_MS, &json),
            SHARDKIT_STATUS_NULL_POINTER, "s is NULL");
  CHECK(json == NULL);
  CHECK(shardkit_http_scatter_len(NULL) == 0);
  shardkit_http_scatter_free(s);
  shardkit_http_scatter_free(NULL);
  shardkit_string_free(NULL);
  CHECK(SHARDKIT_STATUS_BAD_RESPONSE == 17);
}

/* ---- merge: naive references ------------------------------------------------ */

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;

static uint64_t rnd(void) {
  /* splitmix64: seeded, so a failure repeats. */
  uint64_t z = (g_rng += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static int hit_cmp(const void *pa, const void *pb) {
  const shardkit_hit *a = pa, *b = pb;
  if (a->score != b->score) return a->score > b->score ? -1 : 1;
  if (a->shard != b->shard) return a->shard < b->shard ? -1 : 1;
  if (a->doc != b->doc) return a->doc < b->doc ? -1 : 1;
  return 0;
}

static int hits_equal(const shardkit_hit *a, const shardkit_hit *b, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (hit_cmp(&a[i], &b[i]) != 0) return 0;
  return 1;
}

/* `nlists` sorted hit lists of random lengths up to `maxlen`; scores from a
 * small set so that ties on score (and on shard) are common. */
static shardkit_hit **random_hit_lists(size_t nlists, size_t maxlen, size_t *lens) {
  shardkit_hit **lists = calloc(nlists, sizeof *lists);
  for (size_t i = 0; i < nlists; i++) {
    lens[i] = (size_t)(rnd() % (maxlen + 1));
    lists[i] = lens[i] ? malloc(lens[i] * sizeof(shardkit_hit)) : NULL;
    for (size_t j = 0; j < lens[i]; j++) {
      lists[i][j].score = (float)(rnd() % 50) / 4.0f - 3.0f;
      lists[i][j].shard = (uint32_t)(rnd() % 4);
      lists[i][j].doc = rnd() % 1000;
    }
    if (lens[i]) qsort(lists[i], lens[i], sizeof(shardkit_hit), hit_cmp);
  }
  return lists;
}

static void free_lists(void **lists, size_t nlists) {
  for (size_t i = 0; i < nlists; i++) free(lists[i]);
  free(lists);
}

static void check_top_k_case(size_t nlists, size_t maxlen, size_t offset, size_t size) {
  size_t *lens = calloc(nlists ? nlists : 1, sizeof *lens);
  shardkit_hit **lists = random_hit_lists(nlists, maxlen, lens);
  size_t total = 0;
  for (size_t i = 0; i < nlists; i++) total += lens[i];
  shardkit_hit *all = malloc((total ? total : 1) * sizeof *all);
  size_t k = 0;
  for (size_t i = 0; i < nlists; i++)
    for (size_t j = 0; j < lens[i]; j++) all[k++] = lists[i][j];
  qsort(all, total, sizeof *all, hit_cmp);
  size_t want = offset >= total ? 0 : (total - offset < size ? total - offset : size);

  shardkit_hit *out = malloc((size ? size : 1) * sizeof *out);
  size_t out_len = 12345;
  CHECK_STATUS(shardkit_top_k((const shardkit_hit *const *)lists, lens, nlists, offset, size, out,
                              size, &out_len),
               SHARDKIT_STATUS_OK);
  CHECK(out_len == want);
  CHECK(out_len == want && hits_equal(out, all + (want ? offset : 0), want));
  free(out);
  free(all);
  free_lists((void **)lists, nlists);
  free(lens);
}

static void test_top_k(void) {
  CHECK(sizeof(shardkit_hit) == 16);
  CHECK(offsetof(shardkit_hit, score) == 0 && offsetof(shardkit_hit, shard) == 4 &&
        offsetof(shardkit_hit, doc) == 8);
  for (int round = 0; round < 40; round++) {
    size_t nlists = (size_t)(rnd() % 9);
    size_t offset = (size_t)(rnd() % 30), size = 1 + (size_t)(rnd() % 40);
    check_top_k_case(nlists, 60, offset, size);
  }
  /* Above PAR_THRESHOLD (65536 hits in all): the parallel path. */
  check_top_k_case(12, 12000, 100, 500);
  check_top_k_case(12, 12000, 0, 80000);

  /* Errors and the buffer convention. */
  shardkit_hit a[3] = {{3.0f, 0, 1}, {2.0f, 0, 2}, {1.0f, 1, 0}};
  shardkit_hit b[2] = {{2.5f, 2, 7}, {2.5f, 1, 7}}; /* shard out of order */
  const shardkit_hit *lists[2] = {a, b};
  size_t lens[2] = {3, 2};
  shardkit_hit out[8];
  size_t n = 99;
  CHECK_ERR(shardkit_top_k(lists, lens, 2, 0, 5, out, 8, &n), SHARDKIT_STATUS_INVALID_ARGUMENT,
            "hit list 1 is not sorted");
  CHECK(strstr(last_error(), "position 1") != NULL);
  CHECK(n == 99);
  b[1].shard = 3;
  CHECK_ERR(shardkit_top_k(lists, lens, 2, 0, 0, out, 8, &n), SHARDKIT_STATUS_INVALID_ARGUMENT,
            "got 0");
  CHECK_STATUS(shardkit_top_k(lists, lens, 2, 1, 3, out, 8, &n), SHARDKIT_STATUS_OK);
  CHECK(n == 3 && out[0].score == 2.5f && out[0].shard == 2 && out[1].shard == 3 &&
        out[2].score == 2.0f);
  /* Too small: the length needed comes back, `out` is untouched. */
  out[0].doc = 4242;
  CHECK_ERR(shardkit_top_k(lists, lens, 2, 0, 4, out, 2, &n), SHARDKIT_STATUS_BUFFER_TOO_SMALL,
            "out_cap is 2");
  CHECK(n == 4 && out[0].doc == 4242);
  CHECK_STATUS(shardkit_top_k(lists, lens, 2, 0, 4, NULL, 0, &n),
               SHARDKIT_STATUS_BUFFER_TOO_SMALL);
  CHECK(n == 4);
  /* Past the end: empty, and an empty out is fine then. */
  CHECK_STATUS(shardkit_top_k(lists, lens, 2, 50, 4, NULL, 0, &n), SHARDKIT_STATUS_OK);
  CHECK(n == 0);
  CHECK_ERR(shardkit_top_k(lists, lens, 2, 0, 4, NULL, 4, &n), SHARDKIT_STATUS_NULL_POINTER,
            "out");
  CHECK_ERR(shardkit_top_k(lists, lens, 2, 0, 4, out, 8, NULL), SHARDKIT_STATUS_NULL_POINTER,
            "out_len");
  CHECK_ERR(shardkit_top_k(NULL, lens, 2, 0, 4, out, 8, &n), SHARDKIT_STATUS_NULL_POINTER,
            "lists");
  CHECK_ERR(shardkit_top_k(lists, NULL, 2, 0, 4, out, 8, &n), SHARDKIT_STATUS_NULL_POINTER,
            "lens");
  const shardkit_hit *holey[2] = {a, NULL};
  CHECK_ERR(shardkit_top_k(holey, lens, 2, 0, 4, out, 8, &n), SHARDKIT_STATUS_NULL_POINTER,
            "lists[1]");
  size_t lens0[2] = {3, 0};
  CHECK_STATUS(shardkit_top_k(holey, lens0, 2, 0, 4, out, 8, &n), SHARDKIT_STATUS_OK);
  CHECK(n == 3);
  CHECK_STATUS(shardkit_top_k(NULL, NULL, 0, 0, 4, out, 8, &n), SHARDKIT_STATUS_OK);
  CHECK(n == 0);
  a[1].score = NAN;
  CHECK_ERR(shardkit_top_k(lists, lens, 2, 0, 4, out, 8, &n), SHARDKIT_STATUS_INVALID_ARGUMENT,
            "NaN");
}

/* Strictly increasing random lists over [0, universe): each id is in list i
 * with probability `permille`/1000. */
static void *random_postings(int wide, size_t universe, unsigned permille, size_t *len) {
  size_t cap = 16, n = 0, w = wide ? 8 : 4;
  unsigned char *v = malloc(cap * w);
  for (size_t id = 0; id < universe; id++) {
    if (rnd() % 1000 >= permille) continue;
    if (n == cap) v = realloc(v, (cap *= 2) * w);
    if (wide)
      ((uint64_t *)(void *)v)[n++] = (uint64_t)id * 0x100000001ull;
    else
      ((uint32_t *)(void *)v)[n++] = (uint32_t)id;
  }
  *len = n;
  return v;
}

static uint64_t id_at(int wide, const void *list, size_t j) {
  return wide ? ((const uint64_t *)list)[j] : ((const uint32_t *)list)[j];
}

/* Runs intersection (op 0) or union (op 1) of random lists, checks against
 * per-id counts. */
static void check_postings_case(int wide, int op, size_t nlists, size_t universe,
                                unsigned permille) {
  void **lists = calloc(nlists ? nlists : 1, sizeof *lists);
  size_t *lens = calloc(nlists ? nlists : 1, sizeof *lens);
  unsigned *count = calloc(universe, sizeof *count);
  size_t cap = 0, minlen = (size_t)-1;
  for (size_t i = 0; i < nlists; i++) {
    lists[i] = random_postings(wide, universe, permille, &lens[i]);
    for (size_t j = 0; j < lens[i]; j++) {
      uint64_t id = id_at(wide, lists[i], j);
      count[wide ? id / 0x100000001ull : id]++;
    }
    cap += lens[i];
    if (lens[i] < minlen) minlen = lens[i];
  }
  size_t out_cap = op == 0 ? minlen : cap;
  void *out = malloc((out_cap ? out_cap : 1) * (wide ? 8 : 4));
  size_t n = 0;
  shardkit_status st;
  if (wide)
    st = op == 0 ? shardkit_intersect_u64((const uint64_t *const *)lists, lens, nlists, out,
                                          out_cap, &n)
                 : shardkit_union_u64((const uint64_t *const *)lists, lens, nlists, out, out_cap,
                                      &n);
  else
    st = op == 0 ? shardkit_intersect_u32((const uint32_t *const *)lists, lens, nlists, out,
                                          out_cap, &n)
                 : shardkit_union_u32((const uint32_t *const *)lists, lens, nlists, out, out_cap,
                                      &n);
  CHECK_STATUS(st, SHARDKIT_STATUS_OK);
  size_t k = 0;
  int same = 1;
  for (size_t id = 0; id < universe; id++) {
    int in = op == 0 ? count[id] == nlists : count[id] > 0;
    if (!in) continue;
    uint64_t want = wide ? (uint64_t)id * 0x100000001ull : id;
    if (k >= n || id_at(wide, out, k) != want) same = 0;
    k++;
  }
  CHECK(same && k == n);
  free(out);
  free(count);
  free_lists(lists, nlists);
  free(lens);
}

static void test_postings(void) {
  for (int round = 0; round < 20; round++) {
    int wide = round & 1;
    size_t nlists = 1 + (size_t)(rnd() % 6);
    unsigned permille = 300 + (unsigned)(rnd() % 700);
    check_postings_case(wide, 0, nlists, 2000, permille);
    check_postings_case(wide, 1, nlists, 2000, (unsigned)(rnd() % 400));
  }
  /* Above PAR_THRESHOLD: the parallel paths. */
  check_postings_case(0, 0, 4, 100000, 700);
  check_postings_case(1, 1, 4, 60000, 500);

  uint32_t a[] = {1, 3, 5, 7}, b[] = {3, 4, 4, 7}, out[8];
  const uint32_t *lists[] = {a, b};
  size_t lens[] = {4, 4}, n = 77;
  CHECK_ERR(shardkit_intersect_u32(lists, lens, 2, out, 8, &n),
            SHARDKIT_STATUS_INVALID_ARGUMENT, "posting list 1 duplicate id at position 2");
  CHECK_ERR(shardkit_union_u32(lists, lens, 2, out, 8, &n), SHARDKIT_STATUS_INVALID_ARGUMENT,
            "posting list 1");
  CHECK(n == 77);
  b[2] = 5;
  CHECK_STATUS(shardkit_intersect_u32(lists, lens, 2, out, 8, &n), SHARDKIT_STATUS_OK);
  CHECK(n == 3 && out[0] == 3 && out[1] == 5 && out[2] == 7);
  CHECK_ERR(shardkit_union_u32(lists, lens, 2, out, 3, &n), SHARDKIT_STATUS_BUFFER_TOO_SMALL,
            "the union has 5 elements");
  CHECK(n == 5);
  CHECK_STATUS(shardkit_union_u32(lists, lens, 2, NULL, 0, &n), SHARDKIT_STATUS_BUFFER_TOO_SMALL);
  CHECK(n == 5);
  CHECK_ERR(shardkit_intersect_u32(NULL, NULL, 0, out, 8, &n), SHARDKIT_STATUS_INVALID_ARGUMENT,
            "at least one posting list");
  CHECK_STATUS(shardkit_union_u32(NULL, NULL, 0, NULL, 0, &n), SHARDKIT_STATUS_OK);
  CHECK(n == 0);
  CHECK_ERR(shardkit_union_u32(NULL, lens, 2, out, 8, &n), SHARDKIT_STATUS_NULL_POINTER, "lists");
  const uint32_t *holey[] = {a, NULL};
  CHECK_ERR(shardkit_union_u32(holey, lens, 2, out, 8, &n), SHARDKIT_STATUS_NULL_POINTER,
            "lists[1]");
  CHECK_ERR(shardkit_union_u32(lists, lens, 2, NULL, 8, &n), SHARDKIT_STATUS_NULL_POINTER, "out");
  CHECK_ERR(shardkit_intersect_u32(lists, lens, 2, out, 8, NULL), SHARDKIT_STATUS_NULL_POINTER,
            "out_len");

  uint64_t x[] = {1, 1ull << 40, 1ull << 41}, y[] = {1ull << 40, 1ull << 42}, o[8];
  const uint64_t *l64[] = {x, y};
  size_t lens64[] = {3, 2};
  CHECK_STATUS(shardkit_intersect_u64(l64, lens64, 2, o, 8, &n), SHARDKIT_STATUS_OK);
  CHECK(n == 1 && o[0] == 1ull << 40);
  CHECK_STATUS(shardkit_union_u64(l64, lens64, 2, o, 8, &n), SHARDKIT_STATUS_OK);
  CHECK(n == 4 && o[0] == 1 && o[3] == 1ull << 42);
  y[1] = 0;
  CHECK_ERR(shardkit_union_u64(l64, lens64, 2, o, 8, &n), SHARDKIT_STATUS_INVALID_ARGUMENT,
            "not sorted at position 1");
}

int main(void) {
  check_init();
  test_top_k();
  test_postings();
  if (server_start() != 0) {
    perror("starting the test server");
    return 1;
  }
  test_scatter_errors();
  test_gather_all();
  test_coverage_spellings();
  test_best_effort_with_slow_leaf();
  test_bad_leaves();
  test_first();
  test_options();
  server_stop();
  /* Dropped connections' tasks finish on the runtime's threads a moment
   * after the last call: let them, before valgrind's leak check. */
  sleep_ms(100L * g_slow);
  return check_done();
}
