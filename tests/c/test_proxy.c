/*
 * C tests of the embedded cache proxy (shardkit_proxy_*): a bad
 * configuration is refused naming the key, a good one serves memcache
 * clients in front of a real memcached ($SHARDKIT_TEST_MEMCACHED, started
 * by tests/c/run.sh), reload keeps connections, metrics name the pool.
 *
 * Built and run by tests/c/run.sh: plain, under ASan+UBSan, and under
 * valgrind.
 */
#define _POSIX_C_SOURCE 200809L

#include "shardkit.h"

#include "check.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Connects to "127.0.0.1:PORT". */
static int connect_to(const char *addr) {
  const char *colon = strrchr(addr, ':');
  if (colon == NULL) return -1;
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)atoi(colon + 1));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* Sends req and reads until the reply ends with `end` (or 5 s pass). */
static void ask(int fd, const char *req, const char *end, char *out, size_t cap) {
  size_t len = 0;
  out[0] = '\0';
  if (send(fd, req, strlen(req), MSG_NOSIGNAL) < 0) return;
  int64_t deadline = now_ms() + 5000 * g_slow;
  while (len + 1 < cap && now_ms() < deadline) {
    ssize_t n = recv(fd, out + len, cap - 1 - len, 0);
    if (n <= 0) break;
    len += (size_t)n;
    out[len] = '\0';
    size_t el = strlen(end);
    if (len >= el && strcmp(out + len - el, end) == 0) break;
  }
}

int main(void) {
  check_init();
  const char *mc = getenv("SHARDKIT_TEST_MEMCACHED");
  if (mc == NULL || *mc == '\0') {
    fprintf(stderr, "test_proxy: SHARDKIT_TEST_MEMCACHED is not set (tests/c/run.sh sets it)\n");
    return 1;
  }
  char yaml[512];
  shardkit_proxy *p = NULL;

  /* An unknown key is refused, named, and nothing listens. */
  snprintf(yaml, sizeof yaml,
           "p:\n  listen: 127.0.0.1:0\n  bogus: 1\n  servers:\n   - %s:1\n", mc);
  CHECK_ERR(shardkit_proxy_start(SZ(yaml), NULL, 0, NULL, 0, &p), SHARDKIT_STATUS_CONFIG,
            "bogus");
  CHECK(p == NULL);
  CHECK_ERR(shardkit_proxy_start(NULL, 3, NULL, 0, NULL, 0, &p), SHARDKIT_STATUS_NULL_POINTER,
            "config");

  snprintf(yaml, sizeof yaml,
           "p:\n  listen: 127.0.0.1:0\n  timeout: 1000\n  servers:\n   - %s:1\n", mc);
  CHECK_STATUS(shardkit_proxy_start(SZ(yaml), NULL, 0, NULL, 0, &p), SHARDKIT_STATUS_OK);
  if (p == NULL) return check_done();

  char *addr = NULL;
  CHECK_STATUS(shardkit_proxy_address(p, S("p"), &addr), SHARDKIT_STATUS_OK);
  CHECK_ERR(shardkit_proxy_address(p, S("nope"), &addr), SHARDKIT_STATUS_NOT_FOUND, "\"p\"");
  CHECK(addr != NULL && strncmp(addr, "127.0.0.1:", 10) == 0);

  int fd = addr ? connect_to(addr) : -1;
  CHECK(fd >= 0);
  char buf[1024];
  if (fd >= 0) {
    ask(fd, "set ck 0 0 2\r\nhi\r\nget ck\r\n", "END\r\n", buf, sizeof buf);
    CHECK(strcmp(buf, "STORED\r\nVALUE ck 0 2\r\nhi\r\nEND\r\n") == 0);
  }

  /* A bad reload is refused and the running pool keeps serving; a good
   * one applies without dropping the connection. */
  CHECK_ERR(shardkit_proxy_reload(p, S("p:\n  listen: 127.0.0.1:0\n")), SHARDKIT_STATUS_CONFIG,
            "servers");
  snprintf(yaml, sizeof yaml,
           "p:\n  listen: 127.0.0.1:0\n  timeout: 2000\n  servers:\n   - %s:1\n", mc);
  /* Port 0 is a new address on reload: keep the one bound instead. */
  char yaml2[512];
  snprintf(yaml2, sizeof yaml2, "p:\n  listen: %s\n  timeout: 2000\n  servers:\n   - %s:1\n",
           addr ? addr : "127.0.0.1:0", mc);
  (void)yaml;
  CHECK_STATUS(shardkit_proxy_reload(p, SZ(yaml2)), SHARDKIT_STATUS_OK);
  if (fd >= 0) {
    ask(fd, "get ck\r\n", "END\r\n", buf, sizeof buf);
    CHECK(strcmp(buf, "VALUE ck 0 2\r\nhi\r\nEND\r\n") == 0);
    close(fd);
  }

  char *listing = NULL;
  CHECK_STATUS(shardkit_proxy_listening(p, &listing), SHARDKIT_STATUS_OK);
  if (listing != NULL && addr != NULL) {
    char want[128];
    snprintf(want, sizeof want, "p\t%s\n", addr);
    CHECK(strcmp(listing, want) == 0);
  }
  shardkit_string_free(listing);
  char *json = NULL;
  CHECK_STATUS(shardkit_proxy_stats(p, &json), SHARDKIT_STATUS_OK);
  if (json != NULL) CHECK_HAS(json, "\"service\":\"nutcracker\"");
  shardkit_string_free(json);
  char *admin = NULL;
  CHECK_ERR(shardkit_proxy_admin_address(p, 0, &admin), SHARDKIT_STATUS_NOT_FOUND, "stats");
  CHECK_ERR(shardkit_proxy_admin_address(p, 7, &admin), SHARDKIT_STATUS_INVALID_ARGUMENT, "7");

  char *metrics = NULL;
  CHECK_STATUS(shardkit_proxy_metrics(p, &metrics), SHARDKIT_STATUS_OK);
  if (metrics != NULL) CHECK_HAS(metrics, "shardkit_proxy_requests_total{pool=\"p\"} 3");
  shardkit_string_free(metrics);
  shardkit_string_free(addr);
  shardkit_proxy_free(p);
  shardkit_proxy_free(NULL);
  return check_done();
}
