//! The memory budget: counting resident bytes, and turning cold clean
//! leaves back into ghosts.
//!
//! # Counting
//!
//! Every node version of a tree over a store carries a [`Charge`]: its size,
//! added to the tree's [`Account`] when the version is built and taken off
//! when the version is dropped (not when it is unlinked: a version a reader
//! or a checkpoint still holds still takes memory). A version built by a
//! write is also *dirty* until a checkpoint stores it. The counts are striped
//! (`striped.rs`), so no write shares a counter line with another core.
//!
//! # Choosing what to evict (a clock with a cooling mark)
//!
//! Leaves enter a FIFO when they become clean and resident: loaded from the
//! store, or stored by a checkpoint. When resident bytes exceed the budget,
//! the thread that notices turns the clock: it takes the oldest leaf; an
//! unmarked one is marked *cooling* and goes to the back; one still marked
//! (not touched for a whole turn) becomes a ghost, by a swap from the exact
//! version that was checked clean, so a write that slipped in makes the swap
//! fail harmlessly. Any access to a cooling slot clears the mark: the flag
//! sits on the cache line every access reads anyway and is written only when
//! set, so hot reads write nothing shared (LeanStore's cooling idea, fed in
//! load order instead of by random sampling, which finds few resident leaves
//! in a large, mostly evicted tree).
//!
//! A long scan touches each of its leaves once: they cool and go after one
//! turn, while a hot set keeps getting un-cooled by its readers and stays.
//! Unlike strict LRU (ZODB's pickle cache), one scan cannot flush the hot
//! set.
//!
//! Only leaves are evicted. An interior node stays loaded once loaded, which
//! keeps every slot a unique, stable object (a reloaded parent would make new
//! child slots while old ones may still be in use). Interior nodes are about
//! 1/64 of a tree's bytes at the default capacities.
//!
//! # Safety of the account pointer
//!
//! Versions refer to their tree's account by a `&'static` made with
//! `Box::leak` and freed when the tree drops ([`AccountBox`]). That is sound
//! because no version outlives its tree: versions are held by the tree's
//! slots, by guards and iterators that borrow the tree, and by other
//! versions (`prev`), and the account is the tree's last field to drop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError};

use super::node::{Body, Node};
use super::persist::Counters;
use super::slot::{Ghost, GhostRight, NodeRef, Slot, State};
use super::striped::Striped;
use super::tree::Tree;
use crate::store::Address;

const RESIDENT: usize = 0;
const DIRTY: usize = 1;

/// A tree's memory counts.
pub(crate) struct Account {
    bytes: Striped<2>,
    budget: usize,
}

/// A version's share of its tree's memory count.
pub(crate) struct Charge {
    account: &'static Account,
    bytes: isize,
    dirty: AtomicBool,
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.account.bytes.add(RESIDENT, -self.bytes);
        // Relaxed: the version is being dropped, nobody else can clean it.
        if self.dirty.load(Ordering::Relaxed) {
            self.account.bytes.add(DIRTY, -self.bytes);
        }
    }
}

impl Charge {
    /// The version is stored now: no longer dirty.
    pub(crate) fn clean(&self) {
        if self.dirty.swap(false, Ordering::Relaxed) {
            self.account.bytes.add(DIRTY, -self.bytes);
        }
    }
}

impl Account {
    pub(crate) fn new(budget: usize) -> Account {
        Account { bytes: Striped::new(), budget }
    }

    pub(crate) fn charge(&'static self, bytes: usize, dirty: bool) -> Charge {
        let bytes = isize::try_from(bytes).unwrap_or(isize::MAX);
        self.bytes.add(RESIDENT, bytes);
        if dirty {
            self.bytes.add(DIRTY, bytes);
        }
        Charge { account: self, bytes, dirty: AtomicBool::new(dirty) }
    }

    pub(crate) fn resident(&self) -> usize {
        usize::try_from(self.bytes.sum(RESIDENT)).unwrap_or(0)
    }

    pub(crate) fn dirty(&self) -> usize {
        usize::try_from(self.bytes.sum(DIRTY)).unwrap_or(0)
    }

    pub(crate) fn budget(&self) -> usize {
        self.budget
    }
}

/// Owns a leaked [`Account`] and frees it when dropped (see the module docs).
pub(crate) struct AccountBox(&'static Account);

impl AccountBox {
    pub(crate) fn new(budget: usize) -> AccountBox {
        AccountBox(Box::leak(Box::new(Account::new(budget))))
    }

    pub(crate) fn get(&self) -> &'static Account {
        self.0
    }
}

impl Drop for AccountBox {
    fn drop(&mut self) {
        let account: *const Account = self.0;
        // SAFETY: the pointer came from `Box::leak` in `new` and is freed
        // only here, once. No version of the tree is alive any more: the
        // tree drops this field last, and nothing else holds versions (see
        // the module docs), so no `Charge` can use the reference afterwards.
        #[allow(unsafe_code)]
        unsafe {
            drop(Box::from_raw(account.cast_mut()));
        }
    }
}

/// Clock steps one thread takes per call, at most: bounds what a reader pays
/// for the others (the per-thread slack over the budget), also when nothing
/// is evictable (all dirty: a checkpoint will follow).
const STEPS_PER_CALL: usize = 512;

impl<K: Ord + Clone, V: Clone> Tree<K, V> {
    /// Queues a leaf that just became clean and resident (loaded, or stored
    /// by a checkpoint) for the clock.
    pub(crate) fn track_resident(&self, leaf: &Arc<Slot<K, V>>) {
        if let Some(persist) = &self.persist {
            let mut clock = persist.clock.lock().unwrap_or_else(PoisonError::into_inner);
            // Relaxed: the flag is read and written only under the clock's
            // lock, which orders it.
            if !leaf.in_clock.swap(true, Ordering::Relaxed) {
                clock.push_back(Arc::clone(leaf));
            }
        }
    }

    /// Evicts cold clean leaves while resident bytes exceed the budget.
    /// Called by threads that just loaded a node, and by writers.
    pub(crate) fn evict_if_over_budget(&self) {
        let (Some(persist), Some(account)) = (&self.persist, self.account()) else { return };
        if account.resident() <= account.budget() {
            return;
        }
        // One thread turns the clock at a time, for everyone; the others go
        // on with their work (and never park here).
        let Ok(mut clock) = persist.clock.try_lock() else { return };
        // At most one step per queued leaf: a leaf is marked in one call and
        // evicted in a later one, never both at once (a leaf a thread just
        // loaded to write into must survive until its write lands).
        for _ in 0..clock.len().min(STEPS_PER_CALL) {
            if account.resident() <= account.budget() {
                break;
            }
            let Some(leaf) = clock.pop_front() else { break };
            // Relaxed: `in_clock` is guarded by the lock, `cooling` a hint.
            if !is_clean_leaf(&leaf) {
                leaf.in_clock.store(false, Ordering::Relaxed);
                continue; // dirty (queued again once stored) or a ghost already
            }
            // First pass: mark it and give it a turn to be touched. Marked
            // and untouched since: evict.
            if !leaf.cooling.swap(true, Ordering::Relaxed) {
                clock.push_back(leaf);
            } else {
                leaf.in_clock.store(false, Ordering::Relaxed);
                leaf.cooling.store(false, Ordering::Relaxed);
                self.evict(&leaf);
            }
        }
    }

    /// Evicts the leaf holding `key` if it is clean (for the loom model,
    /// which needs the evictor at a chosen point, not at random).
    #[cfg(loom)]
    pub(crate) fn evict_leaf_of(&self, key: &K) -> Result<bool, crate::Error> {
        let found = self.descend::<true>(super::tree::Seek::Key(key), 0)?;
        drop(found.node);
        Ok(self.evict(&found.slot))
    }

    /// Turns `slot` back into a ghost if it holds a clean leaf; says whether
    /// it did. The swap is from the version checked, so a write that
    /// replaced it meanwhile makes this fail harmlessly.
    fn evict(&self, slot: &Slot<K, V>) -> bool {
        let Ok(node) = NodeRef::loaded(slot.peek()) else { return false };
        // Acquire: pairs with the checkpoint's Release after storing.
        let stored = node.meta.stored.load(Ordering::Acquire);
        if node.level() != 0 || stored == 0 {
            return false; // a branch, or dirty
        }
        let Some(persist) = &self.persist else { return false };
        let ghost = Ghost {
            address: Address(stored),
            level: 0,
            low: node.low.clone(),
            high: node.high.clone(),
            right: GhostRight::Known(node.right.clone()),
        };
        let evicted = slot.evict(&node, ghost, &persist.ghost);
        if evicted {
            Counters::bump(&persist.counters.evictions);
        }
        evicted
    }
}

/// The size a version is charged: the node and what its arrays hold on the
/// heap (not the heap data of the keys and values themselves).
pub(crate) fn size_of_version<K, V>(node: &Node<K, V>) -> usize {
    let heap = match &node.body {
        Body::Leaf(leaf) => {
            let spilled =
                |capacity: usize, spilled: bool, item: usize| if spilled { capacity * item } else { 0 };
            spilled(leaf.keys.capacity(), leaf.keys.spilled(), size_of::<K>())
                + spilled(leaf.vals.capacity(), leaf.vals.spilled(), size_of::<V>())
        }
        Body::Branch(branch) => {
            branch.keys.capacity() * size_of::<K>() + branch.children.capacity() * size_of::<usize>()
        }
    };
    size_of::<State<K, V>>() + 2 * size_of::<usize>() + heap
}

/// True if `slot` holds a loaded leaf whose version is stored.
fn is_clean_leaf<K, V>(slot: &Slot<K, V>) -> bool {
    // Acquire: pairs with the checkpoint's Release after storing.
    NodeRef::loaded(slot.peek())
        .is_ok_and(|node| node.level() == 0 && node.meta.stored.load(Ordering::Acquire) != 0)
}
