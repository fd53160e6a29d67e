// Wrappers that the Go side calls instead of the C ABI directly: each one
// makes the call and, on failure, copies this thread's last-error text before
// returning (see capi.go for why).

#include <stdlib.h>
#include <string.h>
#include "shim.h"

// Copies this thread's last error into malloc'd, NUL-terminated memory that
// the Go side frees. NULL when there is no text or no memory: the status code
// still tells the kind.
static char *sk_take_error(void) {
	char small[256];
	size_t n = 0;
	shardkit_status st = shardkit_last_error(small, sizeof small, &n);
	if (st == SHARDKIT_STATUS_OK) {
		if (n >= sizeof small) n = sizeof small - 1;
		char *m = malloc(n + 1);
		if (m == NULL) return NULL;
		memcpy(m, small, n);
		m[n] = '\0';
		return m;
	}
	if (st != SHARDKIT_STATUS_BUFFER_TOO_SMALL) return NULL;
	size_t cap = n + 1;
	char *m = malloc(cap);
	if (m == NULL) return NULL;
	if (shardkit_last_error(m, cap, &n) != SHARDKIT_STATUS_OK) {
		free(m);
		return NULL;
	}
	m[n < cap ? n : cap - 1] = '\0';
	return m;
}

#define SK_RETURN(call)                                   \
	do {                                                  \
		shardkit_status st_ = (call);                     \
		if (st_ != SHARDKIT_STATUS_OK) *err = sk_take_error(); \
		return st_;                                       \
	} while (0)

shardkit_status sk_new(const shardkit_node *nodes, size_t n_nodes,
		const shardkit_config *config, shardkit_sharder **out, char **err) {
	SK_RETURN(shardkit_sharder_new(nodes, n_nodes, config, out));
}

shardkit_status sk_from_twemproxy_file(const uint8_t *path, size_t path_len,
		const uint8_t *pool, size_t pool_len, shardkit_sharder **out, char **err) {
	SK_RETURN(shardkit_sharder_from_twemproxy_file(path, path_len, pool, pool_len, out));
}

shardkit_status sk_from_twemproxy_yaml(const uint8_t *yaml, size_t yaml_len,
		const uint8_t *pool, size_t pool_len, shardkit_sharder **out, char **err) {
	SK_RETURN(shardkit_sharder_from_twemproxy_yaml(yaml, yaml_len, pool, pool_len, out));
}

shardkit_status sk_from_nginx_upstream(const uint8_t *list, size_t list_len,
		shardkit_sharder **out, char **err) {
	SK_RETURN(shardkit_sharder_from_nginx_upstream(list, list_len, out));
}

shardkit_sharder *sk_clone(const shardkit_sharder *s, char **err) {
	shardkit_sharder *c = shardkit_sharder_clone(s);
	if (c == NULL) *err = sk_take_error();
	return c;
}

void sk_nodes_free(sk_nodes *n) {
	free(n->names);
	free(n->offsets);
	free(n->weights);
	free(n->present);
	memset(n, 0, sizeof *n);
}

shardkit_status sk_load_nodes(const shardkit_sharder *s, sk_nodes *out, char **err) {
	memset(out, 0, sizeof *out);
	size_t slots = shardkit_sharder_slot_count(s);
	size_t cap = slots * 16 + 16, used = 0;
	out->slots = slots;
	out->names = malloc(cap);
	out->offsets = malloc((slots + 1) * sizeof(size_t));
	out->weights = malloc((slots ? slots : 1) * sizeof(uint32_t));
	out->present = malloc(slots ? slots : 1);
	if (!out->names || !out->offsets || !out->weights || !out->present) {
		sk_nodes_free(out);
		return SHARDKIT_STATUS_PANIC;
	}
	for (size_t i = 0; i < slots; i++) {
		out->offsets[i] = used;
		out->weights[i] = 0;
		out->present[i] = 0;
		size_t len = 0;
		shardkit_status st = shardkit_sharder_node_name(s, (uint32_t)i,
				out->names + used, cap - used, &len);
		if (st == SHARDKIT_STATUS_BUFFER_TOO_SMALL) {
			size_t want = cap * 2 > used + len + 1 ? cap * 2 : used + len + 1;
			uint8_t *grown = realloc(out->names, want);
			if (grown == NULL) {
				sk_nodes_free(out);
				return SHARDKIT_STATUS_PANIC;
			}
			out->names = grown;
			cap = want;
			st = shardkit_sharder_node_name(s, (uint32_t)i, out->names + used, cap - used, &len);
		}
		if (st == SHARDKIT_STATUS_NOT_FOUND) continue;  // an empty slot
		if (st == SHARDKIT_STATUS_OK)
			st = shardkit_sharder_node_weight(s, (uint32_t)i, &out->weights[i]);
		if (st != SHARDKIT_STATUS_OK) {
			*err = sk_take_error();
			sk_nodes_free(out);
			return st;
		}
		out->present[i] = 1;
		used += len;
	}
	out->offsets[slots] = used;
	return SHARDKIT_STATUS_OK;
}

shardkit_status sk_slot_of(const shardkit_sharder *s, const uint8_t *name,
		size_t name_len, uint32_t *out, char **err) {
	SK_RETURN(shardkit_sharder_slot_of(s, name, name_len, out));
}

shardkit_status sk_key_hash(const shardkit_sharder *s, const uint8_t *key,
		size_t key_len, uint64_t *out, char **err) {
	SK_RETURN(shardkit_sharder_key_hash(s, key, key_len, out));
}

shardkit_status sk_lookup(const shardkit_sharder *s, const uint8_t *key,
		size_t key_len, uint32_t *out, char **err) {
	SK_RETURN(shardkit_sharder_lookup(s, key, key_len, out));
}

shardkit_status sk_lookup_hash(const shardkit_sharder *s, uint64_t hash,
		uint32_t *out, char **err) {
	SK_RETURN(shardkit_sharder_lookup_hash(s, hash, out));
}

shardkit_status sk_lookup_n(const shardkit_sharder *s, const uint8_t *key,
		size_t key_len, size_t n, uint32_t *out, size_t out_cap, size_t *out_count,
		char **err) {
	SK_RETURN(shardkit_sharder_lookup_n(s, key, key_len, n, out, out_cap, out_count));
}

shardkit_status sk_lookup_batch_packed(const shardkit_sharder *s,
		const uint8_t *data, size_t data_len, const size_t *offsets, size_t count,
		uint32_t *out, char **err) {
	SK_RETURN(shardkit_sharder_lookup_batch_packed(s, data, data_len, offsets, count, out));
}

shardkit_status sk_add(const shardkit_sharder *s, const shardkit_node *node,
		shardkit_sharder **out, char **err) {
	SK_RETURN(shardkit_sharder_add(s, node, out));
}

shardkit_status sk_remove(const shardkit_sharder *s, const uint8_t *name,
		size_t name_len, shardkit_sharder **out, char **err) {
	SK_RETURN(shardkit_sharder_remove(s, name, name_len, out));
}

shardkit_status sk_reweight(const shardkit_sharder *s, const uint8_t *name,
		size_t name_len, int64_t weight, shardkit_sharder **out, char **err) {
	SK_RETURN(shardkit_sharder_reweight(s, name, name_len, weight, out));
}

shardkit_status sk_set_down(const shardkit_sharder *s, const uint8_t *name,
		size_t name_len, int down, shardkit_sharder **out, char **err) {
	SK_RETURN(shardkit_sharder_set_down(s, name, name_len, down != 0, out));
}

shardkit_status sk_movement(const shardkit_sharder *from, const shardkit_sharder *to,
		size_t samples, double *fraction, double *minimum, char **err) {
	SK_RETURN(shardkit_sharder_movement(from, to, samples, fraction, minimum));
}

shardkit_status sk_balance(const shardkit_sharder *s, size_t samples,
		double *peak_to_mean, double *stddev, char **err) {
	SK_RETURN(shardkit_sharder_balance(s, samples, peak_to_mean, stddev));
}

shardkit_status sk_apply(const shardkit_sharder *s, const shardkit_change *changes,
		size_t n_changes, shardkit_sharder **out, char **err) {
	SK_RETURN(shardkit_sharder_apply(s, changes, n_changes, out));
}

shardkit_status sk_is_down(const shardkit_sharder *s, uint32_t slot, bool *out, char **err) {
	SK_RETURN(shardkit_sharder_is_down(s, slot, out));
}

// ---- ownership election (leases) -------------------------------------------

#include "_cgo_export.h"

// The trampolines: C callbacks whose userdata is a cgo.Handle value, handed
// to the Go exports in callbacks.go (the casts only drop const: Go reads).
static void sk_lost_trampoline(void *ud, shardkit_status code, const char *msg, size_t len) {
	skGoSessionLost((uintptr_t)ud, code, (char *)msg, len);
}

static void sk_leader_trampoline(void *ud, bool has_leader, const uint8_t *value,
		size_t len, int64_t revision) {
	skGoLeader((uintptr_t)ud, has_leader, (uint8_t *)value, len, revision);
}

static void sk_ownership_trampoline(void *ud, bool gained, const char *shard, size_t len,
		int64_t token) {
	skGoOwnership((uintptr_t)ud, gained, (char *)shard, len, token);
}

shardkit_status sk_cancel_new(shardkit_cancel **out, char **err) {
	SK_RETURN(shardkit_cancel_new(out));
}

shardkit_status sk_coordinator_new_embedded(shardkit_coordinator **out, char **err) {
	SK_RETURN(shardkit_coordinator_new_embedded(out));
}

shardkit_status sk_coordinator_connect(const uint8_t *endpoints, size_t endpoints_len,
		uint64_t timeout_ms, shardkit_coordinator **out, char **err) {
	SK_RETURN(shardkit_coordinator_connect(endpoints, endpoints_len, timeout_ms, out));
}

shardkit_status sk_coordinator_describe(const shardkit_coordinator *c, char **out,
		char **err) {
	size_t len = 0;
	*out = NULL;
	shardkit_status st = shardkit_coordinator_describe(c, NULL, 0, &len);
	if (st != SHARDKIT_STATUS_OK && st != SHARDKIT_STATUS_BUFFER_TOO_SMALL) {
		*err = sk_take_error();
		return st;
	}
	char *m = malloc(len + 1);
	if (m == NULL) return SHARDKIT_STATUS_PANIC;
	st = shardkit_coordinator_describe(c, (uint8_t *)m, len, &len);
	if (st != SHARDKIT_STATUS_OK) {
		// The description of a handle never changes, so a second size
		// error cannot happen; report whatever did.
		*err = sk_take_error();
		free(m);
		return st;
	}
	m[len] = '\0';
	*out = m;
	return SHARDKIT_STATUS_OK;
}

shardkit_status sk_coordinator_leader(const shardkit_coordinator *c, const uint8_t *name,
		size_t name_len, bool *found, uint8_t **value, size_t *value_len,
		shardkit_fencing_token *token, char **err) {
	*value = NULL;
	*value_len = 0;
	size_t cap = 256;
	// The value may grow between two calls (a new proclamation); each retry
	// asks for at least what the last one needed, and a few are plenty.
	for (int attempt = 0; attempt < 8; attempt++) {
		uint8_t *buf = malloc(cap);
		if (buf == NULL) return SHARDKIT_STATUS_PANIC;
		size_t len = 0;
		shardkit_status st = shardkit_coordinator_leader(c, name, name_len, buf, cap, found,
				&len, token);
		if (st == SHARDKIT_STATUS_OK) {
			if (*found) {
				*value = buf;
				*value_len = len;
			} else {
				free(buf);
			}
			return st;
		}
		free(buf);
		if (st != SHARDKIT_STATUS_BUFFER_TOO_SMALL) {
			*err = sk_take_error();
			return st;
		}
		cap = len > cap * 2 ? len : cap * 2;
	}
	*err = sk_take_error();
	return SHARDKIT_STATUS_BUFFER_TOO_SMALL;
}

shardkit_status sk_coordinator_revoke(const shardkit_coordinator *c, int64_t lease,
		char **err) {
	SK_RETURN(shardkit_coordinator_revoke(c, lease));
}

shardkit_status sk_session_new_with(const shardkit_coordinator *c, uint64_t ttl_secs,
		uint64_t margin_ms, uint64_t rpc_timeout_ms, shardkit_session **out, char **err) {
	SK_RETURN(shardkit_session_new_with(c, ttl_secs, margin_ms, rpc_timeout_ms, out));
}

shardkit_status sk_session_resume(const shardkit_coordinator *c, int64_t lease,
		shardkit_session **out, char **err) {
	SK_RETURN(shardkit_session_resume(c, lease, out));
}

shardkit_status sk_session_check(const shardkit_session *s, char **err) {
	SK_RETURN(shardkit_session_check(s));
}

shardkit_status sk_session_on_lost(const shardkit_session *s, uintptr_t handle, char **err) {
	SK_RETURN(shardkit_session_on_lost(s, sk_lost_trampoline, (void *)handle));
}

shardkit_status sk_session_close(const shardkit_session *s, char **err) {
	SK_RETURN(shardkit_session_close(s));
}

shardkit_status sk_lock_new(const shardkit_session *s, const uint8_t *name, size_t name_len,
		shardkit_lock **out, char **err) {
	SK_RETURN(shardkit_lock_new(s, name, name_len, out));
}

shardkit_status sk_lock_acquire(const shardkit_lock *l, int64_t timeout_ms,
		const shardkit_cancel *cancel, shardkit_fencing_token *token, char **err) {
	SK_RETURN(shardkit_lock_acquire(l, timeout_ms, cancel, token));
}

shardkit_status sk_lock_try_acquire(const shardkit_lock *l, bool *acquired,
		shardkit_fencing_token *token, char **err) {
	SK_RETURN(shardkit_lock_try_acquire(l, acquired, token));
}

shardkit_status sk_lock_release(const shardkit_lock *l, char **err) {
	SK_RETURN(shardkit_lock_release(l));
}

shardkit_status sk_lock_put(const shardkit_lock *l, const uint8_t *key, size_t key_len,
		const uint8_t *value, size_t value_len, int64_t *revision, char **err) {
	SK_RETURN(shardkit_lock_put(l, key, key_len, value, value_len, revision));
}

shardkit_status sk_election_new(const shardkit_session *s, const uint8_t *name,
		size_t name_len, shardkit_election **out, char **err) {
	SK_RETURN(shardkit_election_new(s, name, name_len, out));
}

shardkit_status sk_election_campaign(const shardkit_election *e, const uint8_t *value,
		size_t value_len, int64_t timeout_ms, const shardkit_cancel *cancel,
		shardkit_fencing_token *token, char **err) {
	SK_RETURN(shardkit_election_campaign(e, value, value_len, timeout_ms, cancel, token));
}

shardkit_status sk_election_proclaim(const shardkit_election *e, const uint8_t *value,
		size_t value_len, char **err) {
	SK_RETURN(shardkit_election_proclaim(e, value, value_len));
}

shardkit_status sk_election_resign(const shardkit_election *e, char **err) {
	SK_RETURN(shardkit_election_resign(e));
}

shardkit_status sk_observer_start(const shardkit_coordinator *c, const uint8_t *name,
		size_t name_len, uintptr_t handle, shardkit_observer **out, char **err) {
	SK_RETURN(shardkit_observer_start(c, name, name_len, sk_leader_trampoline,
			(void *)handle, out));
}

shardkit_status sk_fence_gate_new(const uint8_t *name, size_t name_len,
		shardkit_fence_gate **out, char **err) {
	SK_RETURN(shardkit_fence_gate_new(name, name_len, out));
}

shardkit_status sk_fence_gate_admit(const shardkit_fence_gate *g, const uint8_t *resource,
		size_t resource_len, int64_t token, char **err) {
	SK_RETURN(shardkit_fence_gate_admit(g, resource, resource_len, token));
}

shardkit_status sk_shard_owner_start(const shardkit_session *s, const uint8_t *group,
		size_t group_len, const uint8_t *worker, size_t worker_len,
		const char *const *shards, const size_t *shard_lens, size_t n_shards,
		uintptr_t handle, shardkit_shard_owner **out, char **err) {
	SK_RETURN(shardkit_shard_owner_start(s, group, group_len, worker, worker_len, shards,
			shard_lens, n_shards, sk_ownership_trampoline, (void *)handle, out));
}

shardkit_status sk_shard_owner_owns(const shardkit_shard_owner *o, const uint8_t *shard,
		size_t shard_len, bool *owned, int64_t *token, char **err) {
	SK_RETURN(shardkit_shard_owner_owns(o, shard, shard_len, owned, token));
}

shardkit_status sk_shard_owner_close(const shardkit_shard_owner *o, char **err) {
	SK_RETURN(shardkit_shard_owner_close(o));
}

// ---- merge and the HTTP scatter client -------------------------------------

shardkit_status sk_top_k(const shardkit_hit *const *lists, const size_t *lens, size_t nlists,
		size_t offset, size_t size, shardkit_hit *out, size_t out_cap, size_t *out_len,
		char **err) {
	SK_RETURN(shardkit_top_k(lists, lens, nlists, offset, size, out, out_cap, out_len));
}

shardkit_status sk_intersect_u32(const uint32_t *const *lists, const size_t *lens,
		size_t nlists, uint32_t *out, size_t out_cap, size_t *out_len, char **err) {
	SK_RETURN(shardkit_intersect_u32(lists, lens, nlists, out, out_cap, out_len));
}

shardkit_status sk_intersect_u64(const uint64_t *const *lists, const size_t *lens,
		size_t nlists, uint64_t *out, size_t out_cap, size_t *out_len, char **err) {
	SK_RETURN(shardkit_intersect_u64(lists, lens, nlists, out, out_cap, out_len));
}

shardkit_status sk_union_u32(const uint32_t *const *lists, const size_t *lens,
		size_t nlists, uint32_t *out, size_t out_cap, size_t *out_len, char **err) {
	SK_RETURN(shardkit_union_u32(lists, lens, nlists, out, out_cap, out_len));
}

shardkit_status sk_union_u64(const uint64_t *const *lists, const size_t *lens,
		size_t nlists, uint64_t *out, size_t out_cap, size_t *out_len, char **err) {
	SK_RETURN(shardkit_union_u64(lists, lens, nlists, out, out_cap, out_len));
}

shardkit_status sk_http_scatter_new(const char *const *leaves, size_t nleaves,
		const shardkit_scatter_options *opts, shardkit_http_scatter **out, char **err) {
	SK_RETURN(shardkit_http_scatter_new(leaves, nleaves, opts, out));
}

shardkit_status sk_http_scatter_gather(const shardkit_http_scatter *s, const char *body,
		size_t body_len, uint32_t timeout_ms, int32_t min_answers, char **out_json,
		char **err) {
	SK_RETURN(shardkit_http_scatter_gather(s, body, body_len, timeout_ms, min_answers,
			out_json));
}

shardkit_status sk_http_scatter_first(const shardkit_http_scatter *s, const char *body,
		size_t body_len, uint32_t timeout_ms, char **out_json, char **err) {
	SK_RETURN(shardkit_http_scatter_first(s, body, body_len, timeout_ms, out_json));
}
