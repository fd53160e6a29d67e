//! Triggers: which events a stage takes, by their CloudEvents attributes
//! (Knative's trigger filter: every named attribute must match).

use super::Event;
use serde::Deserialize;
use std::collections::BTreeMap;

/// Attribute name → the value it must have; a value ending in `*` matches
/// any value that starts with what precedes it (`com.example.user.*`). An
/// empty filter takes every event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Filter {
    /// The attributes and their patterns.
    pub attributes: BTreeMap<String, String>,
}

impl Filter {
    /// A filter on one attribute.
    pub fn on(name: impl Into<String>, pattern: impl Into<String>) -> Filter {
        let mut attributes = BTreeMap::new();
        attributes.insert(name.into(), pattern.into());
        Filter { attributes }
    }

    /// Adds a condition.
    pub fn and(mut self, name: impl Into<String>, pattern: impl Into<String>) -> Filter {
        self.attributes.insert(name.into(), pattern.into());
        self
    }

    /// Whether `event` passes: it has every named attribute (context
    /// attribute or extension), each matching its pattern.
    pub fn matches(&self, event: &Event) -> bool {
        self.attributes.iter().all(|(name, pattern)| {
            let Some(value) = event.attribute(name) else {
                return false;
            };
            match pattern.strip_suffix('*') {
                Some(prefix) => value.starts_with(prefix),
                None => value == pattern,
            }
        })
    }
}
