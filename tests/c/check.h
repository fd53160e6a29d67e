/*
 * check.h: the assert harness (and the few helpers) every C test of the
 * shardkit C ABI shares.
 *
 * Header-only (static state, static inline functions, macros) and meant for
 * one translation unit per test program: include it once, after defining
 * _POSIX_C_SOURCE (200809L or later) and including "shardkit.h". C11,
 * clean under -Wall -Wextra -Werror -pedantic.
 *
 *   CHECK(cond)                     cond is true
 *   CHECK_STATUS(expr, want)        expr returns the status `want`
 *   CHECK_ERR(expr, want, needle)   ... and, unless `want` is OK, the last
 *                                   error's text contains `needle`
 *   CHECK_HAS(hay, needle)          the string `hay` contains `needle`
 *   WAIT_UNTIL(cond, ms)            polls cond every 10 ms, at most ms
 *                                   (times SHARDKIT_TEST_SLOW)
 *   S("lit"), SZ(str)               a literal / C string as (ptr, len)
 *   free_port()                     a loopback TCP port nothing listens on
 *
 * A failed check prints file:line, the expression and the detail (status
 * names, the last error) and the run goes on; check_init() first and
 * `return check_done();` last in main(). Checks may run on any thread.
 */
#ifndef SHARDKIT_TESTS_CHECK_H
#define SHARDKIT_TESTS_CHECK_H

#if !defined(_POSIX_C_SOURCE) || _POSIX_C_SOURCE < 200809L
#error "define _POSIX_C_SOURCE 200809L before any #include (check.h needs clock_gettime, nanosleep)"
#endif

#include "shardkit.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- results ------------------------------------------------------------ */

static int g_passed;
static int g_failed;
static pthread_mutex_t g_record_mu = PTHREAD_MUTEX_INITIALIZER;

/* Time bounds are multiplied by this (SHARDKIT_TEST_SLOW; run.sh sets it
 * under the sanitizers and valgrind, which slow everything down). */
static int g_slow = 1;

/* Reads SHARDKIT_TEST_SLOW. Call first in main(). */
static inline void check_init(void) {
  const char *slow = getenv("SHARDKIT_TEST_SLOW");
  if (slow && atoi(slow) > 1) g_slow = atoi(slow);
}

/* Prints the tally; main's exit status (0 only when nothing failed). */
static inline int check_done(void) {
  printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}

/* One check's outcome; `detail` (may be NULL) explains a failure. */
static inline void record(int ok, const char *file, int line, const char *what,
                          const char *detail) {
  pthread_mutex_lock(&g_record_mu);
  if (ok) {
    g_passed++;
  } else {
    g_failed++;
    fprintf(stderr, "%s:%d: FAILED: %s%s%s\n", file, line, what, detail ? " -- " : "",
            detail ? detail : "");
  }
  pthread_mutex_unlock(&g_record_mu);
}

/* ---- the last error ----------------------------------------------------- */

/* This thread's last error, in a static buffer (overwritten by the next
 * call; callbacks on other threads use last_error_into). */
static inline const char *last_error(void) {
  static char buf[2048];
  size_t len = 0;
  buf[0] = '\0';
  (void)shardkit_last_error(buf, sizeof buf, &len);
  return buf;
}

/* The last error into a caller's buffer: for callbacks on other threads,
 * which must not share last_error()'s static buffer. */
static inline void last_error_into(char *buf, size_t cap) {
  size_t len = 0;
  buf[0] = '\0';
  (void)shardkit_last_error(buf, cap, &len);
}

/* ---- checks ------------------------------------------------------------- */

#define CHECK(cond) record((cond) ? 1 : 0, __FILE__, __LINE__, #cond, NULL)

/* `expr` returns `want`. */
#define CHECK_STATUS(expr, want) check_status((expr), (want), __FILE__, __LINE__, #expr)

/* `expr` returns `want` and, when that is not OK, the last error mentions
 * `needle`. */
#define CHECK_ERR(expr, want, needle) check_err((expr), (want), (needle), __FILE__, __LINE__, #expr)

/* `hay` (a string) contains `needle`; prints both when not. */
#define CHECK_HAS(hay, needle) check_has((hay), (needle), __FILE__, __LINE__, #hay)

static inline void check_status(shardkit_status got, shardkit_status want, const char *file,
                                int line, const char *expr) {
  char detail[2600];
  snprintf(detail, sizeof detail, "returned %u (%s), want %u (%s); last error: %s", (unsigned)got,
           shardkit_status_message(got), (unsigned)want, shardkit_status_message(want),
           last_error());
  record(got == want, file, line, expr, got == want ? NULL : detail);
}

static inline void check_err(shardkit_status got, shardkit_status want, const char *needle,
                             const char *file, int line, const char *expr) {
  check_status(got, want, file, line, expr);
  if (got != SHARDKIT_STATUS_OK) {
    const char *e = last_error();
    char detail[2600];
    snprintf(detail, sizeof detail, "last error \"%s\" does not mention \"%s\"", e, needle);
    record(strstr(e, needle) != NULL, file, line, expr, strstr(e, needle) ? NULL : detail);
  }
}

static inline void check_has(const char *hay, const char *needle, const char *file, int line,
                             const char *expr) {
  char detail[4096];
  int ok = hay != NULL && strstr(hay, needle) != NULL;
  snprintf(detail, sizeof detail, "\"%.3000s\" does not contain \"%s\"", hay ? hay : "(null)",
           needle);
  record(ok, file, line, expr, ok ? NULL : detail);
}

/* ---- byte strings ------------------------------------------------------- */

/* A string literal as a (pointer, length) pair: S("abc") -> ptr, 3. */
#define S(lit) (const uint8_t *)(lit), (sizeof(lit) - 1)
/* A C string as a (pointer, length) pair. */
#define SZ(str) (const uint8_t *)(str), strlen(str)

/* ---- time --------------------------------------------------------------- */

/* Monotonic milliseconds. */
static inline int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sleeps `ms` milliseconds (resumed after signals). */
static inline void sleep_ms(long ms) {
  struct timespec ts;
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = (ms % 1000) * 1000000L;
  while (nanosleep(&ts, &ts) != 0) {
  }
}

/* Polls `cond` every 10 ms for at most `ms` (times g_slow). */
#define WAIT_UNTIL(cond, ms)                                                                       \
  do {                                                                                             \
    int64_t wait_deadline_ = now_ms() + (int64_t)(ms) * g_slow;                                    \
    while (!(cond) && now_ms() < wait_deadline_) sleep_ms(10);                                     \
  } while (0)

/* ---- network ------------------------------------------------------------ */

/* A loopback TCP port nothing listens on (bound, then closed). */
static inline int free_port(void) {
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  int fd = socket(AF_INET, SOCK_STREAM, 0), port = 0;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
      getsockname(fd, (struct sockaddr *)&a, &len) == 0)
    port = ntohs(a.sin_port);
  if (fd >= 0) close(fd);
  return port;
}

#endif /* SHARDKIT_TESTS_CHECK_H */
