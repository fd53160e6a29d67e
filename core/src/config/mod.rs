//! Configuration readers that turn a peer's own configuration into sharders
//! placing keys exactly where that peer does:
//!
//! - [`twemproxy`]: nutcracker YAML pools (`hash`, `hash_tag`,
//!   `distribution`, `servers` with weights and aliases);
//! - [`nginx`]: upstream server lists for `hash $key consistent`.
//!
//! Both follow the peer's parsing rules (and its quirks) rather than a
//! cleaned-up reading of its documentation, because a node named differently
//! from the peer hashes to different ring points and moves keys.

pub mod nginx;
pub mod twemproxy;
