//! The last-writer-wins register.

use crate::{Crdt, NodeId, Timestamp};
use serde::{Deserialize, Serialize};

/// A register keeping the value written with the greatest stamp
/// `(HLC timestamp, node)`. Concurrent writes are not kept: all but one
/// are lost, silently (the causality lab shows it happening under skew).
///
/// Precondition: a node never writes twice with the same timestamp (an
/// [`concord_clocks::Hlc`] guarantees it), so a stamp names one write and
/// the node id breaks ties between nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LwwRegister<T> {
    current: Option<(Timestamp, NodeId, T)>,
}

impl<T> Default for LwwRegister<T> {
    fn default() -> Self {
        LwwRegister { current: None }
    }
}

impl<T: Clone + PartialEq> LwwRegister<T> {
    /// Empty.
    pub fn new() -> Self {
        LwwRegister::default()
    }

    /// Writes `value` stamped `(at, node)`; returns the delta. If the
    /// register holds a greater stamp, the write has already lost.
    pub fn set(&mut self, value: T, at: Timestamp, node: NodeId) -> LwwRegister<T> {
        let delta = LwwRegister {
            current: Some((at, node, value)),
        };
        self.merge(&delta);
        delta
    }

    /// The winning value.
    pub fn get(&self) -> Option<&T> {
        self.current.as_ref().map(|c| &c.2)
    }

    /// The winning stamp.
    pub fn stamp(&self) -> Option<(Timestamp, NodeId)> {
        self.current.as_ref().map(|c| (c.0, c.1))
    }
}

impl<T: Clone + PartialEq> Crdt for LwwRegister<T> {
    fn merge(&mut self, other: &Self) {
        let Some((ts, node, value)) = &other.current else {
            return;
        };
        match &self.current {
            Some((mts, mnode, mine)) if (mts, mnode) >= (ts, node) => {
                debug_assert!(
                    (mts, mnode) != (ts, node) || mine == value,
                    "one stamp, two values"
                );
            }
            _ => self.current = Some((*ts, *node, value.clone())),
        }
    }
}
