/*
 * C tests of the shardkit C ABI (include/shardkit.h, libshardkit.a).
 *
 * Built and run by tests/c/run.sh: plain, under ASan+UBSan, and under
 * valgrind. Usage: test_shardkit [placement.tsv]
 * The version macros are checked against SHARDKIT_CARGO_VERSION, which
 * run.sh passes from Cargo (-DSHARDKIT_CARGO_VERSION="\"x.y.z\"").
 */
#define _POSIX_C_SOURCE 200809L

#include "shardkit.h"

#include "check.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef SHARDKIT_CARGO_VERSION
#error "build with -DSHARDKIT_CARGO_VERSION=\"x.y.z\" (tests/c/run.sh does)"
#endif

/* ---- helpers ---------------------------------------------------------- */

static shardkit_node node(const char *name, int64_t weight) {
  shardkit_node n;
  n.name = (const uint8_t *)name;
  n.name_len = strlen(name);
  n.weight = weight;
  return n;
}

static shardkit_config config(const char *alg, const char *hash, const char *tag) {
  shardkit_config c;
  memset(&c, 0, sizeof c);
  if (alg) {
    c.algorithm = (const uint8_t *)alg;
    c.algorithm_len = strlen(alg);
  }
  if (hash) {
    c.hash = (const uint8_t *)hash;
    c.hash_len = strlen(hash);
  }
  if (tag) {
    c.hash_tag = (const uint8_t *)tag;
    c.hash_tag_len = strlen(tag);
  }
  return c;
}

/* Builds a sharder over "n0".."n{count-1}" (weight 1); NULL (and a failed
 * check) on error. */
static shardkit_sharder *numbered(size_t count, const char *alg, const char *hash,
                                  const char *tag) {
  char(*names)[24] = calloc(count, sizeof *names);
  shardkit_node *nodes = calloc(count, sizeof *nodes);
  shardkit_config cfg = config(alg, hash, tag);
  shardkit_sharder *s = NULL;
  size_t i;
  for (i = 0; i < count; i++) {
    snprintf(names[i], sizeof names[i], "n%zu", i);
    nodes[i] = node(names[i], 1);
  }
  CHECK_STATUS(shardkit_sharder_new(nodes, count, &cfg, &s), SHARDKIT_STATUS_OK);
  free(nodes);
  free(names);
  return s;
}

static uint32_t lookup(const shardkit_sharder *s, const char *key) {
  uint32_t slot = UINT32_MAX;
  CHECK_STATUS(shardkit_sharder_lookup(s, SZ(key), &slot), SHARDKIT_STATUS_OK);
  return slot;
}

/* The name of the node in `slot`, NUL-terminated in a static buffer. */
static const char *name_of(const shardkit_sharder *s, uint32_t slot) {
  static char buf[256];
  size_t len = 0;
  buf[0] = '\0';
  CHECK_STATUS(shardkit_sharder_node_name(s, slot, (uint8_t *)buf, sizeof buf - 1, &len),
               SHARDKIT_STATUS_OK);
  if (len < sizeof buf) buf[len] = '\0';
  return buf;
}

static void key_of(size_t i, char *buf, size_t cap) { snprintf(buf, cap, "key:%zu", i); }

/* ---- tests ------------------------------------------------------------- */

static void test_version(void) {
  char macros[64];
  snprintf(macros, sizeof macros, "%d.%d.%d", SHARDKIT_VERSION_MAJOR, SHARDKIT_VERSION_MINOR,
           SHARDKIT_VERSION_PATCH);
  CHECK(strcmp(macros, SHARDKIT_CARGO_VERSION) == 0);
  CHECK(strcmp(shardkit_version(), SHARDKIT_CARGO_VERSION) == 0);
}

static void test_status_messages(void) {
  CHECK(strcmp(shardkit_status_message(SHARDKIT_STATUS_OK), "ok") == 0);
  CHECK(strcmp(shardkit_status_message(SHARDKIT_STATUS_EMPTY_NODE_SET), "empty node set") == 0);
  CHECK(strcmp(shardkit_status_message(SHARDKIT_STATUS_NULL_POINTER), "NULL pointer") == 0);
  CHECK(strcmp(shardkit_status_message(SHARDKIT_STATUS_UNAVAILABLE), "unavailable") == 0);
  CHECK(strcmp(shardkit_status_message((shardkit_status)999), "unknown status code") == 0);
  /* Codes are the core's stable codes. */
  CHECK(SHARDKIT_STATUS_INVALID_ARGUMENT == 1 && SHARDKIT_STATUS_PANIC == 10 &&
        SHARDKIT_STATUS_UNAVAILABLE == 11);
}

static void test_free_null_and_clone(void) {
  shardkit_sharder *s, *c;
  shardkit_sharder_free(NULL);
  CHECK(shardkit_sharder_clone(NULL) == NULL);
  CHECK(shardkit_sharder_len(NULL) == 0);
  CHECK(shardkit_sharder_slot_count(NULL) == 0);
  s = numbered(4, "jump", NULL, NULL);
  c = shardkit_sharder_clone(s);
  CHECK(c != NULL && c != s);
  {
    uint32_t before = lookup(s, "abc");
    shardkit_sharder_free(s); /* the clone stays valid */
    CHECK(lookup(c, "abc") == before);
    CHECK(shardkit_sharder_len(c) == 4);
  }
  shardkit_sharder_free(c);
}

static void test_construction_and_accessors(void) {
  shardkit_node nodes[3];
  shardkit_config cfg = config("ketama:twemproxy", "md5", NULL);
  shardkit_sharder *s = NULL;
  uint32_t slot = 99, w = 0;
  nodes[0] = node("cache-a", 1);
  nodes[1] = node("cache-b", 2);
  nodes[2] = node("cache-c", 3);
  CHECK_STATUS(shardkit_sharder_new(nodes, 3, &cfg, &s), SHARDKIT_STATUS_OK);
  CHECK(shardkit_sharder_len(s) == 3);
  CHECK(shardkit_sharder_slot_count(s) == 3);
  CHECK_STATUS(shardkit_sharder_slot_of(s, S("cache-b"), &slot), SHARDKIT_STATUS_OK);
  CHECK(slot == 1);
  CHECK(strcmp(name_of(s, 2), "cache-c") == 0);
  CHECK_STATUS(shardkit_sharder_node_weight(s, 2, &w), SHARDKIT_STATUS_OK);
  CHECK(w == 3);
  slot = 77;
  CHECK_ERR(shardkit_sharder_slot_of(s, S("cache-z"), &slot), SHARDKIT_STATUS_NOT_FOUND,
            "\"cache-z\"");
  CHECK(slot == 77); /* untouched on error */
  w = 77;
  CHECK_ERR(shardkit_sharder_node_weight(s, 3, &w), SHARDKIT_STATUS_NOT_FOUND, "slot 3");
  CHECK(w == 77);
  shardkit_sharder_free(s);

  /* NULL config and empty config fields take the defaults (maglev, xxh3),
   * the same as naming them. */
  {
    shardkit_sharder *d = NULL, *named = NULL;
    shardkit_config empty = config(NULL, NULL, NULL);
    shardkit_config explicit_cfg = config("maglev", "xxh3", NULL);
    shardkit_sharder *e = NULL;
    char key[32];
    size_t i;
    int same = 1;
    CHECK_STATUS(shardkit_sharder_new(nodes, 3, NULL, &d), SHARDKIT_STATUS_OK);
    CHECK_STATUS(shardkit_sharder_new(nodes, 3, &empty, &e), SHARDKIT_STATUS_OK);
    CHECK_STATUS(shardkit_sharder_new(nodes, 3, &explicit_cfg, &named), SHARDKIT_STATUS_OK);
    for (i = 0; d && e && named && i < 2000; i++) {
      uint32_t a = 0, b = 0, c = 0;
      key_of(i, key, sizeof key);
      shardkit_sharder_lookup(d, SZ(key), &a);
      shardkit_sharder_lookup(e, SZ(key), &b);
      shardkit_sharder_lookup(named, SZ(key), &c);
      same &= a == b && b == c;
    }
    CHECK(d && e && named && same);
    shardkit_sharder_free(d);
    shardkit_sharder_free(e);
    shardkit_sharder_free(named);
  }
}

static void test_node_name_protocol(void) {
  shardkit_sharder *s = numbered(12, "modulo", NULL, NULL); /* "n11" is 3 bytes */
  uint8_t buf[8];
  size_t len = 0;
  memset(buf, 'x', sizeof buf);
  /* NULL/0 asks for the length. */
  CHECK_STATUS(shardkit_sharder_node_name(s, 11, NULL, 0, &len), SHARDKIT_STATUS_BUFFER_TOO_SMALL);
  CHECK(len == 3);
  /* Too small: the needed length, nothing copied. */
  len = 0;
  CHECK_ERR(shardkit_sharder_node_name(s, 11, buf, 2, &len), SHARDKIT_STATUS_BUFFER_TOO_SMALL,
            "needs 3 bytes");
  CHECK(len == 3 && buf[0] == 'x');
  /* Exactly enough: copied, not NUL-terminated. */
  len = 0;
  CHECK_STATUS(shardkit_sharder_node_name(s, 11, buf, 3, &len), SHARDKIT_STATUS_OK);
  CHECK(len == 3 && memcmp(buf, "n11", 3) == 0 && buf[3] == 'x');
  /* An out-of-range slot: NOT_FOUND, out_len untouched. */
  len = 1234;
  CHECK_ERR(shardkit_sharder_node_name(s, 12, buf, sizeof buf, &len), SHARDKIT_STATUS_NOT_FOUND,
            "slot 12");
  CHECK(len == 1234);
  CHECK_ERR(shardkit_sharder_node_name(s, 0, buf, sizeof buf, NULL), SHARDKIT_STATUS_NULL_POINTER,
            "out_len");
  CHECK_ERR(shardkit_sharder_node_name(s, 0, NULL, 5, &len), SHARDKIT_STATUS_NULL_POINTER, "buf");
  CHECK_ERR(shardkit_sharder_node_name(NULL, 0, buf, sizeof buf, &len),
            SHARDKIT_STATUS_NULL_POINTER, "s is NULL");
  shardkit_sharder_free(s);
}

/* Every slot's node in one call, holes included. */
static void test_nodes_in_one_call(void) {
  shardkit_sharder *s = numbered(12, "memento", NULL, NULL);
  shardkit_sharder *holed = NULL;
  size_t offsets[13], names_len = 0;
  uint32_t weights[12];
  uint8_t names[64];
  CHECK_STATUS(shardkit_sharder_remove(s, S("n3"), &holed), SHARDKIT_STATUS_OK);
  CHECK(shardkit_sharder_slot_count(holed) == 12);
  /* NULL/0 names asks for the length; nothing else is written. */
  offsets[0] = 99;
  CHECK_STATUS(shardkit_sharder_nodes(holed, NULL, 0, offsets, 13, weights, 12, &names_len),
               SHARDKIT_STATUS_BUFFER_TOO_SMALL);
  CHECK(names_len == 10 * 2 + 2 * 3 - 2 && offsets[0] == 99);
  CHECK_ERR(shardkit_sharder_nodes(holed, names, 3, offsets, 13, weights, 12, &names_len),
            SHARDKIT_STATUS_BUFFER_TOO_SMALL, "names_cap is 3");
  CHECK_STATUS(
      shardkit_sharder_nodes(holed, names, sizeof names, offsets, 13, weights, 12, &names_len),
      SHARDKIT_STATUS_OK);
  CHECK(offsets[0] == 0 && offsets[12] == names_len);
  CHECK(offsets[4] == offsets[3] && weights[3] == 0); /* the hole */
  CHECK(memcmp(names + offsets[11], "n11", 3) == 0 && weights[11] == 1);
  CHECK(memcmp(names + offsets[2], "n2", 2) == 0 && offsets[3] - offsets[2] == 2);
  CHECK_ERR(shardkit_sharder_nodes(holed, names, sizeof names, offsets, 12, weights, 12,
                                   &names_len),
            SHARDKIT_STATUS_INVALID_ARGUMENT, "offsets_len 12");
  shardkit_sharder_free(holed);
  shardkit_sharder_free(s);
}

/* Handles are typed: one of another type is refused, naming both types,
 * and freeing it through the wrong _free frees nothing (ASan and valgrind
 * would see a bad read, a double free or a leak otherwise). */
static void test_typed_handles(void) {
  shardkit_sharder *s = numbered(3, "jump", NULL, NULL);
  shardkit_cancel *cancel = NULL;
  shardkit_fence_gate *gate = NULL; /* handles that need no runtime: no threads here */
  uint32_t slot = 0;
  size_t len = 0;
  bool ok = false;
  CHECK_STATUS(shardkit_cancel_new(&cancel), SHARDKIT_STATUS_OK);
  CHECK_STATUS(shardkit_fence_gate_new(S("g"), &gate), SHARDKIT_STATUS_OK);

  CHECK_ERR(shardkit_sharder_lookup((const shardkit_sharder *)cancel, S("k"), &slot),
            SHARDKIT_STATUS_INVALID_ARGUMENT,
            "s is not a shardkit_sharder handle: it is a shardkit_cancel");
  CHECK_ERR(shardkit_sharder_node_name((const shardkit_sharder *)gate, 0, NULL, 0, &len),
            SHARDKIT_STATUS_INVALID_ARGUMENT, "it is a shardkit_fence_gate");
  CHECK_ERR(shardkit_cancel_cancel((const shardkit_cancel *)s), SHARDKIT_STATUS_INVALID_ARGUMENT,
            "cancel is not a shardkit_cancel handle: it is a shardkit_sharder");
  CHECK_ERR(shardkit_lock_release((const shardkit_lock *)gate), SHARDKIT_STATUS_INVALID_ARGUMENT,
            "lock is not a shardkit_lock handle: it is a shardkit_fence_gate");
  CHECK_ERR(shardkit_coordinator_describe((const shardkit_coordinator *)s, NULL, 0, &len),
            SHARDKIT_STATUS_INVALID_ARGUMENT, "it is a shardkit_sharder");
  /* Value-returning calls give their "nothing" value. */
  CHECK(shardkit_sharder_len((const shardkit_sharder *)cancel) == 0);
  CHECK(!shardkit_cancel_is_cancelled((const shardkit_cancel *)s));

  /* The wrong _free frees nothing and says why; the handles still work. */
  shardkit_sharder_free((shardkit_sharder *)cancel);
  CHECK_HAS(last_error(), "s is not a shardkit_sharder handle: it is a shardkit_cancel");
  shardkit_cancel_free((shardkit_cancel *)s);
  shardkit_coordinator_free((shardkit_coordinator *)s);
  CHECK_STATUS(shardkit_sharder_lookup(s, S("k"), &slot), SHARDKIT_STATUS_OK);
  CHECK(slot < 3);
  CHECK_STATUS(shardkit_cancel_cancel(cancel), SHARDKIT_STATUS_OK);
  ok = shardkit_cancel_is_cancelled(cancel);
  CHECK(ok);

  shardkit_fence_gate_free(gate);
  shardkit_cancel_free(cancel);
  shardkit_sharder_free(s);
}

static void test_lookup_and_hash(void) {
  const char *algs[] = {"modulo",    "ketama:twemproxy", "ketama:nginx", "ketama:uhashring",
                        "jump",      "jumpback",         "rendezvous",   "maglev",
                        "bounded:1.25", "memento"};
  size_t a;
  for (a = 0; a < sizeof algs / sizeof algs[0]; a++) {
    shardkit_sharder *s = numbered(10, algs[a], NULL, "{}");
    size_t i;
    int consistent = 1, in_range = 1, tags_agree = 1;
    if (!s) continue;
    for (i = 0; i < 500; i++) {
      char key[48], tagged[80];
      uint64_t h = 0;
      uint32_t x = UINT32_MAX, y = UINT32_MAX;
      key_of(i, key, sizeof key);
      x = lookup(s, key);
      in_range &= x < shardkit_sharder_slot_count(s);
      /* key_hash + lookup_hash is lookup. */
      shardkit_sharder_key_hash(s, SZ(key), &h);
      shardkit_sharder_lookup_hash(s, h, &y);
      consistent &= x == y;
      /* Hash tags: only the tag is hashed. */
      snprintf(tagged, sizeof tagged, "user:{%s}:profile", key);
      tags_agree &= lookup(s, tagged) == x;
    }
    CHECK(consistent);
    CHECK(in_range);
    CHECK(tags_agree);
    shardkit_sharder_free(s);
  }
  {
    /* NULL + 0 is the empty key; NULL + n is an error naming the key. */
    shardkit_sharder *s = numbered(3, "jump", NULL, NULL);
    uint32_t slot = 5;
    uint64_t h = 7;
    CHECK_STATUS(shardkit_sharder_lookup(s, NULL, 0, &slot), SHARDKIT_STATUS_OK);
    CHECK(slot < 3);
    slot = 5;
    CHECK_ERR(shardkit_sharder_lookup(s, NULL, 4, &slot), SHARDKIT_STATUS_NULL_POINTER,
              "key is NULL but its length is 4");
    CHECK(slot == 5);
    CHECK_ERR(shardkit_sharder_lookup(s, S("k"), NULL), SHARDKIT_STATUS_NULL_POINTER, "out_slot");
    CHECK_ERR(shardkit_sharder_lookup(NULL, S("k"), &slot), SHARDKIT_STATUS_NULL_POINTER, "s is NULL");
    CHECK_ERR(shardkit_sharder_lookup(s, (const uint8_t *)"k", SIZE_MAX, &slot), SHARDKIT_STATUS_INVALID_ARGUMENT,
              "key length");
    CHECK_ERR(shardkit_sharder_key_hash(s, NULL, 1, &h), SHARDKIT_STATUS_NULL_POINTER, "key");
    CHECK(h == 7);
    CHECK_ERR(shardkit_sharder_lookup_hash(s, 1, NULL), SHARDKIT_STATUS_NULL_POINTER, "out_slot");
    shardkit_sharder_free(s);
  }
}

static void test_lookup_n(void) {
  shardkit_sharder *s = numbered(8, "rendezvous", NULL, NULL);
  uint32_t slots[8];
  size_t count = 0, i;
  int ok = 1;
  for (i = 0; i < 200; i++) {
    char key[32];
    size_t j, k;
    key_of(i, key, sizeof key);
    count = 0;
    if (shardkit_sharder_lookup_n(s, SZ(key), 3, slots, 8, &count) != SHARDKIT_STATUS_OK) {
      ok = 0;
      continue;
    }
    ok &= count == 3 && slots[0] == lookup(s, key);
    for (j = 0; j < count; j++)
      for (k = j + 1; k < count; k++) ok &= slots[j] != slots[k];
  }
  CHECK(ok);
  /* All nodes: a permutation of every slot. */
  CHECK_STATUS(shardkit_sharder_lookup_n(s, S("all"), 8, slots, 8, &count), SHARDKIT_STATUS_OK);
  {
    unsigned seen = 0;
    for (i = 0; i < count; i++) seen |= 1u << slots[i];
    CHECK(count == 8 && seen == 0xffu);
  }
  count = 42;
  CHECK_ERR(shardkit_sharder_lookup_n(s, S("k"), 0, slots, 8, &count),
            SHARDKIT_STATUS_INVALID_ARGUMENT, "got 0");
  CHECK_ERR(shardkit_sharder_lookup_n(s, S("k"), 9, slots, 8, &count),
            SHARDKIT_STATUS_INVALID_ARGUMENT, "got 9");
  CHECK_ERR(shardkit_sharder_lookup_n(s, S("k"), 3, slots, 2, &count),
            SHARDKIT_STATUS_BUFFER_TOO_SMALL, "out_cap 2");
  CHECK_ERR(shardkit_sharder_lookup_n(s, S("k"), 3, NULL, 8, &count), SHARDKIT_STATUS_NULL_POINTER,
            "out_slots");
  CHECK_ERR(shardkit_sharder_lookup_n(s, S("k"), 3, slots, 8, NULL), SHARDKIT_STATUS_NULL_POINTER,
            "out_count");
  CHECK(count == 42);
  shardkit_sharder_free(s);
}

/* Batch and packed batch equal single lookups; `n` above the parallel
 * threshold (16384) runs on the thread pool. */
static void check_batches(const shardkit_sharder *s, size_t n) {
  const uint8_t **keys = calloc(n, sizeof *keys);
  size_t *lens = calloc(n, sizeof *lens);
  size_t *offsets = calloc(n + 1, sizeof *offsets);
  char *data = calloc(n, 24);
  uint32_t *out = calloc(n, sizeof *out), *packed = calloc(n, sizeof *packed);
  size_t i, used = 0;
  int same = 1;
  for (i = 0; i < n; i++) {
    int w = snprintf(data + used, 24, "key:%zu", i * 7919);
    keys[i] = (const uint8_t *)data + used;
    lens[i] = (size_t)w;
    offsets[i] = used;
    used += (size_t)w;
  }
  offsets[n] = used;
  CHECK_STATUS(shardkit_sharder_lookup_batch(s, keys, lens, n, out), SHARDKIT_STATUS_OK);
  CHECK_STATUS(shardkit_sharder_lookup_batch_packed(s, (const uint8_t *)data, used, offsets, n, packed),
               SHARDKIT_STATUS_OK);
  for (i = 0; i < n; i++) {
    uint32_t one = UINT32_MAX;
    shardkit_sharder_lookup(s, keys[i], lens[i], &one);
    same &= out[i] == one && packed[i] == one;
  }
  CHECK(same);
  free(keys);
  free(lens);
  free(offsets);
  free(data);
  free(out);
  free(packed);
}

static void test_batches(void) {
  shardkit_sharder *s = numbered(50, "ketama:twemproxy", NULL, NULL);
  check_batches(s, 1000);
  check_batches(s, 20000);
  {
    /* Empty batches, with NULLs. */
    size_t zero = 0;
    CHECK_STATUS(shardkit_sharder_lookup_batch(s, NULL, NULL, 0, NULL), SHARDKIT_STATUS_OK);
    CHECK_STATUS(shardkit_sharder_lookup_batch_packed(s, NULL, 0, &zero, 0, NULL), SHARDKIT_STATUS_OK);
  }
  {
    const uint8_t *keys[4] = {(const uint8_t *)"a", (const uint8_t *)"bb", NULL, NULL};
    size_t lens[4] = {1, 2, 0, 3};
    uint32_t out[4] = {9, 9, 9, 9};
    /* keys[2] is NULL/0 (the empty key); keys[3] is NULL with a length. */
    CHECK_ERR(shardkit_sharder_lookup_batch(s, keys, lens, 4, out), SHARDKIT_STATUS_NULL_POINTER,
              "keys[3] is NULL but its length is 3");
    CHECK(out[0] == 9 && out[3] == 9); /* nothing written on error */
    CHECK_STATUS(shardkit_sharder_lookup_batch(s, keys, lens, 3, out), SHARDKIT_STATUS_OK);
    CHECK(out[0] == lookup(s, "a") && out[2] == lookup(s, "") && out[3] == 9);
    CHECK_ERR(shardkit_sharder_lookup_batch(s, NULL, lens, 2, out), SHARDKIT_STATUS_NULL_POINTER,
              "keys is NULL");
    CHECK_ERR(shardkit_sharder_lookup_batch(s, keys, NULL, 2, out), SHARDKIT_STATUS_NULL_POINTER,
              "key_lens is NULL");
    CHECK_ERR(shardkit_sharder_lookup_batch(s, keys, lens, 2, NULL), SHARDKIT_STATUS_NULL_POINTER,
              "out_slots is NULL");
  }
  {
    const char *data = "k1k22k333";
    size_t good[4] = {0, 2, 5, 9};
    size_t bad_first[4] = {1, 2, 5, 9};
    size_t bad_last[4] = {0, 2, 5, 8};
    size_t decreasing[4] = {0, 5, 2, 9};
    uint32_t out[3] = {9, 9, 9};
    CHECK_ERR(shardkit_sharder_lookup_batch_packed(s, SZ(data), bad_first, 3, out),
              SHARDKIT_STATUS_INVALID_ARGUMENT, "offsets[0] must be 0, got 1");
    CHECK_ERR(shardkit_sharder_lookup_batch_packed(s, SZ(data), bad_last, 3, out),
              SHARDKIT_STATUS_INVALID_ARGUMENT, "must equal data_len 9, got 8");
    CHECK_ERR(shardkit_sharder_lookup_batch_packed(s, SZ(data), decreasing, 3, out),
              SHARDKIT_STATUS_INVALID_ARGUMENT, "offsets[1] = 5 and offsets[2] = 2");
    /* A wrong length: data_len shorter than the offsets claim. */
    CHECK_ERR(shardkit_sharder_lookup_batch_packed(s, (const uint8_t *)data, 4, good, 3, out),
              SHARDKIT_STATUS_INVALID_ARGUMENT, "data_len 4");
    CHECK_ERR(shardkit_sharder_lookup_batch_packed(s, NULL, 9, good, 3, out),
              SHARDKIT_STATUS_NULL_POINTER, "data is NULL but its length is 9");
    CHECK_ERR(shardkit_sharder_lookup_batch_packed(s, SZ(data), NULL, 3, out),
              SHARDKIT_STATUS_NULL_POINTER, "offsets is NULL");
    CHECK_ERR(shardkit_sharder_lookup_batch_packed(s, SZ(data), good, SIZE_MAX, out),
              SHARDKIT_STATUS_INVALID_ARGUMENT, "too large");
    CHECK(out[0] == 9 && out[1] == 9 && out[2] == 9);
    CHECK_STATUS(shardkit_sharder_lookup_batch_packed(s, SZ(data), good, 3, out), SHARDKIT_STATUS_OK);
    CHECK(out[0] == lookup(s, "k1") && out[1] == lookup(s, "k22") && out[2] == lookup(s, "k333"));
  }
  shardkit_sharder_free(s);
}

static void test_membership_and_movement(void) {
  shardkit_sharder *s = numbered(10, "ketama:nginx", NULL, NULL);
  shardkit_sharder *added = NULL, *removed = NULL, *heavier = NULL, *dup = NULL;
  shardkit_node extra = node("n10", 1);
  double fraction = -1, minimum = -1, peak = 0, stddev = -1;
  size_t i;
  int old_kept = 1;

  CHECK_STATUS(shardkit_sharder_add(s, &extra, &added), SHARDKIT_STATUS_OK);
  CHECK(shardkit_sharder_len(s) == 10 && shardkit_sharder_len(added) == 11);
  CHECK_STATUS(shardkit_sharder_movement(s, added, 20000, &fraction, &minimum), SHARDKIT_STATUS_OK);
  /* Adding 1 node to 10 must move about 1/11 of keys, and ketama comes close. */
  CHECK(fabs(minimum - 1.0 / 11.0) < 1e-9);
  CHECK(fraction > 0.04 && fraction < 0.16);
  /* Keys that moved went to the new node only. */
  for (i = 0; i < 2000; i++) {
    char key[32];
    uint32_t a, b;
    key_of(i, key, sizeof key);
    a = lookup(s, key);
    b = lookup(added, key);
    if (a != b) old_kept &= strcmp(name_of(added, b), "n10") == 0;
  }
  CHECK(old_kept);

  CHECK_STATUS(shardkit_sharder_remove(added, S("n3"), &removed), SHARDKIT_STATUS_OK);
  CHECK(shardkit_sharder_len(removed) == 10);
  {
    uint32_t slot = 0;
    CHECK_STATUS(shardkit_sharder_slot_of(removed, S("n3"), &slot), SHARDKIT_STATUS_NOT_FOUND);
  }
  CHECK_STATUS(shardkit_sharder_reweight(s, S("n0"), 5, &heavier), SHARDKIT_STATUS_OK);
  {
    uint32_t slot = 99, w = 0;
    CHECK_STATUS(shardkit_sharder_slot_of(heavier, S("n0"), &slot), SHARDKIT_STATUS_OK);
    CHECK_STATUS(shardkit_sharder_node_weight(heavier, slot, &w), SHARDKIT_STATUS_OK);
    CHECK(w == 5);
    CHECK_STATUS(shardkit_sharder_node_weight(s, slot, &w), SHARDKIT_STATUS_OK);
    CHECK(w == 1); /* the input snapshot is unchanged */
  }
  CHECK_STATUS(shardkit_sharder_balance(s, 20000, &peak, &stddev), SHARDKIT_STATUS_OK);
  CHECK(peak >= 1.0 && peak < 2.0 && stddev >= 0.0 && stddev < 0.5);

  /* Errors leave *out untouched. */
  CHECK_STATUS(shardkit_sharder_add(s, &extra, &dup), SHARDKIT_STATUS_OK);
  shardkit_sharder_free(dup);
  dup = NULL;
  CHECK_ERR(shardkit_sharder_add(added, &extra, &dup), SHARDKIT_STATUS_DUPLICATE_NODE, "\"n10\"");
  CHECK_ERR(shardkit_sharder_remove(s, S("nope"), &dup), SHARDKIT_STATUS_NOT_FOUND, "\"nope\"");
  CHECK_ERR(shardkit_sharder_reweight(s, S("n1"), 0, &dup), SHARDKIT_STATUS_INVALID_ARGUMENT,
            "got 0");
  CHECK_ERR(shardkit_sharder_reweight(s, S("n1"), -2, &dup), SHARDKIT_STATUS_INVALID_ARGUMENT,
            "got -2");
  CHECK_ERR(shardkit_sharder_add(s, NULL, &dup), SHARDKIT_STATUS_NULL_POINTER, "node is NULL");
  CHECK_ERR(shardkit_sharder_add(s, &extra, NULL), SHARDKIT_STATUS_NULL_POINTER, "out is NULL");
  CHECK_ERR(shardkit_sharder_remove(NULL, S("n1"), &dup), SHARDKIT_STATUS_NULL_POINTER, "s is NULL");
  CHECK_ERR(shardkit_sharder_remove(s, S("n\xc3"), &dup), SHARDKIT_STATUS_INVALID_UTF8, "name");
  CHECK_ERR(shardkit_sharder_movement(s, NULL, 10, &fraction, &minimum),
            SHARDKIT_STATUS_NULL_POINTER, "to is NULL");
  CHECK_ERR(shardkit_sharder_movement(s, added, 0, &fraction, &minimum),
            SHARDKIT_STATUS_INVALID_ARGUMENT, "got 0");
  CHECK_ERR(shardkit_sharder_balance(s, 10, NULL, &stddev), SHARDKIT_STATUS_NULL_POINTER,
            "out_peak_to_mean");
  CHECK(dup == NULL);
  {
    /* The last node cannot be removed. */
    shardkit_sharder *one = numbered(1, "jump", NULL, NULL);
    CHECK_ERR(shardkit_sharder_remove(one, S("n0"), &dup), SHARDKIT_STATUS_EMPTY_NODE_SET,
              "last one");
    CHECK(dup == NULL);
    shardkit_sharder_free(one);
  }
  shardkit_sharder_free(s);
  shardkit_sharder_free(added);
  shardkit_sharder_free(removed);
  shardkit_sharder_free(heavier);
}

static void test_memento_holes(void) {
  shardkit_sharder *s = numbered(6, "memento", NULL, NULL), *r = NULL, *back = NULL;
  shardkit_node again = node("n6", 1);
  size_t len = 0;
  uint32_t w = 0;
  CHECK_STATUS(shardkit_sharder_remove(s, S("n2"), &r), SHARDKIT_STATUS_OK);
  CHECK(shardkit_sharder_len(r) == 5 && shardkit_sharder_slot_count(r) == 6);
  CHECK_STATUS(shardkit_sharder_node_name(r, 2, NULL, 0, &len), SHARDKIT_STATUS_NOT_FOUND);
  CHECK_STATUS(shardkit_sharder_node_weight(r, 2, &w), SHARDKIT_STATUS_NOT_FOUND);
  CHECK_STATUS(shardkit_sharder_add(r, &again, &back), SHARDKIT_STATUS_OK);
  CHECK(shardkit_sharder_slot_count(back) == 6 && strcmp(name_of(back, 2), "n6") == 0);
  shardkit_sharder_free(s);
  shardkit_sharder_free(r);
  shardkit_sharder_free(back);
}

static void test_apply_and_is_down(void) {
  shardkit_sharder *s = numbered(5, "memento", NULL, NULL), *bulk = NULL, *step = NULL, *tmp = NULL;
  shardkit_sharder *untouched = (shardkit_sharder *)0x1;
  uint32_t slot = 0;
  bool down = true;
  size_t i;
  int same = 1;
  shardkit_change changes[4] = {
      {SHARDKIT_CHANGE_KIND_REMOVE, S("n2"), 0},
      {SHARDKIT_CHANGE_KIND_ADD, S("n9"), 1},
      {SHARDKIT_CHANGE_KIND_DOWN, S("n4"), 0},
      {SHARDKIT_CHANGE_KIND_REWEIGHT, S("n0"), 1},
  };
  /* One bulk apply equals the same changes one by one. */
  CHECK_STATUS(shardkit_sharder_apply(s, changes, 4, &bulk), SHARDKIT_STATUS_OK);
  CHECK_STATUS(shardkit_sharder_remove(s, S("n2"), &step), SHARDKIT_STATUS_OK);
  {
    shardkit_node n9 = {S("n9"), 1};
    CHECK_STATUS(shardkit_sharder_add(step, &n9, &tmp), SHARDKIT_STATUS_OK);
  }
  shardkit_sharder_free(step);
  CHECK_STATUS(shardkit_sharder_set_down(tmp, S("n4"), true, &step), SHARDKIT_STATUS_OK);
  shardkit_sharder_free(tmp);
  for (i = 0; i < 2000; i++) {
    char key[32];
    key_of(i, key, sizeof key);
    same &= strcmp(name_of(bulk, lookup(bulk, key)), name_of(step, lookup(step, key))) == 0;
  }
  CHECK(same);
  CHECK(shardkit_sharder_len(s) == 5 && shardkit_sharder_len(bulk) == 5);
  /* is_down */
  CHECK_STATUS(shardkit_sharder_slot_of(bulk, S("n4"), &slot), SHARDKIT_STATUS_OK);
  CHECK_STATUS(shardkit_sharder_is_down(bulk, slot, &down), SHARDKIT_STATUS_OK);
  CHECK(down);
  CHECK_STATUS(shardkit_sharder_slot_of(bulk, S("n9"), &slot), SHARDKIT_STATUS_OK);
  CHECK_STATUS(shardkit_sharder_is_down(bulk, slot, &down), SHARDKIT_STATUS_OK);
  CHECK(!down);
  CHECK_STATUS(shardkit_sharder_is_down(bulk, 999, &down), SHARDKIT_STATUS_NOT_FOUND);
  CHECK_ERR(shardkit_sharder_is_down(bulk, 0, NULL), SHARDKIT_STATUS_NULL_POINTER, "out");
  /* Errors: nothing applied, *out untouched, the failing entry named. */
  {
    shardkit_change bad_kind[2] = {{SHARDKIT_CHANGE_KIND_REMOVE, S("n1"), 0}, {42, S("n3"), 0}};
    shardkit_change missing[2] = {{SHARDKIT_CHANGE_KIND_REMOVE, S("n1"), 0},
                                  {SHARDKIT_CHANGE_KIND_REMOVE, S("ghost"), 0}};
    shardkit_change zero[1] = {{SHARDKIT_CHANGE_KIND_ADD, S("n7"), 0}};
    shardkit_change null_name[1] = {{SHARDKIT_CHANGE_KIND_DOWN, NULL, 3, 0}};
    CHECK_ERR(shardkit_sharder_apply(s, bad_kind, 2, &untouched), SHARDKIT_STATUS_INVALID_ARGUMENT,
              "changes[1].kind");
    CHECK_ERR(shardkit_sharder_apply(s, missing, 2, &untouched), SHARDKIT_STATUS_NOT_FOUND, "\"ghost\"");
    CHECK_ERR(shardkit_sharder_apply(s, zero, 1, &untouched), SHARDKIT_STATUS_INVALID_ARGUMENT, "got 0");
    CHECK_ERR(shardkit_sharder_apply(s, null_name, 1, &untouched), SHARDKIT_STATUS_NULL_POINTER,
              "changes[0].name");
    CHECK_ERR(shardkit_sharder_apply(s, NULL, 2, &untouched), SHARDKIT_STATUS_NULL_POINTER, "changes");
    CHECK(untouched == (shardkit_sharder *)0x1);
    /* An empty change list is a copy of the snapshot. */
    CHECK_STATUS(shardkit_sharder_apply(s, NULL, 0, &tmp), SHARDKIT_STATUS_OK);
    CHECK(lookup(tmp, "k") == lookup(s, "k"));
    shardkit_sharder_free(tmp);
  }
  shardkit_sharder_free(s);
  shardkit_sharder_free(bulk);
  shardkit_sharder_free(step);
}

static void test_set_down(void) {
  shardkit_sharder *s = numbered(5, "maglev", NULL, NULL), *d = NULL, *up = NULL;
  shardkit_sharder *all = NULL, *next = NULL;
  uint32_t down_slot = 0, slot = 0;
  size_t i;
  int others_stay = 1, avoids_down = 1, restored = 1, moved_any = 0;
  char names[5][4] = {"n0", "n1", "n2", "n3", "n4"};
  CHECK_STATUS(shardkit_sharder_set_down(s, S("n1"), true, &d), SHARDKIT_STATUS_OK);
  CHECK_STATUS(shardkit_sharder_slot_of(d, S("n1"), &down_slot), SHARDKIT_STATUS_OK);
  CHECK(shardkit_sharder_len(d) == 5);
  CHECK_STATUS(shardkit_sharder_set_down(d, S("n1"), false, &up), SHARDKIT_STATUS_OK);
  for (i = 0; i < 3000; i++) {
    char key[32];
    uint32_t a, b;
    key_of(i, key, sizeof key);
    a = lookup(s, key);
    b = lookup(d, key);
    avoids_down &= b != down_slot;
    if (a != down_slot) others_stay &= a == b;
    else moved_any = 1;
    restored &= lookup(up, key) == a;
  }
  CHECK(avoids_down && others_stay && restored && moved_any);
  /* Every node down: UNAVAILABLE. */
  all = shardkit_sharder_clone(s);
  for (i = 0; i < 5; i++) {
    next = NULL;
    CHECK_STATUS(shardkit_sharder_set_down(all, SZ(names[i]), true, &next), SHARDKIT_STATUS_OK);
    shardkit_sharder_free(all);
    all = next;
  }
  slot = 77;
  CHECK_ERR(shardkit_sharder_lookup(all, S("k"), &slot), SHARDKIT_STATUS_UNAVAILABLE,
            "all 5 nodes are marked down");
  CHECK(slot == 77);
  {
    uint32_t out[2] = {7, 7};
    const uint8_t *keys[2] = {(const uint8_t *)"a", (const uint8_t *)"b"};
    size_t lens[2] = {1, 1};
    CHECK_STATUS(shardkit_sharder_lookup_batch(all, keys, lens, 2, out), SHARDKIT_STATUS_UNAVAILABLE);
    CHECK_STATUS(shardkit_sharder_lookup_hash(all, 12345, &slot), SHARDKIT_STATUS_UNAVAILABLE);
    CHECK(out[0] == 7 && slot == 77);
  }
  CHECK_ERR(shardkit_sharder_set_down(s, S("n9"), true, &next), SHARDKIT_STATUS_NOT_FOUND, "\"n9\"");
  shardkit_sharder_free(s);
  shardkit_sharder_free(d);
  shardkit_sharder_free(up);
  shardkit_sharder_free(all);
}

static void test_bad_input(void) {
  shardkit_sharder *s = NULL;
  shardkit_node nodes[3];
  shardkit_config cfg;
  nodes[0] = node("a", 1);
  nodes[1] = node("b", 1);
  nodes[2] = node("a", 1);

  CHECK_ERR(shardkit_sharder_new(NULL, 0, NULL, &s), SHARDKIT_STATUS_EMPTY_NODE_SET, "empty");
  CHECK_ERR(shardkit_sharder_new(nodes, 0, NULL, &s), SHARDKIT_STATUS_EMPTY_NODE_SET, "empty");
  CHECK_ERR(shardkit_sharder_new(nodes, 3, NULL, &s), SHARDKIT_STATUS_DUPLICATE_NODE, "\"a\"");
  nodes[2] = node("c", 0);
  CHECK_ERR(shardkit_sharder_new(nodes, 3, NULL, &s), SHARDKIT_STATUS_INVALID_ARGUMENT, "got 0");
  CHECK(strstr(last_error(), "\"c\"") != NULL);
  nodes[2] = node("c", -7);
  CHECK_ERR(shardkit_sharder_new(nodes, 3, NULL, &s), SHARDKIT_STATUS_INVALID_ARGUMENT, "got -7");
  nodes[2] = node("c", 1);
  cfg = config("maglev:65536", NULL, NULL);
  CHECK_ERR(shardkit_sharder_new(nodes, 3, &cfg, &s), SHARDKIT_STATUS_INVALID_ARGUMENT, "65536");
  cfg = config("spiral", NULL, NULL);
  CHECK_ERR(shardkit_sharder_new(nodes, 3, &cfg, &s), SHARDKIT_STATUS_INVALID_ARGUMENT,
            "\"spiral\"");
  cfg = config("jump", "sha9", NULL);
  CHECK_ERR(shardkit_sharder_new(nodes, 3, &cfg, &s), SHARDKIT_STATUS_INVALID_ARGUMENT, "\"sha9\"");
  cfg = config("jump", NULL, "{}}");
  CHECK_ERR(shardkit_sharder_new(nodes, 3, &cfg, &s), SHARDKIT_STATUS_INVALID_ARGUMENT, "\"{}}\"");
  cfg = config("jump\xff", NULL, NULL);
  CHECK_ERR(shardkit_sharder_new(nodes, 3, &cfg, &s), SHARDKIT_STATUS_INVALID_UTF8,
            "config->algorithm is not valid UTF-8: byte 4 (0xff)");
  cfg = config("jump", "md\xc0", NULL);
  CHECK_ERR(shardkit_sharder_new(nodes, 3, &cfg, &s), SHARDKIT_STATUS_INVALID_UTF8, "config->hash");
  cfg = config(NULL, NULL, NULL);
  cfg.hash = NULL;
  cfg.hash_len = 4;
  CHECK_ERR(shardkit_sharder_new(nodes, 3, &cfg, &s), SHARDKIT_STATUS_NULL_POINTER,
            "config->hash is NULL but its length is 4");
  nodes[1].name = (const uint8_t *)"b\xe2\x82";
  nodes[1].name_len = 3;
  CHECK_ERR(shardkit_sharder_new(nodes, 3, NULL, &s), SHARDKIT_STATUS_INVALID_UTF8,
            "nodes[1].name");
  nodes[1].name = NULL;
  CHECK_ERR(shardkit_sharder_new(nodes, 3, NULL, &s), SHARDKIT_STATUS_NULL_POINTER,
            "nodes[1].name is NULL but its length is 3");
  nodes[1].name_len = 0;
  CHECK_ERR(shardkit_sharder_new(nodes, 3, NULL, &s), SHARDKIT_STATUS_INVALID_ARGUMENT, "empty");
  CHECK_ERR(shardkit_sharder_new(NULL, 2, NULL, &s), SHARDKIT_STATUS_NULL_POINTER,
            "nodes is NULL but its length is 2");
  nodes[1] = node("b", 1);
  CHECK_ERR(shardkit_sharder_new(nodes, 3, NULL, NULL), SHARDKIT_STATUS_NULL_POINTER, "out is NULL");
  /* Unweighted algorithms say so. */
  nodes[1] = node("b", 2);
  cfg = config("jump", NULL, NULL);
  CHECK_ERR(shardkit_sharder_new(nodes, 3, &cfg, &s), SHARDKIT_STATUS_INVALID_ARGUMENT, "weight");
  CHECK(s == NULL); /* never written by any of the failures */
}

static const char YAML[] =
    "alpha:\n"
    "  listen: 127.0.0.1:22121\n"
    "  hash: fnv1a_64\n"
    "  distribution: ketama\n"
    "  hash_tag: \"{}\"\n"
    "  servers:\n"
    "   - 127.0.0.1:11211:1\n"
    "   - 127.0.0.1:11212:2 beta-server\n"
    "   - 127.0.0.1:11213:1\n"
    "beta:\n"
    "  listen: 127.0.0.1:22122\n"
    "  hash: fnv1a_64\n"
    "  distribution: modula\n"
    "  servers:\n"
    "   - 127.0.0.1:11214:2\n"
    "   - 127.0.0.1:11215:1\n"
    "   - 127.0.0.1:11216:3\n";

static void test_twemproxy_file(void) {
  char path[] = "/tmp/shardkit-c-test-XXXXXX";
  shardkit_sharder *from_file = NULL, *from_yaml = NULL, *untouched = (shardkit_sharder *)0x1;
  size_t i;
  int same = 1;
  int fd = mkstemp(path);
  FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
  CHECK(f != NULL);
  if (f == NULL) return;
  fputs(YAML, f);
  fclose(f);
  CHECK_STATUS(shardkit_sharder_from_twemproxy_file(SZ(path), S("beta"), &from_file), SHARDKIT_STATUS_OK);
  CHECK_STATUS(shardkit_sharder_from_twemproxy_yaml(S(YAML), S("beta"), &from_yaml), SHARDKIT_STATUS_OK);
  for (i = 0; from_file && from_yaml && i < 500; i++) {
    char key[32];
    key_of(i, key, sizeof key);
    same &= strcmp(name_of(from_file, lookup(from_file, key)), name_of(from_yaml, lookup(from_yaml, key))) == 0;
  }
  CHECK(same);
  CHECK_ERR(shardkit_sharder_from_twemproxy_file(SZ(path), S("gamma"), &untouched), SHARDKIT_STATUS_NOT_FOUND,
            "gamma");
  remove(path);
  CHECK_ERR(shardkit_sharder_from_twemproxy_file(SZ(path), NULL, 0, &untouched), SHARDKIT_STATUS_IO,
            "shardkit-c-test-");
  CHECK_ERR(shardkit_sharder_from_twemproxy_file(NULL, 4, NULL, 0, &untouched), SHARDKIT_STATUS_NULL_POINTER,
            "path");
  CHECK(untouched == (shardkit_sharder *)0x1);
  shardkit_sharder_free(from_file);
  shardkit_sharder_free(from_yaml);
}

static void test_twemproxy_yaml(void) {
  shardkit_sharder *alpha = NULL, *first = NULL, *beta = NULL, *manual = NULL, *s = NULL;
  uint32_t w = 0;
  size_t i;
  int same = 1, tags = 1;
  CHECK_STATUS(shardkit_sharder_from_twemproxy_yaml(S(YAML), S("alpha"), &alpha), SHARDKIT_STATUS_OK);
  CHECK_STATUS(shardkit_sharder_from_twemproxy_yaml(S(YAML), NULL, 0, &first), SHARDKIT_STATUS_OK);
  CHECK_STATUS(shardkit_sharder_from_twemproxy_yaml(S(YAML), S("beta"), &beta), SHARDKIT_STATUS_OK);
  if (!alpha || !first || !beta) return;
  CHECK(shardkit_sharder_len(alpha) == 3 && shardkit_sharder_len(beta) == 3);
  /* Names are the entries as written, without the alias. */
  CHECK(strcmp(name_of(alpha, 1), "127.0.0.1:11212:2") == 0);
  CHECK_STATUS(shardkit_sharder_node_weight(alpha, 1, &w), SHARDKIT_STATUS_OK);
  CHECK(w == 2);
  for (i = 0; i < 500; i++) {
    char key[32], tagged[80];
    key_of(i, key, sizeof key);
    same &= lookup(alpha, key) == lookup(first, key);
    snprintf(tagged, sizeof tagged, "{%s}:x", key);
    tags &= lookup(alpha, tagged) == lookup(alpha, key);
  }
  CHECK(same);
  CHECK(tags); /* the pool's hash_tag is in effect */
  {
    /* modula is hash % total weight: names do not matter, so the same
     * weights through shardkit_sharder_new place every key alike. */
    shardkit_node nodes[3];
    shardkit_config cfg = config("modulo", "fnv1a_64", NULL);
    nodes[0] = node("x", 2);
    nodes[1] = node("y", 1);
    nodes[2] = node("z", 3);
    CHECK_STATUS(shardkit_sharder_new(nodes, 3, &cfg, &manual), SHARDKIT_STATUS_OK);
    same = 1;
    for (i = 0; manual && i < 2000; i++) {
      char key[32];
      key_of(i, key, sizeof key);
      same &= lookup(beta, key) == lookup(manual, key);
    }
    CHECK(same);
  }
  CHECK_ERR(shardkit_sharder_from_twemproxy_yaml(S(YAML), S("gamma"), &s), SHARDKIT_STATUS_NOT_FOUND,
            "gamma");
  CHECK_ERR(shardkit_sharder_from_twemproxy_yaml(S("alpha: [unclosed\n  - :"), NULL, 0, &s),
            SHARDKIT_STATUS_CONFIG, "");
  CHECK_ERR(shardkit_sharder_from_twemproxy_yaml(S("alpha:\n  hash: sha9\n  servers:\n   - "
                                                   "127.0.0.1:11211:1\n"),
                                                 NULL, 0, &s),
            SHARDKIT_STATUS_CONFIG, "hash \"sha9\"");
  CHECK_ERR(shardkit_sharder_from_twemproxy_yaml(S("a\xff: 1\n"), NULL, 0, &s),
            SHARDKIT_STATUS_INVALID_UTF8, "yaml is not valid UTF-8: byte 1");
  CHECK_ERR(shardkit_sharder_from_twemproxy_yaml(S(YAML), S("al\xffpha"), &s),
            SHARDKIT_STATUS_INVALID_UTF8, "pool");
  CHECK_ERR(shardkit_sharder_from_twemproxy_yaml(NULL, 10, NULL, 0, &s), SHARDKIT_STATUS_NULL_POINTER,
            "yaml is NULL");
  CHECK_ERR(shardkit_sharder_from_twemproxy_yaml(S(YAML), NULL, 0, NULL), SHARDKIT_STATUS_NULL_POINTER,
            "out is NULL");
  CHECK(s == NULL);
  shardkit_sharder_free(alpha);
  shardkit_sharder_free(first);
  shardkit_sharder_free(beta);
  shardkit_sharder_free(manual);
}

static void test_nginx_upstream(void) {
  shardkit_sharder *s = NULL, *manual = NULL, *bad = NULL;
  shardkit_node nodes[3];
  shardkit_config cfg = config("ketama:nginx", NULL, NULL);
  size_t i;
  int same = 1;
  nodes[0] = node("127.0.0.1:8081", 2);
  nodes[1] = node("127.0.0.1:8082", 1);
  nodes[2] = node("10.0.0.7:80", 3);
  CHECK_STATUS(shardkit_sharder_from_nginx_upstream(
                   S("127.0.0.1:8081 weight=2;127.0.0.1:8082\n10.0.0.7:80 weight=3"), &s),
               SHARDKIT_STATUS_OK);
  CHECK_STATUS(shardkit_sharder_new(nodes, 3, &cfg, &manual), SHARDKIT_STATUS_OK);
  if (s && manual) {
    CHECK(shardkit_sharder_len(s) == 3);
    CHECK(strcmp(name_of(s, 2), "10.0.0.7:80") == 0);
    for (i = 0; i < 2000; i++) {
      char key[32];
      key_of(i, key, sizeof key);
      same &= lookup(s, key) == lookup(manual, key);
    }
    CHECK(same);
  }
  CHECK_ERR(shardkit_sharder_from_nginx_upstream(S("127.0.0.1:8081 weight=0"), &bad),
            SHARDKIT_STATUS_INVALID_ARGUMENT, "0");
  CHECK_ERR(shardkit_sharder_from_nginx_upstream(S("127.0.0.1:8081 weight=x"), &bad),
            SHARDKIT_STATUS_INVALID_ARGUMENT, "got \"x\"");
  CHECK_ERR(shardkit_sharder_from_nginx_upstream(S(""), &bad), SHARDKIT_STATUS_EMPTY_NODE_SET, "");
  CHECK_ERR(shardkit_sharder_from_nginx_upstream(S("127.0.0.1:8081,127.0.0.1:8081"), &bad),
            SHARDKIT_STATUS_DUPLICATE_NODE, "127.0.0.1:8081");
  CHECK_ERR(shardkit_sharder_from_nginx_upstream(S("h\xc3\x28:80"), &bad),
            SHARDKIT_STATUS_INVALID_UTF8, "list");
  CHECK_ERR(shardkit_sharder_from_nginx_upstream(NULL, 3, &bad), SHARDKIT_STATUS_NULL_POINTER,
            "list is NULL");
  CHECK(bad == NULL);
  shardkit_sharder_free(s);
  shardkit_sharder_free(manual);
}

/* shardkit_sharder_from_upstream: the nginx list syntax, any algorithm
 * (what the Lua balancer in nginx builds its rings with). */
static void test_upstream_with_algorithm(void) {
  const char *list = "127.0.0.1:8081 weight=2;127.0.0.1:8082\n10.0.0.7:80 weight=3";
  const char *algs[] = {"ketama:nginx", "maglev", "rendezvous", "bounded", "modulo"};
  shardkit_node nodes[3];
  shardkit_sharder *s = NULL, *bad = NULL;
  size_t a, i;
  nodes[0] = node("127.0.0.1:8081", 2);
  nodes[1] = node("127.0.0.1:8082", 1);
  nodes[2] = node("10.0.0.7:80", 3);
  /* Each algorithm places the list's servers as it places the same nodes. */
  for (a = 0; a < sizeof algs / sizeof algs[0]; a++) {
    shardkit_sharder *manual = NULL;
    shardkit_config cfg = config(algs[a], NULL, NULL);
    int same = 1;
    s = NULL;
    CHECK_STATUS(shardkit_sharder_from_upstream(SZ(list), SZ(algs[a]), &s), SHARDKIT_STATUS_OK);
    CHECK_STATUS(shardkit_sharder_new(nodes, 3, &cfg, &manual), SHARDKIT_STATUS_OK);
    if (s && manual) {
      CHECK(shardkit_sharder_len(s) == 3);
      CHECK(strcmp(name_of(s, 0), "127.0.0.1:8081") == 0);
      for (i = 0; i < 1000; i++) {
        char key[32];
        key_of(i, key, sizeof key);
        same &= lookup(s, key) == lookup(manual, key);
      }
      CHECK(same);
    }
    shardkit_sharder_free(s);
    shardkit_sharder_free(manual);
  }
  {
    /* NULL/0 is ketama:nginx, i.e. shardkit_sharder_from_nginx_upstream. */
    shardkit_sharder *nginx = NULL;
    int same = 1;
    s = NULL;
    CHECK_STATUS(shardkit_sharder_from_upstream(SZ(list), NULL, 0, &s), SHARDKIT_STATUS_OK);
    CHECK_STATUS(shardkit_sharder_from_nginx_upstream(SZ(list), &nginx), SHARDKIT_STATUS_OK);
    if (s && nginx) {
      for (i = 0; i < 1000; i++) {
        char key[32];
        key_of(i, key, sizeof key);
        same &= lookup(s, key) == lookup(nginx, key);
      }
      CHECK(same);
    }
    shardkit_sharder_free(s);
    shardkit_sharder_free(nginx);
  }
  {
    /* Unweighted algorithms take a list without weights, and keep `down`. */
    uint32_t slot = UINT32_MAX;
    int skipped = 1;
    s = NULL;
    CHECK_STATUS(shardkit_sharder_from_upstream(S("a:1, b:2 down, c:3"), S("jump"), &s),
                 SHARDKIT_STATUS_OK);
    if (s) {
      CHECK_STATUS(shardkit_sharder_slot_of(s, S("b:2"), &slot), SHARDKIT_STATUS_OK);
      for (i = 0; i < 300; i++) {
        char key[32];
        key_of(i, key, sizeof key);
        skipped &= lookup(s, key) != slot;
      }
      CHECK(skipped);
    }
    shardkit_sharder_free(s);
  }
  /* Errors name the bad value and write nothing. */
  CHECK_ERR(shardkit_sharder_from_upstream(SZ(list), S("ketama:nope"), &bad),
            SHARDKIT_STATUS_INVALID_ARGUMENT, "nope");
  CHECK_ERR(shardkit_sharder_from_upstream(SZ(list), S("consistent"), &bad),
            SHARDKIT_STATUS_INVALID_ARGUMENT, "unknown sharding algorithm \"consistent\"");
  CHECK_ERR(shardkit_sharder_from_upstream(SZ(list), S("maglev:100"), &bad),
            SHARDKIT_STATUS_INVALID_ARGUMENT, "100");
  CHECK_ERR(shardkit_sharder_from_upstream(S("127.0.0.1:8081 weight=0"), S("maglev"), &bad),
            SHARDKIT_STATUS_INVALID_ARGUMENT, "got \"0\"");
  CHECK_ERR(shardkit_sharder_from_upstream(S("127.0.0.1:8081 weight=two"), S("maglev"), &bad),
            SHARDKIT_STATUS_INVALID_ARGUMENT, "got \"two\"");
  CHECK_ERR(shardkit_sharder_from_upstream(SZ(list), S("jump"), &bad),
            SHARDKIT_STATUS_INVALID_ARGUMENT, "\"127.0.0.1:8081\"");
  CHECK_ERR(shardkit_sharder_from_upstream(S(" ; "), S("jump"), &bad),
            SHARDKIT_STATUS_EMPTY_NODE_SET, "has no servers");
  CHECK_ERR(shardkit_sharder_from_upstream(S("a:1, a:1"), S("jump"), &bad),
            SHARDKIT_STATUS_DUPLICATE_NODE, "\"a:1\"");
  CHECK_ERR(shardkit_sharder_from_upstream(SZ(list), S("j\xc3\x28"), &bad),
            SHARDKIT_STATUS_INVALID_UTF8, "algorithm");
  CHECK_ERR(shardkit_sharder_from_upstream(NULL, 3, S("jump"), &bad),
            SHARDKIT_STATUS_NULL_POINTER, "list is NULL");
  CHECK_ERR(shardkit_sharder_from_upstream(SZ(list), S("jump"), NULL),
            SHARDKIT_STATUS_NULL_POINTER, "out is NULL");
  CHECK(bad == NULL);
}

static void test_last_error_protocol(void) {
  shardkit_sharder *s = NULL;
  char small[6];
  char *full;
  size_t len = 0, need = 0;
  memset(small, 'x', sizeof small);
  CHECK_STATUS(shardkit_sharder_new(NULL, 0, NULL, &s), SHARDKIT_STATUS_EMPTY_NODE_SET);
  CHECK_STATUS(shardkit_last_error(NULL, 0, &need), SHARDKIT_STATUS_BUFFER_TOO_SMALL);
  CHECK(need > 10);
  full = malloc(need + 1);
  CHECK_STATUS(shardkit_last_error(full, need + 1, &len), SHARDKIT_STATUS_OK);
  CHECK(len == need && strlen(full) == need);
  CHECK(strncmp(full, "empty node set: ", 16) == 0);
  CHECK_STATUS(shardkit_last_error(small, sizeof small, &len), SHARDKIT_STATUS_BUFFER_TOO_SMALL);
  CHECK(len == need && strlen(small) == 5 && strncmp(small, full, 5) == 0);
  CHECK_STATUS(shardkit_last_error(NULL, 4, &len), SHARDKIT_STATUS_NULL_POINTER);
  /* A success does not clear it. */
  s = numbered(2, "jump", NULL, NULL);
  CHECK(strcmp(last_error(), full) == 0);
  free(full);
  shardkit_sharder_free(s);
}

/* ---- threads: one snapshot shared, last errors per thread --------------- */

struct worker {
  const shardkit_sharder *s;
  const uint32_t *expected;
  size_t n;
  int ok;
};

static void *worker_main(void *arg) {
  struct worker *w = arg;
  char buf[256];
  size_t i, len = 0;
  w->ok = 1;
  /* This thread's last error is its own: empty until it fails. */
  w->ok &= shardkit_last_error(buf, sizeof buf, &len) == SHARDKIT_STATUS_OK && len == 0;
  for (i = 0; i < w->n; i++) {
    char key[32];
    uint32_t slot = UINT32_MAX;
    key_of(i, key, sizeof key);
    w->ok &= shardkit_sharder_lookup(w->s, SZ(key), &slot) == SHARDKIT_STATUS_OK;
    w->ok &= slot == w->expected[i];
  }
  w->ok &= shardkit_sharder_lookup(w->s, NULL, 1, NULL) == SHARDKIT_STATUS_NULL_POINTER;
  w->ok &= shardkit_last_error(buf, sizeof buf, &len) == SHARDKIT_STATUS_OK &&
           strstr(buf, "key is NULL") != NULL;
  return NULL;
}

static void test_threads(void) {
  enum { THREADS = 4, N = 3000 };
  shardkit_sharder *s = numbered(33, "ketama:uhashring", NULL, NULL);
  uint32_t *expected = calloc(N, sizeof *expected);
  pthread_t th[THREADS];
  struct worker w[THREADS];
  size_t i;
  shardkit_sharder *tmp = NULL;
  for (i = 0; i < N; i++) {
    char key[32];
    key_of(i, key, sizeof key);
    expected[i] = lookup(s, key);
  }
  /* Give the main thread a distinctive last error. */
  CHECK_STATUS(shardkit_sharder_remove(s, S("main-thread-only"), &tmp), SHARDKIT_STATUS_NOT_FOUND);
  for (i = 0; i < THREADS; i++) {
    w[i].s = s;
    w[i].expected = expected;
    w[i].n = N;
    w[i].ok = 0;
    CHECK(pthread_create(&th[i], NULL, worker_main, &w[i]) == 0);
  }
  for (i = 0; i < THREADS; i++) {
    CHECK(pthread_join(th[i], NULL) == 0);
    CHECK(w[i].ok);
  }
  CHECK(strstr(last_error(), "main-thread-only") != NULL);
  free(expected);
  shardkit_sharder_free(s);
}

/* ---- the cross-language placement vectors ------------------------------- */

static int hex_decode(const char *hex, uint8_t *out, size_t cap, size_t *out_len) {
  size_t n = strlen(hex), i;
  if (n % 2 || n / 2 > cap) return 0;
  for (i = 0; i < n / 2; i++) {
    unsigned v;
    if (sscanf(hex + 2 * i, "%2x", &v) != 1) return 0;
    out[i] = (uint8_t)v;
  }
  *out_len = n / 2;
  return 1;
}

/* Builds the sharder of one vectors line: nodes are "name=weight,...". */
static shardkit_sharder *vector_sharder(const char *alg, const char *hash, const char *tag,
                                        char *nodes_col) {
  shardkit_node nodes[512];
  size_t n = 0;
  char *save = NULL, *item;
  shardkit_config cfg = config(alg, *hash ? hash : NULL, *tag ? tag : NULL);
  shardkit_sharder *s = NULL;
  for (item = strtok_r(nodes_col, ",", &save); item && n < 512;
       item = strtok_r(NULL, ",", &save)) {
    char *eq = strrchr(item, '=');
    if (!eq) return NULL;
    *eq = '\0';
    nodes[n++] = node(item, strtoll(eq + 1, NULL, 10));
  }
  if (shardkit_sharder_new(nodes, n, &cfg, &s) != SHARDKIT_STATUS_OK) {
    fprintf(stderr, "vectors: cannot build %s/%s/%s: %s\n", alg, hash, tag, last_error());
    return NULL;
  }
  return s;
}

static void test_vectors(const char *path) {
  FILE *f = fopen(path, "r");
  char line[8192], prev_setup[8192] = "";
  shardkit_sharder *s = NULL;
  size_t lines = 0, matched = 0;
  if (!f) {
    const char *req = getenv("SHARDKIT_REQUIRE_VECTORS");
    if (req && strcmp(req, "1") == 0) {
      fprintf(stderr, "vectors: %s is missing and SHARDKIT_REQUIRE_VECTORS=1\n", path);
      CHECK(f != NULL);
    } else {
      fprintf(stderr, "vectors: %s not found; skipped\n", path);
    }
    return;
  }
  while (fgets(line, sizeof line, f)) {
    char *cols[6], *p = line, setup[8192];
    size_t ncols = 0, setup_len;
    uint8_t key[1024];
    size_t key_len = 0;
    uint32_t slot = UINT32_MAX;
    line[strcspn(line, "\r\n")] = '\0';
    if (line[0] == '#' || line[0] == '\0') continue;
    lines++;
    /* Split on TABs, keeping empty columns. */
    while (ncols < 6) {
      cols[ncols++] = p;
      p = strchr(p, '\t');
      if (!p) break;
      *p++ = '\0';
    }
    if (ncols != 6 || !hex_decode(cols[4], key, sizeof key, &key_len)) {
      fprintf(stderr, "vectors: malformed line %zu\n", lines);
      continue;
    }
    /* Lines come grouped by sharder: rebuild only when the setup changes. */
    setup_len = (size_t)snprintf(setup, sizeof setup, "%s\t%s\t%s\t%s", cols[0], cols[1], cols[2],
                                 cols[3]);
    if (setup_len >= sizeof setup || strcmp(setup, prev_setup) != 0) {
      shardkit_sharder_free(s);
      strcpy(prev_setup, setup);
      s = vector_sharder(cols[0], cols[1], cols[2], cols[3]);
    }
    if (s && shardkit_sharder_lookup(s, key, key_len, &slot) == SHARDKIT_STATUS_OK &&
        strcmp(name_of(s, slot), cols[5]) == 0) {
      matched++;
    } else if (lines - matched <= 10) {
      fprintf(stderr, "vectors: line %zu (%s): want %s, got %s\n", lines, prev_setup, cols[5],
              s ? name_of(s, slot) : "(no sharder)");
    }
  }
  fclose(f);
  shardkit_sharder_free(s);
  fprintf(stderr, "vectors: %zu of %zu placements match\n", matched, lines);
  CHECK(lines > 0);
  CHECK(matched == lines);
}

int main(int argc, char **argv) {
  check_init();
  test_version();
  test_status_messages();
  test_free_null_and_clone();
  test_construction_and_accessors();
  test_node_name_protocol();
  test_nodes_in_one_call();
  test_typed_handles();
  test_lookup_and_hash();
  test_lookup_n();
  test_batches();
  test_membership_and_movement();
  test_memento_holes();
  test_set_down();
  test_apply_and_is_down();
  test_bad_input();
  test_twemproxy_yaml();
  test_twemproxy_file();
  test_nginx_upstream();
  test_upstream_with_algorithm();
  test_last_error_protocol();
  test_threads();
  test_vectors(argc > 1 ? argv[1] : "tests/vectors/placement.tsv");
  return check_done();
}
