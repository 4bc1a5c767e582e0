//! Loading ghosts: one store read per ghost however many threads miss on it,
//! and opening a tree over a store (which loads nothing).
//!
//! The thread that wins the slot's swap `Ghost -> Loading` ([`Slot::access`])
//! reads and decodes the record, builds the node (children of a branch
//! become child ghosts), and lands it. Threads that find `Loading` park on
//! its `Wait` and then look again. A failed read or decode puts the ghost
//! back and hands the error to every waiter: the next access tries again,
//! and nobody ever takes a failed load for an absent key. No arc-swap guard
//! is held across the store read or while parked.
//!
//! # The one call recursion
//!
//! Descents call [`Tree::node`] for a ghost, and a load calls back into a
//! descent in two places: a child ghost finds its right neighbour by a
//! descent to the level above it ([`Tree::slot_at`]), and a detached slot
//! finds its live one by a descent to its own level. Each such descent
//! starts at the root and goes no lower than the node being loaded, whose
//! ancestors are all loaded at that point (the descent just came through
//! them), so it loads nothing more unless they are evicted meanwhile, and
//! the recursion ends at the root.

use std::sync::Arc;

use super::format::{self, DecodedBody, Expected};
use super::node::{Body, Branch, Entries, Leaf, Meta, Node};
use super::search::Seek;
use super::slot::{Access, Ghost, NodeArc, NodeRef, Slot, Target};
use super::stored::{Counters, Stored};
use super::tree::{Held, Tree};
use crate::store::Store;
use crate::{Codec, Config, Error};

impl<K: Ord + Clone, V: Clone> Tree<K, V> {
    /// The current version of the node `slot` stands for, loading it first
    /// if it is a ghost, and finding its live slot if `slot` is detached.
    ///
    /// A load does I/O or waits for another thread's: callers hold no guard
    /// when the slot may be a ghost (they try [`Slot::loaded`] first).
    #[inline(always)]
    pub(crate) fn node(&self, slot: &Arc<Slot<K, V>>) -> Result<NodeRef<K, V>, Error> {
        match slot.loaded() {
            Some(node) => Ok(node),
            None => self.node_slow(slot).map(|(node, _)| node),
        }
    }

    /// [`node`](Tree::node) for a caller that will swap a new version into
    /// the slot: a detached `slot` is replaced by the node's live slot.
    #[inline(always)]
    pub(crate) fn node_in(&self, slot: &mut Held<K, V>) -> Result<NodeRef<K, V>, Error> {
        if let Some(node) = slot.loaded() {
            return Ok(node);
        }
        let (node, live) = self.node_slow(slot.arc())?;
        if let Some(live) = live {
            *slot = live;
        }
        Ok(node)
    }

    /// [`node`](Tree::node), held by an `Arc`.
    pub(crate) fn node_arc(&self, slot: &Arc<Slot<K, V>>) -> Result<NodeArc<K, V>, Error> {
        self.node(slot).map(NodeRef::into_arc)
    }

    /// [`node`](Tree::node) of a slot that is not loaded; with the live
    /// slot if `slot` was detached.
    #[cold]
    #[inline(never)]
    #[allow(clippy::type_complexity)]
    fn node_slow(&self, slot: &Arc<Slot<K, V>>) -> Result<(NodeRef<K, V>, Option<Held<K, V>>), Error> {
        let Some(stored) = &self.stored else {
            unreachable!("ghosts exist only in trees over a store");
        };
        let mut loaded = false;
        loop {
            match slot.access() {
                Access::Loaded(node) => {
                    if loaded {
                        stored.track(slot);
                        // After taking the node: eviction may pick this very
                        // slot, and the version we hold stays valid.
                        stored.evict_if_over_budget();
                    }
                    return Ok((node, None));
                }
                Access::Wait(wait) => {
                    Counters::bump(&stored.counters.load_waits);
                    wait.wait()?;
                }
                Access::Load(load) => {
                    let node = self.load_ghost(stored, load.target());
                    load.land(node)?;
                    loaded = true;
                }
                Access::Detached { level, low } => {
                    // A node's `low` never changes: the live slot is the one
                    // on its level that starts there.
                    let found =
                        self.descend::<true, K>(low.as_ref().map_or(Seek::First, Seek::Key), level)?;
                    return Ok((found.node, Some(found.slot)));
                }
            }
        }
    }

    /// Reads, checks and builds the node a ghost stands for.
    fn load_ghost(&self, stored: &Stored<K, V>, target: &Target<K, V>) -> Result<Node<K, V>, Error> {
        let address = target.address();
        let record = stored.store.read(address).map_err(|e| Error::io("reading a node", Some(address), e))?;
        Counters::bump(&stored.counters.store_reads);
        let expected = match target {
            Target::Described(ghost) => {
                Expected { level: ghost.level, bounds: Some((ghost.low.as_ref(), ghost.high.as_ref())) }
            }
            Target::Child { level, .. } => Expected { level: *level, bounds: None },
        };
        let decoded = (stored.codecs.decode)(&record, &expected)
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
                    .map(|&child| Slot::child(child, level - 1, &stored.ghost))
                    .collect(),
                keys,
            }),
        };
        Counters::bump(&stored.counters.loads);
        let node = Node { low, high, right, body, meta: Meta::loaded_from(address) };
        Ok(node.charged(Some(stored.account()), false))
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

    /// Evicts the node on `level` whose range holds `key` if it can go
    /// (for the loom models, which need the evictor at a chosen point).
    #[cfg(loom)]
    pub(crate) fn evict_node_of(&self, key: &K, level: u32) -> Result<bool, Error> {
        let Some(stored) = &self.stored else { return Ok(false) };
        let found = self.descend::<true, K>(Seek::Key(key), level)?;
        drop(found.node);
        let evicted = super::evict::evict(&found.slot, &stored.ghost) == super::slot::Evicted::Yes;
        if evicted {
            Counters::bump(&stored.counters.evictions);
        }
        Ok(evicted)
    }
}

impl<K: Ord + Clone + Codec, V: Clone + Codec> Tree<K, V> {
    /// The tree the store's commit record names, every node a ghost (reads
    /// only the commit record); an empty tree if the store has none.
    pub(crate) fn open(store: Arc<dyn Store>, config: Config) -> Result<Tree<K, V>, Error> {
        let commit = store.read_commit().map_err(|e| Error::io("reading the commit record", None, e))?;
        let commit = commit
            .map(|record| {
                format::decode_commit(&record).map_err(|what| Error::Corrupt { address: None, what })
            })
            .transpose()?;
        let (epoch, len) = commit.as_ref().map_or((0, 0), |commit| (commit.epoch, commit.len));
        let stored = Stored::new(store, config.memory_budget, epoch, len);
        let root = match commit {
            None => Slot::new(Node::new(
                None,
                None,
                None,
                Body::Leaf(Leaf { keys: Entries::new(), vals: Entries::new() }),
            )),
            Some(commit) => {
                let ghost =
                    Ghost { address: commit.root, level: commit.level, low: None, high: None, right: None };
                Slot::ghost(ghost, &stored.ghost)
            }
        };
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        Ok(Tree::over(root, len, config, Some(stored)))
    }
}
