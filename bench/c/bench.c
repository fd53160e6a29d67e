/*
 * The C half of `make bench` (driven by bench/run.sh): the cost of one call
 * of shardkit_sharder_lookup_hash (precomputed key hash) and of
 * shardkit_sharder_lookup (20-byte key, hash included) through the static
 * library, for each algorithm named on the command line at 10 to 10,000
 * nodes. bench/report.py sets these beside the Rust figures to get the
 * per-call overhead of the C ABI.
 *
 * Keys, hashes and the placement checksums follow bench/rust/src/main.rs
 * exactly (SplitMix64 streams with the same seeds), so the report can check
 * that C places keys where Rust does.
 *
 * Usage: bench [--quick] ALGORITHM...   (JSON lines on stdout)
 */
#define _POSIX_C_SOURCE 199309L

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shardkit.h"

#define KEY_LEN 20
#define KEYS (1u << 14)
#define CHECK_KEYS 4096
#define KEY_SEED UINT64_C(0x5eed0001)
#define HASH_SEED UINT64_C(0x5eed0002)

static const size_t SIZES[] = {10, 100, 1000, 10000};

static uint8_t keys[KEYS][KEY_LEN];
static uint64_t hashes[KEYS];

static uint64_t splitmix(uint64_t *state) {
	uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

/* Same streams as make_keys / make_hashes in bench/rust/src/main.rs. */
static void make_inputs(void) {
	uint64_t st = KEY_SEED, r = 0;
	for (size_t i = 0; i < KEYS; i++) {
		for (size_t j = 0; j < KEY_LEN; j++) {
			if (j % 8 == 0)
				r = splitmix(&st);
			keys[i][j] = (uint8_t)('a' + ((r >> (8 * (j % 8))) & 0xff) % 26);
		}
	}
	st = HASH_SEED;
	for (size_t i = 0; i < KEYS; i++)
		hashes[i] = splitmix(&st);
}

static double now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what, shardkit_status st) {
	char buf[512];
	size_t len = 0;
	if (shardkit_last_error(buf, sizeof buf, &len) != SHARDKIT_STATUS_OK)
		buf[0] = '\0';
	fprintf(stderr, "bench.c: %s: status %u: %s\n", what, (unsigned)st, buf);
	exit(1);
}

/* The sink every timed loop feeds, so no call is optimised away. */
static volatile uint64_t sink;

static uint64_t run_hash(const shardkit_sharder *s, uint64_t n) {
	uint64_t acc = 0;
	for (uint64_t i = 0; i < n; i++) {
		uint32_t slot;
		shardkit_status st = shardkit_sharder_lookup_hash(s, hashes[i % KEYS], &slot);
		if (st != SHARDKIT_STATUS_OK)
			die("shardkit_sharder_lookup_hash", st);
		acc += slot;
	}
	return acc;
}

static uint64_t run_key(const shardkit_sharder *s, uint64_t n) {
	uint64_t acc = 0;
	for (uint64_t i = 0; i < n; i++) {
		uint32_t slot;
		shardkit_status st = shardkit_sharder_lookup(s, keys[i % KEYS], KEY_LEN, &slot);
		if (st != SHARDKIT_STATUS_OK)
			die("shardkit_sharder_lookup", st);
		acc += slot;
	}
	return acc;
}

static int cmp_double(const void *a, const void *b) {
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Median ns per call, calibrated to about rep_s per repetition, as the Rust
 * Timer does. */
static double ns_per_call(uint64_t (*run)(const shardkit_sharder *, uint64_t),
		const shardkit_sharder *s, double rep_s, int reps) {
	uint64_t n = 16;
	for (;;) {
		double t = now();
		sink = run(s, n);
		double e = now() - t;
		if (e >= rep_s / 10.0) {
			double want = (double)n * rep_s / e;
			n = want < 1.0 ? 1 : (uint64_t)want + 1;
			break;
		}
		n *= 4;
	}
	double v[16];
	for (int r = 0; r < reps; r++) {
		double t = now();
		sink = run(s, n);
		v[r] = (now() - t) * 1e9 / (double)n;
	}
	qsort(v, (size_t)reps, sizeof v[0], cmp_double);
	return reps % 2 ? v[reps / 2] : (v[reps / 2 - 1] + v[reps / 2]) / 2.0;
}

static shardkit_sharder *build(const char *alg, size_t n) {
	shardkit_node *nodes = calloc(n, sizeof *nodes);
	char *names = calloc(n, 16);
	if (!nodes || !names) {
		fprintf(stderr, "bench.c: out of memory\n");
		exit(1);
	}
	for (size_t i = 0; i < n; i++) {
		int len = snprintf(names + 16 * i, 16, "node-%zu", i);
		nodes[i].name = (const uint8_t *)(names + 16 * i);
		nodes[i].name_len = (size_t)len;
		nodes[i].weight = 1;
	}
	shardkit_config cfg;
	memset(&cfg, 0, sizeof cfg);
	cfg.algorithm = (const uint8_t *)alg;
	cfg.algorithm_len = strlen(alg);
	shardkit_sharder *s = NULL;
	shardkit_status st = shardkit_sharder_new(nodes, n, &cfg, &s);
	if (st != SHARDKIT_STATUS_OK)
		die(alg, st);
	free(nodes);
	free(names);
	return s;
}

int main(int argc, char **argv) {
	double rep_s = 0.03;
	int reps = 7;
	int first = 1;
	if (argc > 1 && strcmp(argv[1], "--quick") == 0) {
		rep_s = 0.005;
		reps = 3;
		first = 2;
	}
	if (first >= argc) {
		fprintf(stderr, "usage: bench [--quick] ALGORITHM...\n");
		return 2;
	}
	make_inputs();
	for (int a = first; a < argc; a++) {
		for (size_t z = 0; z < sizeof SIZES / sizeof SIZES[0]; z++) {
			shardkit_sharder *s = build(argv[a], SIZES[z]);
			double ns_hash = ns_per_call(run_hash, s, rep_s, reps);
			double ns_key = ns_per_call(run_key, s, rep_s, reps);
			uint64_t check_key = 0, check_hash = 0;
			for (size_t i = 0; i < CHECK_KEYS; i++) {
				uint32_t slot;
				shardkit_status st = shardkit_sharder_lookup(s, keys[i], KEY_LEN, &slot);
				if (st != SHARDKIT_STATUS_OK)
					die("shardkit_sharder_lookup", st);
				check_key += slot;
				st = shardkit_sharder_lookup_hash(s, hashes[i], &slot);
				if (st != SHARDKIT_STATUS_OK)
					die("shardkit_sharder_lookup_hash", st);
				check_hash += slot;
			}
			printf("{\"algorithm\": \"%s\", \"nodes\": %zu, \"ns_hash\": %.3f, "
					"\"ns_key\": %.3f, \"check_key\": %" PRIu64 ", \"check_hash\": %" PRIu64 "}\n",
					argv[a], SIZES[z], ns_hash, ns_key, check_key, check_hash);
			fprintf(stderr, "c: %16s n=%-6zu hash %7.1f ns  key %7.1f ns\n", argv[a], SIZES[z],
					ns_hash, ns_key);
			fflush(stdout);
			shardkit_sharder_free(s);
		}
	}
	return 0;
}
