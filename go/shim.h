// Declarations of the wrappers in shim.c. The error out-parameter of each
// receives malloc'd, NUL-terminated text on failure (NULL if none), which the
// caller frees.

#ifndef SHARDKIT_GO_SHIM_H
#define SHARDKIT_GO_SHIM_H

#include "shardkit.h"

// A snapshot's nodes by slot, fetched in one cgo call: names packed in
// `names` (slot i is names[offsets[i]..offsets[i+1]]), weights, and whether
// the slot holds a node at all. All arrays are malloc'd; sk_nodes_free frees.
typedef struct {
	uint8_t *names;
	size_t *offsets;
	uint32_t *weights;
	uint8_t *present;
	size_t slots;
} sk_nodes;

void sk_nodes_free(sk_nodes *n);
shardkit_status sk_load_nodes(const shardkit_sharder *s, sk_nodes *out, char **err);
shardkit_status sk_new(const shardkit_node *nodes, size_t n_nodes,
		const shardkit_config *config, shardkit_sharder **out, char **err);
shardkit_status sk_from_twemproxy_file(const uint8_t *path, size_t path_len,
		const uint8_t *pool, size_t pool_len, shardkit_sharder **out, char **err);
shardkit_status sk_from_twemproxy_yaml(const uint8_t *yaml, size_t yaml_len,
		const uint8_t *pool, size_t pool_len, shardkit_sharder **out, char **err);
shardkit_status sk_from_nginx_upstream(const uint8_t *list, size_t list_len,
		shardkit_sharder **out, char **err);
shardkit_sharder *sk_clone(const shardkit_sharder *s, char **err);
shardkit_status sk_slot_of(const shardkit_sharder *s, const uint8_t *name,
		size_t name_len, uint32_t *out, char **err);
shardkit_status sk_key_hash(const shardkit_sharder *s, const uint8_t *key,
		size_t key_len, uint64_t *out, char **err);
shardkit_status sk_lookup(const shardkit_sharder *s, const uint8_t *key,
		size_t key_len, uint32_t *out, char **err);
shardkit_status sk_lookup_hash(const shardkit_sharder *s, uint64_t hash,
		uint32_t *out, char **err);
shardkit_status sk_lookup_n(const shardkit_sharder *s, const uint8_t *key,
		size_t key_len, size_t n, uint32_t *out, size_t out_cap, size_t *out_count,
		char **err);
shardkit_status sk_lookup_batch_packed(const shardkit_sharder *s,
		const uint8_t *data, size_t data_len, const size_t *offsets, size_t count,
		uint32_t *out, char **err);
shardkit_status sk_add(const shardkit_sharder *s, const shardkit_node *node,
		shardkit_sharder **out, char **err);
shardkit_status sk_remove(const shardkit_sharder *s, const uint8_t *name,
		size_t name_len, shardkit_sharder **out, char **err);
shardkit_status sk_reweight(const shardkit_sharder *s, const uint8_t *name,
		size_t name_len, int64_t weight, shardkit_sharder **out, char **err);
shardkit_status sk_set_down(const shardkit_sharder *s, const uint8_t *name,
		size_t name_len, int down, shardkit_sharder **out, char **err);
shardkit_status sk_apply(const shardkit_sharder *s, const shardkit_change *changes,
		size_t n_changes, shardkit_sharder **out, char **err);
shardkit_status sk_is_down(const shardkit_sharder *s, uint32_t slot, bool *out, char **err);
shardkit_status sk_movement(const shardkit_sharder *from, const shardkit_sharder *to,
		size_t samples, double *fraction, double *minimum, char **err);
shardkit_status sk_balance(const shardkit_sharder *s, size_t samples,
		double *peak_to_mean, double *stddev, char **err);

#endif
