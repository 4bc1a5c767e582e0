//! Slots: the stable, shared place where a node's current version lives.
//!
//! Parents and right links point at slots, never at node versions, so a node
//! can be replaced (by a write or a split) without touching its parent, and a
//! parent copy made for a split keeps seeing its children's newest versions.
//!
//! # State machine
//!
//! A slot holds one `State` behind an atomic cell. The only transition in the
//! in-memory tree is `Loaded(v1) -> Loaded(v2)`: a compare-and-swap from the
//! version a writer read to the version it built. (The ghost states of the
//! persistent tree, `Ghost -> Loading -> Loaded`, are added by the storage
//! layer on the same cell.) A reader sees one complete version or another,
//! never a version under construction: versions are built in private and
//! published by the swap (see the orderings in `cell.rs`).

use std::ops::Deref;
use std::sync::Arc;

use super::cell::{AtomicArc, Snapshot, snapshot_into_arc};
use super::node::{Node, prefetch};
use crate::Error;

pub(crate) struct Slot<K, V> {
    state: AtomicArc<State<K, V>>,
}

pub(crate) enum State<K, V> {
    Loaded(Node<K, V>),
}

impl<K, V> State<K, V> {
    fn node(&self) -> &Node<K, V> {
        match self {
            State::Loaded(node) => node,
        }
    }
}

impl<K, V> Slot<K, V> {
    pub(crate) fn new(node: Node<K, V>) -> Arc<Slot<K, V>> {
        Arc::new(Slot { state: AtomicArc::new(Arc::new(State::Loaded(node))) })
    }

    /// The current version, behind a short-lived guard: hold it for one step
    /// of a descent, not across blocking calls.
    #[inline]
    pub(crate) fn node(&self) -> Result<NodeRef<K, V>, Error> {
        let state = self.state.load();
        // Header and inline leaf arrays in one batch of misses, before the
        // header is read (see `Node::prefetch`).
        prefetch(std::slice::from_ref::<State<K, V>>(&state));
        Ok(NodeRef(state))
    }

    /// The current version as an owned `Arc`, for long-lived holders
    /// (iterators).
    pub(crate) fn node_arc(&self) -> Result<NodeArc<K, V>, Error> {
        Ok(NodeArc(self.state.load_full()))
    }

    /// Publishes `new` if `current` is still the slot's version; says whether
    /// it did. A `false` means another write won the race: reread the slot.
    #[inline]
    pub(crate) fn replace(&self, current: &NodeRef<K, V>, new: Node<K, V>) -> bool {
        self.state.compare_exchange(current.state(), Arc::new(State::Loaded(new)))
    }
}

/// A loaded version held by a guard (cheap, not for long holds).
pub(crate) struct NodeRef<K, V>(Snapshot<State<K, V>>);

impl<K, V> NodeRef<K, V> {
    fn state(&self) -> &Arc<State<K, V>> {
        &self.0
    }

    /// Keeps this version beyond the guard's short life.
    pub(crate) fn into_arc(self) -> NodeArc<K, V> {
        NodeArc(snapshot_into_arc(self.0))
    }
}

impl<K, V> Deref for NodeRef<K, V> {
    type Target = Node<K, V>;

    #[inline]
    fn deref(&self) -> &Node<K, V> {
        self.0.node()
    }
}

/// A loaded version held by an `Arc`: `Send`, and fine to keep.
pub(crate) struct NodeArc<K, V>(Arc<State<K, V>>);

impl<K, V> Deref for NodeArc<K, V> {
    type Target = Node<K, V>;

    fn deref(&self) -> &Node<K, V> {
        self.0.node()
    }
}
