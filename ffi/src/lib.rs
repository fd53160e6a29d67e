//! C ABI over shardkit core (being built).
