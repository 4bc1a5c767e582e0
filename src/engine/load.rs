//! Loading ghosts: one store read per ghost however many threads miss on it.
//!
//! The thread that swaps `Ghost -> Loading` reads and decodes the record,
//! builds the node (children of a branch become ghost slots), and swaps
//! `Loading -> Loaded`. Threads that find `Loading` park on its `Wait` and
//! then read the slot again. A failed read or decode puts the exact ghost
//! state back and hands the error to every waiter: the next access tries
//! again, and nobody ever takes a failed load for an absent key.
//!
//! No arc-swap guard is held across the store read or while parked: the
//! states involved are held as owned `Arc`s.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::cell::{Snapshot, snapshot_into_arc};
use super::format::{DecodedBody, Expected};
use super::node::{Body, Branch, Leaf, Meta, Node};
use super::persist::Counters;
use super::slot::{Ghost, GhostView, NodeArc, NodeRef, Slot, Start, State};
use super::tree::{Found, Held, Seek, Tree};
use super::wait::Wait;
use crate::Error;
use crate::store::Address;

impl<K: Ord + Clone, V: Clone> Tree<K, V> {
    /// The current version of the node `slot` stands for, loading it first
    /// if it is a ghost, and finding its live slot if `slot` is detached.
    ///
    /// A load does I/O or waits for another thread's: callers hold no guard
    /// when the slot may be a ghost (they try [`loaded`](Tree::loaded) first).
    #[inline(always)]
    pub(crate) fn node(&self, slot: &Arc<Slot<K, V>>) -> Result<NodeRef<K, V>, Error> {
        match self.loaded(slot) {
            Some(node) => Ok(node),
            None => self.node_slow(slot, slot.state()).map(|(node, _)| node),
        }
    }

    /// [`node`](Tree::node) for a caller that will swap a new version into
    /// the slot: a detached `slot` is replaced by the node's live slot.
    #[inline(always)]
    pub(crate) fn node_in(&self, slot: &mut Held<K, V>) -> Result<NodeRef<K, V>, Error> {
        if let Some(node) = self.loaded(slot) {
            return Ok(node);
        }
        let (node, live) = self.node_slow(slot.arc(), slot.state())?;
        if let Some(live) = live {
            *slot = live;
        }
        Ok(node)
    }

    /// The current version of `slot` if it is loaded (the fast path).
    #[inline(always)]
    pub(crate) fn loaded(&self, slot: &Slot<K, V>) -> Option<NodeRef<K, V>> {
        let node = NodeRef::loaded(slot.state()).ok()?;
        // Touched: not cold. Relaxed: an eviction hint, written only when
        // set, so hot reads write nothing shared.
        if slot.cooling.load(Ordering::Relaxed) {
            slot.cooling.store(false, Ordering::Relaxed);
        }
        Some(node)
    }

    /// [`node`](Tree::node) of a slot that is not loaded; with the live
    /// slot if `slot` was detached.
    #[cold]
    #[inline(never)]
    #[allow(clippy::type_complexity)]
    fn node_slow(
        &self,
        slot: &Arc<Slot<K, V>>,
        mut state: Snapshot<State<K, V>>,
    ) -> Result<(NodeRef<K, V>, Option<Held<K, V>>), Error> {
        let mut loaded = false;
        loop {
            match self.materialize(slot, state)? {
                Materialized::Again => {}
                Materialized::Loaded => loaded = true,
                Materialized::Detached => return self.live(slot).map(|found| (found.node, Some(found.slot))),
            }
            match NodeRef::loaded(slot.state()) {
                Ok(node) => {
                    if loaded {
                        self.track_resident(slot);
                        // After taking the node: eviction may pick this very
                        // slot, and the version we hold stays valid.
                        self.evict_if_over_budget();
                    }
                    return Ok((node, None));
                }
                Err(other) => state = other,
            }
        }
    }

    /// The live slot of the node a detached slot stood for, and its current
    /// version: a fresh descent to the same level and `low` (a node's `low`
    /// never changes, and nodes are never removed).
    #[cold]
    fn live(&self, detached: &Slot<K, V>) -> Result<Found<K, V>, Error> {
        // Detached slots keep their description for good.
        let described = detached.with_ghost(|ghost| match ghost {
            GhostView::Described(ghost) => Some((ghost.level, ghost.low.clone())),
            GhostView::Child { .. } => None,
        });
        let Some(Some((level, low))) = described else {
            return Err(Error::Internal { what: "a detached slot without its description" });
        };
        self.descend::<true, K>(low.as_ref().map_or(Seek::First, Seek::Key), level)
    }

    /// [`node`](Tree::node), held by an `Arc`.
    pub(crate) fn node_arc(&self, slot: &Arc<Slot<K, V>>) -> Result<NodeArc<K, V>, Error> {
        self.node(slot).map(NodeRef::into_arc)
    }

    /// Loads a ghost, or waits for the load in flight. Returns when the slot
    /// is worth reading again, or when reading it again is of no use.
    #[cold]
    fn materialize(&self, slot: &Slot<K, V>, state: Snapshot<State<K, V>>) -> Result<Materialized, Error> {
        let state = snapshot_into_arc(state); // owned: no guard past this line
        match &*state {
            State::Loaded(_) => Ok(Materialized::Again),
            State::Loading(wait) => {
                let wait = Arc::clone(wait);
                drop(state);
                if let Some(persist) = &self.persist {
                    Counters::bump(&persist.counters.load_waits);
                }
                wait.wait().map(|()| Materialized::Again)
            }
            State::Ghost => {
                let wait = Arc::new(Wait::new());
                let loading = Arc::new(State::Loading(Arc::clone(&wait)));
                let target = match slot.start_load(&state, Arc::clone(&loading)) {
                    Start::Load(ghost) => Target::Described(ghost),
                    Start::LoadChild { address, level } => Target::Child { address, level },
                    Start::Again => return Ok(Materialized::Again), // another thread got there first
                    Start::Detached => return Ok(Materialized::Detached),
                };
                let mut flight = Flight {
                    slot,
                    loading: &loading,
                    sentinel: &state,
                    wait: &wait,
                    address: target.address(),
                    landed: false,
                };
                let loaded = self.load_ghost(&target);
                flight.land(loaded).map(|()| Materialized::Loaded)
            }
        }
    }

    /// Reads, checks and builds the node a ghost stands for.
    fn load_ghost(&self, target: &Target<K, V>) -> Result<Node<K, V>, Error> {
        let Some(persist) = &self.persist else {
            unreachable!("ghosts exist only in trees over a store");
        };
        let address = target.address();
        let record =
            persist.store.read(address).map_err(|e| Error::io("reading a node", Some(address), e))?;
        Counters::bump(&persist.counters.store_reads);
        let expected = match target {
            Target::Described(ghost) => {
                Expected { level: ghost.level, bounds: Some((ghost.low.as_ref(), ghost.high.as_ref())) }
            }
            Target::Child { level, .. } => Expected { level: *level, bounds: None },
        };
        let decoded = (persist.codecs.decode)(&record, &expected)
            .map_err(|what| Error::Corrupt { address: Some(address), what })?;
        let (low, high) = (decoded.low, decoded.high);
        let right = match (target, &high) {
            (Target::Described(ghost), _) => ghost.right.clone(),
            (Target::Child { .. }, None) => None,
            (Target::Child { level, .. }, Some(high)) => Some(self.slot_at(*level, high)?),
        };
        let body = match decoded.body {
            DecodedBody::Leaf { keys, vals } => Body::Leaf(Leaf { keys, vals }),
            DecodedBody::Branch { level, keys, children } => Body::Branch(Branch {
                level,
                children: children
                    .iter()
                    .map(|&child| Slot::child(child, level - 1, &persist.ghost))
                    .collect(),
                keys,
            }),
        };
        Counters::bump(&persist.counters.loads);
        Ok(Node { low, high, right, body, meta: Meta::stored_at(address.0) }.charged(self.account(), false))
    }

    /// The slot of the node on `level` whose range starts at `low` (a child
    /// ghost's right neighbour), made but not loaded: a descent to the level
    /// above picks it among a branch's children.
    fn slot_at(&self, level: u32, low: &K) -> Result<Arc<Slot<K, V>>, Error> {
        let parent = self.descend::<false, K>(Seek::Key(low), level + 1)?.node;
        match parent.as_branch() {
            Some(branch) if branch.level == level + 1 => {
                Ok(Arc::clone(&branch.children[Seek::Key(low).child(branch)]))
            }
            _ => Err(Error::Internal { what: "no branch above a child ghost" }),
        }
    }
}

/// What a load reads: a described ghost, or a child ghost (see
/// `Slot::record`), whose bounds and right neighbour come from its record
/// and the tree.
enum Target<K, V> {
    Described(Ghost<K, V>),
    Child { address: Address, level: u32 },
}

impl<K, V> Target<K, V> {
    fn address(&self) -> Address {
        match self {
            Target::Described(ghost) => ghost.address,
            Target::Child { address, .. } => *address,
        }
    }
}

/// What [`Tree::materialize`] did.
enum Materialized {
    /// Nothing, or waited for another thread's load: read the slot again.
    Again,
    /// Loaded the node: read the slot again.
    Loaded,
    /// The slot is detached: find the live one.
    Detached,
}

/// A load in flight. Landing it publishes the node or restores the ghost and
/// wakes the waiters; if the loader panics instead (a decoder of the key or
/// value type), dropping it restores the ghost and tells the waiters.
struct Flight<'a, K, V> {
    slot: &'a Slot<K, V>,
    loading: &'a Arc<State<K, V>>,
    /// The tree's ghost state, to put back on failure.
    sentinel: &'a Arc<State<K, V>>,
    wait: &'a Wait,
    address: Address,
    landed: bool,
}

impl<K, V> Flight<'_, K, V> {
    fn land(&mut self, loaded: Result<Node<K, V>, Error>) -> Result<(), Error> {
        self.landed = true;
        // Only the loader leaves `Loading`, so these swaps cannot fail.
        let outcome = match loaded {
            Ok(node) => {
                self.slot.land(self.loading, node);
                Ok(())
            }
            Err(error) => {
                self.slot.swap_state(self.loading, Arc::clone(self.sentinel));
                Err(error)
            }
        };
        self.wait.finish(outcome.clone());
        outcome
    }
}

impl<K, V> Drop for Flight<'_, K, V> {
    fn drop(&mut self) {
        if !self.landed {
            self.slot.swap_state(self.loading, Arc::clone(self.sentinel));
            self.wait.finish(Err(Error::LoadPanicked { address: self.address }));
        }
    }
}
