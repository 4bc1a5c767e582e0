//! The B-link tree engine: descent, copy-on-write updates, splits and the
//! posting of separators (Lehman & Yao, on immutable node versions).
//!
//! # Protocol
//!
//! - **Descent.** From the root slot, at each node: if the target lies at or
//!   beyond the node's `high`, follow the right link (the node split after its
//!   parent was read); otherwise step into the child that covers the target.
//!   Readers hold at most a few arc-swap guards, hand over hand, and take no
//!   lock.
//! - **Write.** Build the new version of the leaf that covers the key and
//!   compare-and-swap it into the leaf's slot. Losing the race means another
//!   write replaced the leaf: reread the same slot (its `low` is fixed, so it
//!   still covers the key or lies left of it), move right if it split, retry.
//!   Writes to different leaves touch different slots and never wait.
//! - **Split.** An overflowing version is published as its left half, whose
//!   right link is a new slot holding the right half. The split takes effect
//!   at that one swap. The separator is then posted to the parent by a second
//!   swap; until then the right half is reached by moving right. Posting is
//!   idempotent (a separator is the fixed `low` of exactly one slot per
//!   level), so the splitter and any writer that had to move right may both
//!   post it.
//! - **Root growth.** When the split node is on the top level, a new root slot
//!   with the old root's slot and its right neighbour is swapped into the
//!   tree's root cell. The old root slot stays the leftmost node of its level.
//!
//! # Invariants owned here
//!
//! - The root cell always holds the leftmost slot of the top level, and the
//!   top level only grows.
//! - Every published version satisfies the node invariants in `node.rs`: this
//!   file builds versions only through `Node::rebuild` and friends, from a
//!   version that was current when read.
//! - A change's epoch is at least its base's (`successor_meta`), and the
//!   change is counted at the swap that makes it, before any posting.
//!
//! Over a store, reaching a ghost loads it (`load.rs`; the one call
//! recursion, a load's descent for a right neighbour, is stated there), a
//! write registers in an epoch (`epoch.rs`), and writers start checkpoints
//! and turn the eviction clock (`checkpoint.rs`, `evict.rs`); this file
//! only calls them.

use std::borrow::Borrow;
use std::sync::Arc;

use super::account::Account;
use super::ends::Ends;
use super::epoch::Registered;
use super::node::{Body, Branch, Edit, End, Entries, Leaf, Meta, Named, Node, Rebuilt, prefetch};
use super::search::Seek;
use super::slot::{NodeRef, Slot};
use super::stored::{Paused, Stored};
use super::striped::Striped;
use super::sync::{AtomicArc, Snapshot};
use crate::{Config, Error, Stats};

pub(crate) struct Tree<K, V> {
    /// First: dropped while the root still holds every slot. Dropped after
    /// it, a hint to the leftmost leaf would free the leaves one right link
    /// at a time, a recursion as deep as the level is long (see `drop`).
    ends: Ends<K, V>,
    root: AtomicArc<Root<K, V>>,
    entries: Striped<1>,
    config: Config,
    /// Everything a tree over a store has; `None` in memory (no ghosts).
    /// Last: the account in it must outlive every version (fields drop in
    /// order; see `account.rs`).
    pub(crate) stored: Option<Stored<K, V>>,
}

/// What the root cell holds: the root slot, in an allocation of its own
/// each time the cell is set, so that a compare-and-swap on the cell fails
/// once the cell has moved on, even if it came back to the same slot. It
/// does: a root `L` grows a parent over it and its right neighbour `R`, `R`
/// merges into `L`, and the parent, left with one child, hands the cell back
/// to `L`. A root growth built on `L`'s version from before all that (with
/// `R` as its right link) would otherwise win its swap and list the
/// retired `R` again.
pub(crate) struct Root<K, V>(Arc<Slot<K, V>>);

/// What a write does to the entry of its key.
pub(crate) enum Action<V> {
    Keep,
    Put(V),
    Remove,
}

/// The slot a descent ended in. Held through the root guard when the descent
/// ended at the root, so the root slot's reference count (touched by every
/// operation otherwise) is left alone.
pub(crate) enum Held<K, V> {
    Root(Snapshot<Root<K, V>>),
    /// An end leaf's slot, through its hint's guard (`ends.rs`): the same
    /// for the hottest leaves of a queue.
    End(Snapshot<Slot<K, V>>),
    Shared(Arc<Slot<K, V>>),
}

impl<K, V> Held<K, V> {
    /// The slot as an `Arc` of its own, letting go of any guard (none may
    /// be held across a load).
    pub(crate) fn into_arc(self) -> Arc<Slot<K, V>> {
        match self {
            Held::Shared(slot) => slot,
            held => Arc::clone(held.arc()),
        }
    }

    pub(crate) fn arc(&self) -> &Arc<Slot<K, V>> {
        match self {
            Held::Root(root) => &root.0,
            Held::End(slot) => slot,
            Held::Shared(slot) => slot,
        }
    }
}

impl<K, V> std::ops::Deref for Held<K, V> {
    type Target = Slot<K, V>;

    fn deref(&self) -> &Slot<K, V> {
        self.arc()
    }
}

/// Where a descent ended: the node, and (for writers) its slot.
pub(crate) struct Found<K, V> {
    /// Meaningful only for a descent that tracked slots (`TRACK = true`).
    pub(crate) slot: Held<K, V>,
    pub(crate) node: NodeRef<K, V>,
    /// The descent followed a right link on the target level: the node's
    /// separator may not be posted yet.
    pub(crate) moved_right: bool,
}

impl<K, V> Drop for Tree<K, V> {
    fn drop(&mut self) {
        // The eviction clock holds slots too. Dropped after the root (fields
        // drop in order), it would free the nodes from wherever its order
        // starts, each freeing its right neighbour in turn: a recursion as
        // deep as a level is long, which overflowed the stack for a tree of
        // two million keys. Emptied while the root still holds every slot,
        // it frees nothing, and the root then frees the tree parent by
        // parent (a recursion as deep as the tree is high).
        if let Some(stored) = &self.stored {
            stored.clock.clear();
        }
    }
}

impl<K, V> Tree<K, V> {
    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// Exact when no write is in flight; clamped at zero mid-write (a
    /// remove may be counted before the insert it raced with).
    pub(crate) fn len(&self) -> usize {
        usize::try_from(self.entries.sum(0)).unwrap_or(0)
    }

    pub(crate) fn root(&self) -> Arc<Slot<K, V>> {
        Arc::clone(&self.root.load().0)
    }

    pub(crate) fn account(&self) -> Option<&'static Account> {
        self.stored.as_ref().map(Stored::account)
    }

    /// What the tree has done since it was opened.
    pub(crate) fn stats(&self) -> Stats {
        self.stored.as_ref().map_or_else(Stats::default, Stored::stats)
    }
}

impl<K: Ord + Clone, V: Clone> Tree<K, V> {
    /// An empty tree: one empty leaf.
    pub(crate) fn new(config: Config) -> Tree<K, V> {
        let leaf =
            Node::new(None, None, None, Body::Leaf(Leaf { keys: Entries::new(), vals: Entries::new() }));
        Tree::from_root(Slot::new(leaf), 0, config)
    }

    pub(crate) fn from_root(root: Arc<Slot<K, V>>, len: usize, config: Config) -> Tree<K, V> {
        Tree::over(root, len, config, None)
    }

    /// A tree whose root is `root`, holding `len` entries, over a store if
    /// `stored` says.
    pub(crate) fn over(
        root: Arc<Slot<K, V>>,
        len: usize,
        config: Config,
        stored: Option<Stored<K, V>>,
    ) -> Tree<K, V> {
        let entries = Striped::new();
        entries.add(0, isize::try_from(len).unwrap_or(isize::MAX));
        Tree { ends: Ends::new(&root), root: AtomicArc::new(Arc::new(Root(root))), entries, config, stored }
    }

    /// Hands the root cell from `current` to `new` (a root with one child
    /// gives way to it; `merge.rs`) unless another thread did.
    pub(crate) fn replace_root(&self, current: &Arc<Slot<K, V>>, new: Arc<Slot<K, V>>) -> bool {
        // By slot: `current` is retired, and a retired slot never comes
        // back into the cell.
        let cell = self.root.load_full();
        Arc::ptr_eq(&cell.0, current) && self.root.compare_exchange(&cell, Arc::new(Root(new)))
    }

    /// Stops eviction until the guard drops (see `Stored::pause_eviction`).
    pub(crate) fn pause_eviction(&self) -> Option<Paused<'_, K, V>> {
        self.stored.as_ref().map(Stored::pause_eviction)
    }

    /// The leaf the target lies in, for reading.
    #[inline]
    pub(crate) fn seek<Q: Ord + ?Sized>(&self, to: Seek<'_, Q>) -> Result<NodeRef<K, V>, Error>
    where
        K: Borrow<Q>,
    {
        Ok(self.descend::<false, Q>(to, 0)?.node)
    }

    /// Descends to the node on `level` (or the root, if the tree is lower)
    /// that the target lies in. With `TRACK`, also returns its slot.
    ///
    /// A slot found merging is helped to the end, and a retired one left:
    /// either way the descent starts again from the root, whose current
    /// versions no longer lead there (`merge.rs`).
    pub(crate) fn descend<const TRACK: bool, Q: Ord + ?Sized>(
        &self,
        to: Seek<'_, Q>,
        level: u32,
    ) -> Result<Found<K, V>, Error>
    where
        K: Borrow<Q>,
    {
        // Pops, first and last entries, and writes (appends) may start at an
        // end leaf (`ends.rs`); lookups by key do not pay for the check.
        let hinted = level == 0 && (TRACK || !matches!(to, Seek::Key(_)));
        if hinted && let Some((slot, node)) = self.ends.find(to) {
            return Ok(Found { slot: Held::End(slot), node, moved_right: false });
        }
        let track = TRACK || hinted;
        'look: loop {
            let (mut slot, mut node) = self.root_node()?;
            node.prefetch();
            let mut moved_right = false;
            loop {
                let (next_slot, next_level) = if to.is_right_of(&node)
                    && let Some(right) = &node.right
                {
                    (right, node.level())
                } else if let Some(branch) = node.as_branch().filter(|_| node.level() > level) {
                    (&branch.children[to.child(branch)], node.level() - 1)
                } else {
                    if hinted {
                        self.ends.note(slot.arc(), &node, to);
                    }
                    return Ok(Found { slot, node, moved_right });
                };
                let arrives = track && next_level <= level;
                moved_right |= arrives && next_level == node.level();
                let next = match next_slot.loaded() {
                    Some(next) => {
                        if arrives {
                            slot = Held::Shared(Arc::clone(next_slot));
                        }
                        next
                    }
                    None => {
                        // A ghost: drop every guard before its load (I/O, or a
                        // wait for another thread's load).
                        slot = Held::Shared(Arc::clone(next_slot));
                        drop(node);
                        match self.node_in(&mut slot)? {
                            Some(next) => next,
                            None => continue 'look,
                        }
                    }
                };
                next.prefetch();
                node = next;
            }
        }
    }

    /// The root slot and its current version: loaded first if it is a
    /// ghost, and handed on first if it is retired (a root with one child
    /// gives its place to the child; `merge.rs`).
    #[allow(clippy::type_complexity)]
    pub(crate) fn root_node(&self) -> Result<(Held<K, V>, NodeRef<K, V>), Error> {
        loop {
            let root = self.root.load();
            if let Some(node) = root.0.loaded() {
                return Ok((Held::Root(root), node));
            }
            // A ghost root: load it holding no guard.
            let mut held = Held::Shared(Arc::clone(&root.0));
            drop(root);
            match self.node_in(&mut held)? {
                Some(node) => return Ok((held, node)),
                None => self.hand_on_root(held.arc()),
            }
        }
    }

    /// The current version of `slot` after a swap from `node` (a stale
    /// version of it) lost a race, moved right while `to` lies beyond it:
    /// the slot's `low` is fixed and its range only shrinks from the right,
    /// so the target is there or further right. Holds no guard across a
    /// load. Says whether it moved; `None` if a slot on the way was merging
    /// or retired: the caller starts again from the root.
    #[allow(clippy::type_complexity)]
    fn after_lost_race<Q: Ord + ?Sized>(
        &self,
        slot: &mut Held<K, V>,
        node: NodeRef<K, V>,
        to: Seek<'_, Q>,
    ) -> Result<Option<(NodeRef<K, V>, bool)>, Error>
    where
        K: Borrow<Q>,
    {
        let current = match slot.loaded() {
            Some(current) => Some(current),
            None => {
                drop(node);
                *slot = Held::Shared(Arc::clone(slot.arc()));
                self.node_in(slot)?
            }
        };
        let Some(mut node) = current else { return Ok(None) };
        let mut moved = false;
        while to.is_right_of(&node) {
            let Some(right) = node.right.clone() else {
                break;
            };
            *slot = Held::Shared(right);
            drop(node); // no guard across a load
            let Some(next) = self.node_in(slot)? else { return Ok(None) };
            node = next;
            moved = true;
        }
        Ok(Some((node, moved)))
    }

    /// Reads the entry of `key` and applies what `decide` makes of it, as one
    /// atomic step. `decide` may run more than once (once per lost race); the
    /// result of the run whose action took effect is returned.
    ///
    /// `key` may be a borrowed form; a `decide` that can return
    /// `Action::Put` needs the key itself in `owned`, to insert it.
    pub(crate) fn update<Q: Ord + ?Sized, R>(
        &self,
        key: &Q,
        owned: Option<&K>,
        decide: impl FnMut(Option<&V>) -> (Action<V>, R),
    ) -> Result<R, Error>
    where
        K: Borrow<Q>,
    {
        let result = {
            let registered = self.register();
            self.update_in(key, owned, decide, registered.as_ref().map_or(0, |r| r.epoch))
        };
        self.checkpoint_if_dirty();
        result
    }

    fn update_in<Q: Ord + ?Sized, R>(
        &self,
        key: &Q,
        owned: Option<&K>,
        mut decide: impl FnMut(Option<&V>) -> (Action<V>, R),
        epoch: u64,
    ) -> Result<R, Error>
    where
        K: Borrow<Q>,
    {
        'look: loop {
            let Found { mut slot, mut node, mut moved_right } = self.descend::<true, Q>(Seek::Key(key), 0)?;
            loop {
                // The new version will hold the right link too: start
                // fetching the reference count it bumps while the leaf is
                // searched.
                if let Some(right) = &node.right {
                    prefetch(std::slice::from_ref::<Slot<K, V>>(right));
                }
                let leaf = leaf_of(&node);
                let found = leaf.find(key);
                let (action, result) = decide(found.ok().map(|i| &leaf.vals[i]));
                let edit = match (action, found) {
                    (Action::Keep, _) | (Action::Remove, Err(_)) => return Ok(result),
                    (Action::Put(value), Ok(i)) => Edit::Replace(i, value),
                    (Action::Put(value), Err(i)) => {
                        Edit::Insert(i, owned.expect("a put comes with the key itself").clone(), value)
                    }
                    (Action::Remove, Ok(i)) => Edit::Remove(i),
                };
                let delta = edit.delta();
                let left = leaf.keys.len().saturating_add_signed(delta);
                if let Some(tag) = self.publish_edit(slot.arc(), &node, edit, epoch) {
                    if let (true, Held::Shared(slot), Some(low)) = (moved_right, &slot, &node.low) {
                        // We reached this leaf through a right link: help
                        // post its separator (a no-op if the splitter did).
                        self.post_split(0, low.clone(), Arc::clone(slot), tag);
                    }
                    if delta < 0 {
                        drop(node);
                        self.after_remove(&slot.into_arc(), left, epoch);
                    }
                    return Ok(result);
                }
                // Lost the race. The slot's range only shrinks from the
                // right, so the key is here or further right.
                match self.after_lost_race(&mut slot, node, Seek::Key(key))? {
                    Some((current, moved)) => (node, moved_right) = (current, moved_right | moved),
                    None => continue 'look,
                }
            }
        }
    }

    /// Removes and returns the first (or last) entry.
    pub(crate) fn pop(&self, last: bool) -> Result<Option<(K, V)>, Error> {
        let result = {
            let registered = self.register();
            self.pop_in(last, registered.as_ref().map_or(0, |r| r.epoch))
        };
        self.checkpoint_if_dirty();
        result
    }

    /// A pop removes the first (last) entry of the leftmost (rightmost)
    /// leaf by one swap on the version it read. That leaf's range reaches
    /// minus (plus) infinity, so its first (last) entry is the smallest
    /// (largest) of the tree at that swap: pops are linearizable there. An
    /// empty leftmost (rightmost) leaf that is not the only leaf is merged
    /// with its neighbour first (`merge.rs`); an empty only leaf means the
    /// tree was empty when it was read.
    fn pop_in(&self, last: bool, epoch: u64) -> Result<Option<(K, V)>, Error> {
        loop {
            let Found { slot, node, .. } =
                self.descend::<true, K>(if last { Seek::Last } else { Seek::First }, 0)?;
            let leaf = leaf_of(&node);
            if leaf.keys.is_empty() {
                let only = node.low.is_none() && node.high.is_none();
                if only {
                    return Ok(None);
                }
                let slot = slot.into_arc();
                drop(node); // no guard across the merge's loads
                self.merge_small(0, &slot, epoch)?;
                continue;
            }
            let i = if last { leaf.keys.len() - 1 } else { 0 };
            let entry = (leaf.keys[i].clone(), leaf.vals[i].clone());
            let left = leaf.keys.len() - 1;
            if self.publish_edit(slot.arc(), &node, Edit::Remove(i), epoch).is_some() {
                drop(node);
                self.after_remove(&slot.into_arc(), left, epoch);
                return Ok(Some(entry));
            }
        }
    }

    /// Registers a write operation in the current commit epoch (trees over
    /// a store only; see `epoch.rs`).
    fn register(&self) -> Option<Registered<'_>> {
        self.stored.as_ref().map(|stored| stored.epochs.enter())
    }

    /// Counts `delta` entries, also under the epoch the change was tagged
    /// with, for the checkpoint of that epoch.
    fn count(&self, delta: isize, epoch: u64) {
        self.entries.add(0, delta);
        if let Some(stored) = &self.stored {
            stored.epochs.count(epoch, delta);
        }
    }

    /// The bookkeeping of a version that a writer of `epoch` builds to
    /// replace `current`: it keeps `current` (or what `current` keeps) while
    /// a checkpoint of an older epoch may still need to write it.
    ///
    /// The new version's epoch is the later of the writer's and `current`'s:
    /// a writer of epoch `E` that lost a race to one of `E + 1` builds on a
    /// version holding an `E + 1` operation, so its version belongs to
    /// `E + 1` too, or a checkpoint of `E` would hold an operation of a later
    /// epoch. (It can only be `E + 1`: the checkpoint of `E` waits for this
    /// writer, so no `E + 2` exists yet.)
    pub(crate) fn successor_meta(&self, current: &NodeRef<K, V>, epoch: u64) -> Meta<K, V> {
        let epoch = epoch.max(current.meta.epoch);
        let running = self.stored.as_ref().map_or(0, |stored| stored.epochs.running());
        let prev = if running == 0 || epoch <= running {
            None // no checkpoint needs an older version
        } else if current.meta.epoch <= running {
            // `current` is what the running checkpoint writes for this slot.
            // What it kept was for an older checkpoint, finished (one runs
            // at a time): kept on, versions would chain, one per checkpoint.
            current.meta.forget_prev();
            Some(current.to_arc())
        } else {
            current.meta.prev()
        };
        Meta::new(epoch, prev, Arc::clone(&current.meta.named))
    }

    /// Publishes `body` as the successor of `current` in `slot`, splitting
    /// it if it overflows, and counts the `delta` entries it adds. Returns
    /// the epoch the change was tagged with (see `successor_meta`), or
    /// `None` if `current` was no longer the slot's version (nothing
    /// changed).
    ///
    /// The count is taken at the swap that makes the change, before a split
    /// is posted: posting clones and compares keys, and a panic there (in
    /// `K::clone` or `K::cmp`) must leave a change that took effect counted.
    ///
    /// `end` is where the new version ends, if not where `current` does
    /// (a merge's absorbing node; `merge.rs`).
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn publish(
        &self,
        slot: &Arc<Slot<K, V>>,
        current: &NodeRef<K, V>,
        body: Body<K, V>,
        end: Option<End<K, V>>,
        appended: bool,
        epoch: u64,
        delta: isize,
    ) -> Option<u64> {
        let capacity = match body {
            Body::Leaf(_) => self.config.leaf_capacity,
            Body::Branch(_) => self.config.branch_capacity,
        };
        let meta = self.successor_meta(current, epoch);
        let tag = meta.epoch;
        let pieces = match current.rebuild(body, end, capacity, appended, meta, self.account()) {
            Rebuilt::Fits(node) => {
                if !slot.replace(current, node) {
                    return None;
                }
                Vec::new()
            }
            Rebuilt::Split { left, right } => {
                if !slot.replace(current, left) {
                    return None;
                }
                right
            }
        };
        self.count(delta, tag);
        if current.level() == 0 {
            self.dirtied(slot, current.meta.epoch < tag, tag);
            for (_, right) in &pieces {
                self.dirtied(right, true, tag);
            }
        }
        // The posts are part of the split: same epoch, or a checkpoint could
        // hold a separator without the node it leads to.
        for (separator, right) in pieces {
            self.post_split(current.level(), separator, right, tag);
        }
        Some(tag)
    }

    /// Publishes the successor of the leaf `current` with `edit` made, as
    /// [`publish`](Tree::publish) does; a successor that fits is built in
    /// place (the common case: no split).
    #[inline]
    pub(crate) fn publish_edit(
        &self,
        slot: &Arc<Slot<K, V>>,
        current: &NodeRef<K, V>,
        edit: Edit<K, V>,
        epoch: u64,
    ) -> Option<u64> {
        let leaf = leaf_of(current);
        let delta = edit.delta();
        if leaf.keys.len().saturating_add_signed(delta) > self.config.leaf_capacity {
            let appended = matches!(edit, Edit::Insert(i, ..) if i == leaf.keys.len());
            return self.publish(slot, current, Body::Leaf(leaf.edited(edit)), None, appended, epoch, delta);
        }
        let meta = self.successor_meta(current, epoch);
        let tag = meta.epoch;
        if !slot.install(current, current.edited(edit, meta, self.account())) {
            return None;
        }
        self.count(delta, tag);
        self.dirtied(slot, current.meta.epoch < tag, tag);
        Some(tag)
    }

    /// Queues a leaf a write of epoch `tag` made dirty, if `first`, for
    /// the spills (`checkpoint.rs`, "Spills"): once per slot and epoch. The
    /// first write of an epoch into a slot replaces a version of an
    /// earlier one (a later version of the same epoch was made by a write
    /// that queued the slot); the pieces of a split are new slots.
    fn dirtied(&self, slot: &Arc<Slot<K, V>>, first: bool, tag: u64) {
        if let (Some(stored), true) = (&self.stored, first) {
            stored.dirtied(slot, tag);
        }
    }

    /// Posts the separator of a split on `level` (the `low` of the new slot
    /// `right`) to the level above, growing the root if `level` is the top.
    ///
    /// Idempotent, and optional for correctness: an unposted separator only
    /// makes descents move right. So a failed load here ends the attempt
    /// quietly; the next writer that moves right posts it.
    pub(crate) fn post_split(&self, level: u32, separator: K, right: Arc<Slot<K, V>>, epoch: u64) {
        let _ = self.try_post_split(level, separator, right, epoch);
    }

    fn try_post_split(
        &self,
        level: u32,
        separator: K,
        right: Arc<Slot<K, V>>,
        epoch: u64,
    ) -> Result<(), Error> {
        'look: loop {
            loop {
                // The cell before the version: a swap from `cell` that wins
                // means the root slot was `root` throughout, so `top` still
                // shows the top level's nodes (see `Root`).
                let cell = self.root.load_full();
                let (root, top) = self.root_node()?;
                if !Arc::ptr_eq(root.arc(), &cell.0) {
                    continue; // handed on meanwhile
                }
                if top.level() != level {
                    break;
                }
                // The split node is on the top level, whose leftmost node is
                // the root slot: it split, so it has a right neighbour.
                let (Some(high), Some(next)) = (&top.high, &top.right) else {
                    return Ok(());
                };
                let grown = Slot::new(
                    Node {
                        low: None,
                        high: None,
                        right: None,
                        body: Body::Branch(Branch {
                            level: level + 1,
                            keys: vec![high.clone()],
                            children: vec![Arc::clone(root.arc()), Arc::clone(next)],
                        }),
                        // Tagged like any write: a checkpoint of an older
                        // epoch must not take it for its root.
                        meta: Meta::new(epoch, None, Named::nowhere()),
                    }
                    .charged(self.account(), true),
                );
                drop((top, root));
                // Win or lose, the top is now above `level`: post into it.
                self.root.compare_exchange(&cell, Arc::new(Root(grown)));
            }
            let Found { mut slot, mut node, .. } =
                self.descend::<true, K>(Seek::Key(&separator), level + 1)?;
            loop {
                if node.level() != level + 1 {
                    // The tree shrank meanwhile (`merge.rs`): the level is
                    // the top again (grow the root), or gone (nothing to do).
                    if node.level() < level {
                        return Ok(());
                    }
                    continue 'look;
                }
                let Some((body, appended)) = with_separator(&node, &separator, &right) else {
                    return Ok(()); // posted already
                };
                // Read after the parent's version: a node merged away
                // since it split is frozen before it leaves its parent, so
                // this never links a slot a merge has taken out (`merge.rs`).
                // A detached slot (met through a stale right link) was
                // posted in the parent whose eviction detached it: listed
                // again, it would lead every descent there back to itself.
                if right.is_frozen() || right.is_detached() {
                    return Ok(());
                }
                // A parent that overflows splits and posts its own pieces.
                if self.publish(slot.arc(), &node, Body::Branch(body), None, appended, epoch, 0).is_some() {
                    return Ok(());
                }
                match self.after_lost_race(&mut slot, node, Seek::Key(&separator))? {
                    Some((current, _)) => node = current,
                    None => continue 'look,
                }
            }
        }
    }
}

/// The leaf body of a node known to be on level 0.
pub(crate) fn leaf_of<K, V>(node: &Node<K, V>) -> &Leaf<K, V> {
    node.as_leaf().expect("descents to level 0 end on leaves")
}

/// The body of `node` (a branch covering `separator`) with the separator and
/// its slot added, or `None` if it is posted already: among the keys, or as
/// the node's own `low` (the parent split right at it).
fn with_separator<K: Ord + Clone, V>(
    node: &Node<K, V>,
    separator: &K,
    right: &Arc<Slot<K, V>>,
) -> Option<(Branch<K, V>, bool)> {
    if node.low.as_ref() == Some(separator) {
        return None;
    }
    let branch = node.as_branch().expect("posts go to branches");
    branch.with_separator(separator.clone(), Arc::clone(right))
}
