//! Backends in etcd: each registers its address under
//! `shardkit/http/GROUP/ADDRESS` with its session's lease (so a crashed
//! backend's key is gone within its TTL), and a proxy follows the group,
//! rebuilding its ring from the keys on every change.

use super::HttpProxy;
use crate::config::nginx;
use crate::error::{Error, Result};
use crate::lease::{validate_name, Coordinator, Op, RangeOpts, Session, Txn};
use std::sync::Arc;
use std::time::Duration;

/// Key prefix of every HTTP backend group.
pub const GROUPS_PREFIX: &str = "shardkit/http/";

fn group_prefix(group: &str) -> String {
    format!("{GROUPS_PREFIX}{group}/")
}

/// A backend's registration in a group, held by a session of its own: gone
/// when [`Registration::close`] runs, or within the TTL if the process dies.
pub struct Registration {
    coord: Coordinator,
    session: Session,
    key: String,
}

impl Registration {
    /// Registers `address` (with nginx's `weight=N` and the like, as in an
    /// upstream list) in `group` for as long as a session with `ttl` lives.
    /// Errors name a bad group, address or TTL.
    pub async fn register(
        coord: &Coordinator,
        group: &str,
        server: &str,
        ttl: Duration,
    ) -> Result<Registration> {
        validate_name("group", group)?;
        let servers = nginx::parse_servers(server)?;
        let [s] = servers.as_slice() else {
            return Err(Error::invalid(format!(
                "backend {server:?}: expected one server, got {}",
                servers.len()
            )));
        };
        let session = coord.session_ttl(ttl).await?;
        let key = format!("{}{}", group_prefix(group), s.address);
        let txn = Txn {
            success: vec![Op::Put {
                key: key.clone().into_bytes(),
                value: server.trim().as_bytes().to_vec(),
                lease: session.lease_id(),
            }],
            ..Txn::default()
        };
        coord.txn(txn).await?;
        Ok(Registration {
            coord: coord.clone(),
            session,
            key,
        })
    }

    /// The session the registration lives by (its loss ends it).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Deregisters at once (the proxies drop it on their next event) and
    /// ends the session.
    pub async fn close(self) -> Result<()> {
        let txn = Txn {
            success: vec![Op::delete(self.key.clone().into_bytes())],
            ..Txn::default()
        };
        let deleted = self.coord.txn(txn).await.map(|_| ());
        self.session.close().await?;
        deleted
    }
}

/// The group's upstream list now (entries sorted by address, so every
/// proxy builds the same ring), and the revision it was read at.
pub async fn group_list(coord: &Coordinator, group: &str) -> Result<(String, i64)> {
    validate_name("group", group)?;
    let range = coord
        .range(group_prefix(group).as_bytes(), RangeOpts::prefix())
        .await?;
    let mut entries: Vec<String> = range
        .kvs
        .iter()
        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
        .collect();
    entries.sort();
    Ok((entries.join(", "), range.revision))
}

/// Keeps `proxy`'s backends equal to `group`'s registrations until the
/// watch ends (the coordinator closed) or fails; returns why. An empty
/// group is not applied (the proxy keeps its last list, whose backends
/// then refuse, and requests get 502s naming them), and said so.
pub async fn follow(coord: Coordinator, group: String, proxy: Arc<HttpProxy>) -> Error {
    let mut revision = match group_list(&coord, &group).await {
        Ok((list, rev)) => {
            apply(&proxy, &group, &list);
            rev
        }
        Err(e) => return e,
    };
    loop {
        let mut watch = match coord
            .watch(group_prefix(&group).as_bytes(), true, revision + 1)
            .await
        {
            Ok(w) => w,
            Err(e) => return e,
        };
        match watch.next().await {
            Some(Ok(_)) => {}
            Some(Err(e)) => return e,
            None => return Error::invalid(format!("group {group:?}: the watch ended")),
        }
        // Whatever changed, the list is read whole: a burst of changes is
        // one rebuild, and the ring never depends on event order.
        match group_list(&coord, &group).await {
            Ok((list, rev)) => {
                apply(&proxy, &group, &list);
                revision = rev;
            }
            Err(e) => return e,
        }
    }
}

fn apply(proxy: &HttpProxy, group: &str, list: &str) {
    if list.is_empty() {
        eprintln!("shardkit http-proxy: group {group:?} has no backends; keeping the last list");
        return;
    }
    if list == proxy.upstream() {
        return;
    }
    match proxy.reload(list) {
        Ok(()) => eprintln!("shardkit http-proxy: group {group:?}: {list}"),
        Err(e) => eprintln!("shardkit http-proxy: group {group:?}: refused: {e}"),
    }
}
