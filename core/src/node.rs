//! Nodes and validated node lists: the input every sharding function takes.

use crate::error::{Error, ErrorKind, Result};
use std::collections::HashSet;

/// The largest weight a node may have. Rings allocate points per unit of
/// weight, so an unbounded weight would be an unbounded allocation.
pub const MAX_WEIGHT: u32 = 1 << 20;

/// A member of a node set: a unique name, a positive weight and, optionally,
/// the identity hashed onto rings when it differs from the name (twemproxy
/// hashes `host:port` or the server's alias, not the config entry).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Node {
    name: String,
    weight: u32,
    ring_id: Option<String>,
}

impl Node {
    /// A node with `weight`, validated: the weight must be in `1..=MAX_WEIGHT`
    /// and the name non-empty. Takes `i64` so that bindings can pass the
    /// caller's value through and get an error naming it.
    pub fn new(name: impl Into<String>, weight: i64) -> Result<Node> {
        let name = name.into();
        if name.is_empty() {
            return Err(Error::invalid("node name must not be empty"));
        }
        if weight < 1 || weight > MAX_WEIGHT as i64 {
            return Err(Error::invalid(format!(
                "weight must be between 1 and {MAX_WEIGHT}, got {weight} for node {name:?}"
            )));
        }
        Ok(Node {
            name,
            weight: weight as u32,
            ring_id: None,
        })
    }

    /// A node of weight 1.
    pub fn named(name: impl Into<String>) -> Result<Node> {
        Node::new(name, 1)
    }

    /// Sets the identity hashed onto rings (defaults to the name).
    pub fn with_ring_id(mut self, id: impl Into<String>) -> Node {
        self.ring_id = Some(id.into());
        self
    }

    /// The unique name, returned by lookups.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The weight, at least 1.
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// The identity hashed onto rings: the ring id if set, else the name.
    pub fn ring_id(&self) -> &str {
        self.ring_id.as_deref().unwrap_or(&self.name)
    }

    /// A copy with another weight, validated like [`Node::new`].
    pub fn reweighted(&self, weight: i64) -> Result<Node> {
        let mut n = Node::new(self.name.clone(), weight)?;
        n.ring_id = self.ring_id.clone();
        Ok(n)
    }
}

impl Node {
    /// Parses `name` or `name=weight`, the form operators type on command
    /// lines (`cache-a`, `cache-b=2`).
    pub fn parse(spec: &str) -> Result<Node> {
        let spec = spec.trim();
        match spec.rsplit_once('=') {
            None => Node::named(spec),
            Some((name, w)) => {
                let weight = w.trim().parse::<i64>().map_err(|_| {
                    Error::invalid(format!(
                        "weight must be an integer, got {w:?} in node {spec:?}"
                    ))
                })?;
                Node::new(name.trim(), weight)
            }
        }
    }
}

/// Parses a comma-separated node list (`a,b,c=2`) and validates it.
pub fn parse_node_list(list: &str) -> Result<Vec<Node>> {
    let nodes = list
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(Node::parse)
        .collect::<Result<Vec<_>>>()?;
    validate_nodes(&nodes)?;
    Ok(nodes)
}

/// Checks a node list: non-empty, names unique. Names the first offender.
pub fn validate_nodes(nodes: &[Node]) -> Result<()> {
    if nodes.is_empty() {
        return Err(Error::new(
            ErrorKind::EmptyNodeSet,
            "a node set needs at least one node, got an empty list",
        ));
    }
    let mut seen = HashSet::with_capacity(nodes.len());
    for n in nodes {
        if !seen.insert(n.name()) {
            return Err(Error::new(
                ErrorKind::DuplicateNode,
                format!("node {:?} appears more than once", n.name()),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_bounds_are_named() {
        for w in [0, -3, MAX_WEIGHT as i64 + 1] {
            let e = Node::new("a", w).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument);
            assert!(e.message().contains(&w.to_string()), "{e}");
            assert!(e.message().contains("\"a\""), "{e}");
        }
        assert_eq!(Node::new("a", 7).unwrap().weight(), 7);
    }

    #[test]
    fn empty_and_duplicate_sets_are_rejected() {
        assert_eq!(
            validate_nodes(&[]).unwrap_err().kind(),
            ErrorKind::EmptyNodeSet
        );
        let a = Node::named("a").unwrap();
        let e = validate_nodes(&[a.clone(), Node::named("b").unwrap(), a]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::DuplicateNode);
        assert!(e.message().contains("\"a\""));
    }

    #[test]
    fn node_lists_parse_and_name_bad_parts() {
        let nodes = parse_node_list("a, b=2 ,c").unwrap();
        assert_eq!(
            nodes
                .iter()
                .map(|n| (n.name(), n.weight()))
                .collect::<Vec<_>>(),
            [("a", 1), ("b", 2), ("c", 1)]
        );
        let e = parse_node_list("a,b=x").unwrap_err();
        assert!(e.message().contains("\"x\""), "{e}");
        assert_eq!(
            parse_node_list("a,b=0").unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            parse_node_list(" , ").unwrap_err().kind(),
            ErrorKind::EmptyNodeSet
        );
        assert_eq!(
            parse_node_list("a,a").unwrap_err().kind(),
            ErrorKind::DuplicateNode
        );
    }

    #[test]
    fn ring_id_defaults_to_name() {
        let n = Node::named("x").unwrap();
        assert_eq!(n.ring_id(), "x");
        assert_eq!(n.with_ring_id("y").ring_id(), "y");
    }
}
