/*
 * The C part of bench/lease.sh: uncontended lock acquire + release through
 * the static library (target/release/libshardkit.a), one session and one
 * lock handle reused, as a C user would write it. Each iteration times
 * shardkit_lock_acquire and shardkit_lock_release with CLOCK_MONOTONIC.
 *
 * Usage: lease (--endpoints LIST | --embedded) [--iters N] [--warmup N] [--name NAME]
 * Writes one JSON object on stdout; bench/lease/report.py summarises it.
 */
#define _POSIX_C_SOURCE 199309L

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shardkit.h"

static int64_t now_ns(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Prints what failed with the library's detail and exits. */
static void check(shardkit_status st, const char *what) {
	if (st == SHARDKIT_STATUS_OK) return;
	char buf[512];
	size_t len = 0;
	if (shardkit_last_error(buf, sizeof buf - 1, &len) != SHARDKIT_STATUS_OK) len = 0;
	buf[len < sizeof buf ? len : sizeof buf - 1] = '\0';
	fprintf(stderr, "lease-bench-c: %s: %s (%s)\n", what, shardkit_status_message(st), buf);
	exit(1);
}

static void print_array(const char *name, const int64_t *v, size_t n, int last) {
	printf("\"%s\":[", name);
	for (size_t i = 0; i < n; i++) printf("%s%" PRId64, i ? "," : "", v[i]);
	printf("]%s", last ? "" : ",");
}

static long number(const char *flag, const char *v) {
	char *end;
	long n = strtol(v, &end, 10);
	if (*v == '\0' || *end != '\0' || n < 0) {
		fprintf(stderr, "lease-bench-c: %s %s is not a whole number\n", flag, v);
		exit(2);
	}
	return n;
}

int main(int argc, char **argv) {
	const char *endpoints = NULL, *name = "bench-latency-c";
	int embedded = 0;
	long iters = 2000, warmup = 200;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--embedded") == 0) {
			embedded = 1;
			continue;
		}
		if (i + 1 >= argc) {
			fprintf(stderr, "lease-bench-c: %s needs a value\n", a);
			return 2;
		}
		const char *v = argv[++i];
		if (strcmp(a, "--endpoints") == 0) endpoints = v;
		else if (strcmp(a, "--name") == 0) name = v;
		else if (strcmp(a, "--iters") == 0) iters = number(a, v);
		else if (strcmp(a, "--warmup") == 0) warmup = number(a, v);
		else {
			fprintf(stderr, "lease-bench-c: unknown argument %s\n", a);
			return 2;
		}
	}
	if (!embedded && !endpoints) {
		fprintf(stderr, "lease-bench-c: give --endpoints LIST or --embedded\n");
		return 2;
	}
	if (iters < 1) {
		fprintf(stderr, "lease-bench-c: --iters must be at least 1\n");
		return 2;
	}

	shardkit_coordinator *coord = NULL;
	if (embedded) check(shardkit_coordinator_new_embedded(&coord), "embedded store");
	else
		check(shardkit_coordinator_connect((const uint8_t *)endpoints, strlen(endpoints), 5000, &coord),
		      "connect");
	shardkit_session *session = NULL;
	check(shardkit_session_new(coord, 10, &session), "session");
	shardkit_lock *lock = NULL;
	check(shardkit_lock_new(session, (const uint8_t *)name, strlen(name), &lock), "lock");

	int64_t *both = calloc((size_t)iters, sizeof *both);
	int64_t *acq = calloc((size_t)iters, sizeof *acq);
	int64_t *rel = calloc((size_t)iters, sizeof *rel);
	if (!both || !acq || !rel) {
		fprintf(stderr, "lease-bench-c: out of memory\n");
		return 1;
	}
	for (long i = 0; i < warmup + iters; i++) {
		shardkit_fencing_token token;
		int64_t t0 = now_ns();
		check(shardkit_lock_acquire(lock, -1, NULL, &token), "acquire");
		int64_t t1 = now_ns();
		check(shardkit_lock_release(lock), "release");
		int64_t t2 = now_ns();
		if (i >= warmup) {
			both[i - warmup] = t2 - t0;
			acq[i - warmup] = t1 - t0;
			rel[i - warmup] = t2 - t1;
		}
	}
	check(shardkit_session_close(session), "close");
	shardkit_lock_free(lock);
	shardkit_session_free(session);
	shardkit_coordinator_free(coord);

	printf("{\"impl\":\"shardkit-c\",\"backend\":\"%s\",\"iters\":%ld,\"warmup\":%ld,\"ttl\":10,",
	       embedded ? "embedded" : "etcd", iters, warmup);
	print_array("acquire_release_ns", both, (size_t)iters, 0);
	print_array("acquire_ns", acq, (size_t)iters, 0);
	print_array("release_ns", rel, (size_t)iters, 1);
	printf("}\n");
	free(both);
	free(acq);
	free(rel);
	return 0;
}
