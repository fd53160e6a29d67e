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

// ---- ownership election (leases) -------------------------------------------
//
// Wrappers over the shardkit_coordinator_*, shardkit_session_*, ... calls,
// with the error copied as above. Callbacks are registered with a cgo.Handle
// value as userdata (a uintptr_t, so Go never converts an integer to a
// pointer); the trampolines in shim.c hand it back to the Go exports in
// callbacks.go.

shardkit_status sk_cancel_new(shardkit_cancel **out, char **err);
shardkit_status sk_coordinator_new_embedded(shardkit_coordinator **out, char **err);
shardkit_status sk_coordinator_connect(const uint8_t *endpoints, size_t endpoints_len,
		uint64_t timeout_ms, shardkit_coordinator **out, char **err);
// The description in malloc'd, NUL-terminated text (*out), freed by the caller.
shardkit_status sk_coordinator_describe(const shardkit_coordinator *c, char **out,
		char **err);
// The leader's value in malloc'd memory (*value, *value_len bytes; NULL when
// there is no leader), freed by the caller.
shardkit_status sk_coordinator_leader(const shardkit_coordinator *c, const uint8_t *name,
		size_t name_len, bool *found, uint8_t **value, size_t *value_len,
		shardkit_fencing_token *token, char **err);
shardkit_status sk_coordinator_revoke(const shardkit_coordinator *c, int64_t lease,
		char **err);
shardkit_status sk_session_new_with(const shardkit_coordinator *c, uint64_t ttl_secs,
		uint64_t margin_ms, uint64_t rpc_timeout_ms, shardkit_session **out, char **err);
shardkit_status sk_session_resume(const shardkit_coordinator *c, int64_t lease,
		shardkit_session **out, char **err);
shardkit_status sk_session_check(const shardkit_session *s, char **err);
shardkit_status sk_session_on_lost(const shardkit_session *s, uintptr_t handle, char **err);
shardkit_status sk_session_close(const shardkit_session *s, char **err);
shardkit_status sk_lock_new(const shardkit_session *s, const uint8_t *name, size_t name_len,
		shardkit_lock **out, char **err);
shardkit_status sk_lock_acquire(const shardkit_lock *l, int64_t timeout_ms,
		const shardkit_cancel *cancel, shardkit_fencing_token *token, char **err);
shardkit_status sk_lock_try_acquire(const shardkit_lock *l, bool *acquired,
		shardkit_fencing_token *token, char **err);
shardkit_status sk_lock_release(const shardkit_lock *l, char **err);
shardkit_status sk_lock_put(const shardkit_lock *l, const uint8_t *key, size_t key_len,
		const uint8_t *value, size_t value_len, int64_t *revision, char **err);
shardkit_status sk_election_new(const shardkit_session *s, const uint8_t *name,
		size_t name_len, shardkit_election **out, char **err);
shardkit_status sk_election_campaign(const shardkit_election *e, const uint8_t *value,
		size_t value_len, int64_t timeout_ms, const shardkit_cancel *cancel,
		shardkit_fencing_token *token, char **err);
shardkit_status sk_election_proclaim(const shardkit_election *e, const uint8_t *value,
		size_t value_len, char **err);
shardkit_status sk_election_resign(const shardkit_election *e, char **err);
shardkit_status sk_observer_start(const shardkit_coordinator *c, const uint8_t *name,
		size_t name_len, uintptr_t handle, shardkit_observer **out, char **err);
shardkit_status sk_fence_gate_new(const uint8_t *name, size_t name_len,
		shardkit_fence_gate **out, char **err);
shardkit_status sk_fence_gate_admit(const shardkit_fence_gate *g, const uint8_t *resource,
		size_t resource_len, int64_t token, char **err);
shardkit_status sk_shard_owner_start(const shardkit_session *s, const uint8_t *group,
		size_t group_len, const uint8_t *worker, size_t worker_len,
		const char *const *shards, const size_t *shard_lens, size_t n_shards,
		uintptr_t handle, shardkit_shard_owner **out, char **err);
shardkit_status sk_shard_owner_owns(const shardkit_shard_owner *o, const uint8_t *shard,
		size_t shard_len, bool *owned, int64_t *token, char **err);
shardkit_status sk_shard_owner_close(const shardkit_shard_owner *o, char **err);

// ---- merge and the HTTP scatter client -------------------------------------

shardkit_status sk_top_k(const shardkit_hit *const *lists, const size_t *lens, size_t nlists,
		size_t offset, size_t size, shardkit_hit *out, size_t out_cap, size_t *out_len,
		char **err);
shardkit_status sk_intersect_u32(const uint32_t *const *lists, const size_t *lens,
		size_t nlists, uint32_t *out, size_t out_cap, size_t *out_len, char **err);
shardkit_status sk_intersect_u64(const uint64_t *const *lists, const size_t *lens,
		size_t nlists, uint64_t *out, size_t out_cap, size_t *out_len, char **err);
shardkit_status sk_union_u32(const uint32_t *const *lists, const size_t *lens,
		size_t nlists, uint32_t *out, size_t out_cap, size_t *out_len, char **err);
shardkit_status sk_union_u64(const uint64_t *const *lists, const size_t *lens,
		size_t nlists, uint64_t *out, size_t out_cap, size_t *out_len, char **err);
shardkit_status sk_http_scatter_new(const char *const *leaves, size_t nleaves,
		const shardkit_scatter_options *opts, shardkit_http_scatter **out, char **err);
// *out_json is the library's string: free it with shardkit_string_free.
shardkit_status sk_http_scatter_gather(const shardkit_http_scatter *s, const char *body,
		size_t body_len, uint32_t timeout_ms, int32_t min_answers, char **out_json,
		char **err);
shardkit_status sk_http_scatter_first(const shardkit_http_scatter *s, const char *body,
		size_t body_len, uint32_t timeout_ms, char **out_json, char **err);

#endif
