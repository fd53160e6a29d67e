//! Dead letters back to work: `dlq redrive` puts dead-lettered events back
//! on the topics they came from, without the dead-letter attributes and
//! marked for the consumer group that gave up on them (the topic's other
//! groups skip them: they handled them already), in the order they were
//! dead-lettered, then deletes them from the dead-letter topic. One key's events are in one partition of both
//! topics, so their order holds.

use super::stage::dead_letter_attr;
use super::transport::{Delivery, Transport};
use super::Event;
use crate::error::{Error, ErrorKind, Result};
use std::collections::BTreeMap;

/// Dead letters read per partition in one pass.
const PASS: usize = 1000;

/// The dead-lettered events in `dlq`, oldest first per partition, at most
/// `max` per partition.
pub async fn list(t: &dyn Transport, dlq: &str, max: usize) -> Result<Vec<Delivery>> {
    t.peek(dlq, max).await
}

/// The event as it was before it was dead-lettered, and the topic it goes
/// back to.
pub fn restore(dead: &Event) -> Result<(String, Event)> {
    let topic = dead
        .extension(dead_letter_attr::TOPIC)
        .ok_or_else(|| {
            Error::invalid(format!(
                "event {:?} has no {} attribute: not a dead letter shardkit wrote",
                dead.id(),
                dead_letter_attr::TOPIC
            ))
        })?
        .to_string();
    let mut e = dead.clone();
    let group = dead.extension(dead_letter_attr::GROUP).map(str::to_string);
    for a in [
        dead_letter_attr::TOPIC,
        dead_letter_attr::STAGE,
        dead_letter_attr::GROUP,
        dead_letter_attr::REDRIVE_FOR,
        dead_letter_attr::ATTEMPTS,
        dead_letter_attr::ERROR,
        dead_letter_attr::HISTORY,
        dead_letter_attr::REASON,
    ] {
        e.remove_extension(a);
    }
    // Only the group that gave up on it handles it again; the topic's other
    // groups handled it the first time.
    if let Some(g) = group {
        e = e.with_extension(dead_letter_attr::REDRIVE_FOR, g)?;
    }
    Ok((topic, e))
}

/// Sends the dead letters of `dlq` back (only the one with id `only`, when
/// given) and returns how many went. Each partition's events go in order;
/// an event is deleted from `dlq` only after its topic has it.
pub async fn redrive(t: &dyn Transport, dlq: &str, only: Option<&str>) -> Result<usize> {
    let mut moved = 0;
    loop {
        let entries = t.peek(dlq, PASS).await?;
        let mut by_partition: BTreeMap<u32, Vec<Delivery>> = BTreeMap::new();
        for d in entries {
            if only.is_none_or(|id| d.event.id() == id) {
                by_partition.entry(d.partition).or_default().push(d);
            }
        }
        if by_partition.is_empty() {
            if moved == 0 {
                if let Some(id) = only {
                    return Err(Error::new(
                        ErrorKind::NotFound,
                        format!("no event {id:?} in dead-letter topic {dlq:?}"),
                    ));
                }
            }
            return Ok(moved);
        }
        let mut progressed = false;
        for (partition, ds) in by_partition {
            for d in ds {
                let (topic, event) = restore(&d.event)?;
                t.publish(&topic, vec![event]).await?;
                t.remove(dlq, partition, std::slice::from_ref(&d.id))
                    .await?;
                moved += 1;
                progressed = true;
            }
        }
        if only.is_some() || !progressed {
            return Ok(moved);
        }
    }
}
