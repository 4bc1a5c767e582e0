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
//! descent in two places: a child ghost checks its record's bounds against
//! the separators around it, and finds its right neighbour, by a descent
//! to the level above it ([`Tree::place_child`]), and a detached slot
//! finds its live one by a descent to its own level. Each such descent
//! starts at the root and goes no lower than the node being loaded, whose
//! ancestors are all loaded at that point (the descent just came through
//! them), so it loads nothing more unless they are evicted meanwhile, and
//! the recursion ends at the root.

use std::sync::Arc;

use super::format::{self, Decoded, DecodedBody, Expected};
use super::node::{Body, Branch, Entries, Leaf, Meta, Node};
use super::search::Seek;
use super::slot::{Access, Frozen, Ghost, NodeArc, NodeRef, Slot, Target};
use super::stored::{Counters, Stored};
use super::tree::{Held, Tree};
use crate::store::Store;
use crate::{Codec, Config, Error};

impl<K: Ord + Clone, V: Clone> Tree<K, V> {
    /// The current version of the node `slot` stands for, for a caller
    /// that may swap a new version into it: loaded first if it is a ghost,
    /// and with `slot` replaced by the node's live one if it was detached.
    /// `None` if the slot is merging (helped to the end first) or retired:
    /// the caller looks again from the root.
    ///
    /// A load does I/O or waits for another thread's: callers hold no guard
    /// when the slot may be a ghost (they try [`Slot::loaded`] first).
    #[inline(always)]
    pub(crate) fn node_in(&self, slot: &mut Held<K, V>) -> Result<Option<NodeRef<K, V>>, Error> {
        if let Some(node) = slot.loaded() {
            return Ok(Some(node));
        }
        match self.reach(slot.arc())? {
            Reached::Node(node, live) => {
                if let Some(live) = live {
                    *slot = live;
                }
                Ok(Some(node))
            }
            Reached::Frozen(frozen) => {
                if frozen.merge().is_some() {
                    self.complete_merge(slot.arc())?;
                }
                Ok(None)
            }
        }
    }

    /// A version of the node `slot` stands for: its current one, or, if it
    /// is merging or retired, its last one. For readers that may see the
    /// tree as it was a moment ago (iterators moving right, checkpoints):
    /// a frozen version holds every key its range held when it froze.
    pub(crate) fn version(&self, slot: &Arc<Slot<K, V>>) -> Result<NodeArc<K, V>, Error> {
        if let Some(node) = slot.loaded() {
            return Ok(node.into_arc());
        }
        Ok(match self.reach(slot)? {
            Reached::Node(node, _) => node.into_arc(),
            Reached::Frozen(frozen) => frozen.version(),
        })
    }

    /// The node `slot` stands for as `verify` sees it, changing nothing: its
    /// current version (with `slot` replaced by the live one if it was
    /// detached), or a frozen node's last version and `true`.
    pub(crate) fn visit(&self, slot: &mut Held<K, V>) -> Result<(NodeArc<K, V>, bool), Error> {
        if let Some(node) = slot.loaded() {
            return Ok((node.into_arc(), false));
        }
        Ok(match self.reach(slot.arc())? {
            Reached::Node(node, live) => {
                if let Some(live) = live {
                    *slot = live;
                }
                (node.into_arc(), false)
            }
            Reached::Frozen(frozen) => (frozen.version(), true),
        })
    }

    /// What a slot that is not loaded leads to.
    #[cold]
    #[inline(never)]
    fn reach(&self, slot: &Arc<Slot<K, V>>) -> Result<Reached<K, V>, Error> {
        let Some(stored) = &self.stored else {
            // In memory there are no ghosts: only a frozen slot is not loaded.
            return match slot.access() {
                Access::Loaded(node) => Ok(Reached::Node(node, None)),
                Access::Frozen(frozen) => Ok(Reached::Frozen(frozen)),
                _ => Err(Error::Internal { what: "a ghost in a tree without a store" }),
            };
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
                    return Ok(Reached::Node(node, None));
                }
                Access::Wait(wait) => {
                    Counters::bump(&stored.counters.load_waits);
                    wait.wait()?;
                }
                Access::Load(load) => {
                    let node = self.load_ghost(stored, slot, load.target());
                    load.land(node)?;
                    loaded = true;
                }
                Access::Detached { level, low } => {
                    // A node's `low` never changes: the live slot is the one
                    // on its level that starts there.
                    let found =
                        self.descend::<true, K>(low.as_ref().map_or(Seek::First, Seek::Key), level)?;
                    return Ok(Reached::Node(found.node, Some(found.slot)));
                }
                Access::Frozen(frozen) => return Ok(Reached::Frozen(frozen)),
            }
        }
    }

    /// Reads, checks and builds the node a ghost (`slot`) stands for.
    fn load_ghost(
        &self,
        stored: &Stored<K, V>,
        slot: &Arc<Slot<K, V>>,
        target: &Target<K, V>,
    ) -> Result<Node<K, V>, Error> {
        let decoded = Self::read_record(stored, target)?;
        Counters::bump(&stored.counters.loads);
        self.build_node(stored, slot, target, decoded)?.ok_or_else(|| Error::Corrupt {
            address: Some(target.address()),
            what: "bounds differ from the parent's separators".into(),
        })
    }

    /// Reads and decodes the record `target` names, checked against its
    /// description if it has one.
    pub(super) fn read_record(stored: &Stored<K, V>, target: &Target<K, V>) -> Result<Decoded<K, V>, Error> {
        let address = target.address();
        let expected = match target {
            Target::Described(ghost) => {
                Expected { level: ghost.level, bounds: Some((ghost.low.as_ref(), ghost.high.as_ref())) }
            }
            Target::Child { level, .. } => Expected { level: *level, bounds: None },
        };
        stored
            .read_with(address, |record| (stored.codecs.decode)(record, &expected, stored.codecs.crc))?
            .map_err(|what| Error::Corrupt { address: Some(address), what })
    }

    /// The node the record `decoded` of `slot` (read as `target`) makes,
    /// charged as clean; `None` if `slot` is a child ghost whose parent's
    /// separators around it are not the record's bounds (`place_child`).
    pub(super) fn build_node(
        &self,
        stored: &Stored<K, V>,
        slot: &Arc<Slot<K, V>>,
        target: &Target<K, V>,
        decoded: Decoded<K, V>,
    ) -> Result<Option<Node<K, V>>, Error> {
        let address = target.address();
        let (low, high) = (decoded.low, decoded.high);
        let right = match target {
            Target::Described(ghost) => ghost.right.clone(),
            Target::Child { level, .. } => {
                match self.place_child(slot, *level, low.as_ref(), high.as_ref())? {
                    Some(right) => right,
                    None => return Ok(None),
                }
            }
        };
        let (body, listing) = match decoded.body {
            DecodedBody::Leaf { keys, vals } => (Body::Leaf(Leaf { keys, vals }), None),
            DecodedBody::Branch { level, keys, children } => {
                let slots =
                    children.iter().map(|&child| Slot::child(child, level - 1, &stored.ghost)).collect();
                (Body::Branch(Branch { level, children: slots, keys }), Some(children.into()))
            }
        };
        let node = Node { low, high, right, body, meta: Meta::loaded_from(address, listing) };
        Ok(Some(node.charged(Some(stored.account()), false)))
    }

    /// Checks a child ghost's bounds (from its record) against the level
    /// above, and finds its right neighbour: `Ok(None)` if its parent's
    /// separators around `slot` are not `low` and `high` (a record read
    /// from a wrong address, or a damaged file whose checksums hold), else
    /// `Ok(Some(right))`, the next child, or for the last child, the first
    /// of the parent's right neighbour (`None` at the end of the level).
    ///
    /// Unchecked, a high key inside the range the parent gives the node
    /// made its right link lead back to it (or further left), and a descent
    /// moving right went round for ever.
    #[allow(clippy::type_complexity)]
    fn place_child(
        &self,
        slot: &Arc<Slot<K, V>>,
        level: u32,
        low: Option<&K>,
        high: Option<&K>,
    ) -> Result<Option<Option<Arc<Slot<K, V>>>>, Error> {
        let seek = low.map_or(Seek::First, Seek::Key);
        let parent = self.descend::<false, K>(seek, level + 1)?.node;
        let Some(branch) = parent.as_branch().filter(|branch| branch.level == level + 1) else {
            return Err(Error::Internal { what: "no branch above a child ghost" });
        };
        let i = seek.child(branch);
        let parent_low = if i == 0 { parent.low.as_ref() } else { branch.keys.get(i - 1) };
        let parent_high = branch.keys.get(i).or(parent.high.as_ref());
        if !Arc::ptr_eq(&branch.children[i], slot) || parent_low != low || parent_high != high {
            return Ok(None);
        }
        let next = branch.children.get(i + 1).cloned();
        // No guard held across another descent (it may load).
        drop(parent);
        Ok(Some(match (next, high) {
            (Some(next), _) => Some(next),
            (None, None) => None,
            (None, Some(high)) => Some(self.slot_at(level, high)?),
        }))
    }

    /// The slot of the node on `level` whose range starts at `low` (the
    /// right neighbour of a parent's last child), made but not loaded: a
    /// descent to the level above picks it among a branch's children.
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
        let evicted =
            super::evict::evict(&found.slot, stored.account(), &stored.ghost) == super::slot::Evicted::Yes;
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
        let config = config.for_store();
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

/// What reaching a slot that is not loaded gives.
enum Reached<K, V> {
    /// The node's current version, and its live slot if the slot reached
    /// was detached.
    Node(NodeRef<K, V>, Option<Held<K, V>>),
    /// The slot is merging or retired.
    Frozen(Frozen<K, V>),
}
