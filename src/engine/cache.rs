//! The memory budget: counting resident bytes, and turning cold clean
//! nodes back into ghosts.
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
//! Nodes enter a FIFO when they become clean and resident: loaded from the
//! store, or stored by a checkpoint. When resident bytes exceed the budget,
//! the thread that notices turns the clock: it takes the oldest node; an
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
//! Branches go through the same clock, so a cold branch goes before a hot
//! leaf. One is evicted when it is clean, has not been descended through
//! for a whole turn, and its children are all ghosts, none split without
//! posting (so its stored image lists exactly these children). Its children
//! are detached in the same step (`slot.rs`), so the new child slots a
//! reloaded branch makes never coexist with live old ones. A branch with a
//! resident child stays queued; the slot remembers which child it was, so
//! the next check usually reads one child, not all of them.
//!
//! `verify` pauses eviction: it checks slots by identity.
//!
//! # Safety of the account pointer
//!
//! Versions refer to their tree's account by a `&'static`, reborrowed from
//! the unique reference `Box::leak` made, and the account is freed through
//! that unique reference when the tree drops ([`AccountBox`]). That is sound
//! because no version outlives its tree: versions are held by the tree's
//! slots, by guards and iterators that borrow the tree, and by other
//! versions (`prev`), and the account is the tree's last field to drop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::cell::{lock, try_lock};

use super::node::{Body, Node};
use super::persist::Counters;
use super::slot::{Evicted, Ghost, NodeRef, Slot, State};
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
///
/// It keeps the unique reference `Box::leak` gave and hands out shared
/// reborrows of it: freeing through a pointer that came from a shared
/// reference is undefined behaviour (Miri's Stacked Borrows caught the
/// first version doing that).
pub(crate) struct AccountBox(&'static mut Account);

impl AccountBox {
    pub(crate) fn new(budget: usize) -> AccountBox {
        AccountBox(Box::leak(Box::new(Account::new(budget))))
    }

    pub(crate) fn get(&self) -> &'static Account {
        let account: *const Account = &*self.0;
        // SAFETY: the account lives until `drop` below, which runs only
        // when no version of the tree is alive any more (see the module
        // docs), and versions (their `Charge`s) are what keeps this
        // reference; nothing writes through `self.0` meanwhile.
        #[allow(unsafe_code)]
        unsafe {
            &*account
        }
    }
}

impl Drop for AccountBox {
    fn drop(&mut self) {
        let account: *mut Account = &mut *self.0;
        // SAFETY: the pointer is the unique reference `Box::leak` returned
        // in `new`, and it is freed only here, once. No version of the tree
        // is alive any more: the tree drops this field last, and nothing
        // else holds versions (see the module docs), so no `Charge` can use
        // a reference from `get` afterwards.
        #[allow(unsafe_code)]
        unsafe {
            drop(Box::from_raw(account));
        }
    }
}

/// Clock steps one thread takes per call, at most: bounds what a reader pays
/// for the others (the per-thread slack over the budget), also when nothing
/// is evictable (all dirty: a checkpoint will follow).
const STEPS_PER_CALL: usize = 512;

impl<K: Ord + Clone, V: Clone> Tree<K, V> {
    /// Queues a node that just became clean and resident (loaded, or stored
    /// by a checkpoint) for the clock.
    pub(crate) fn track_resident(&self, slot: &Arc<Slot<K, V>>) {
        if let Some(persist) = &self.persist {
            let mut clock = lock(&persist.clock);
            // Relaxed: the flag is read and written only under the clock's
            // lock, which orders it.
            if !slot.in_clock.swap(true, Ordering::Relaxed) {
                clock.push_back(Arc::clone(slot));
            }
        }
    }

    /// Evicts cold clean nodes while resident bytes exceed the budget.
    /// Called by threads that just loaded a node, and by writers.
    pub(crate) fn evict_if_over_budget(&self) {
        self.turn_clock(STEPS_PER_CALL);
    }

    /// Turns the clock until resident bytes are within the budget or
    /// nothing more can go (after `verify`, which loads the whole tree
    /// with eviction paused).
    fn evict_to_budget(&self) {
        let Some(account) = self.account() else { return };
        // A turn over the whole queue marks nodes, the next evicts them,
        // and a branch can go one turn after its last child.
        let mut idle = 0;
        while account.resident() > account.budget() && idle < 2 {
            let before = account.resident();
            self.turn_clock(usize::MAX);
            idle = if account.resident() < before { 0 } else { idle + 1 };
        }
    }

    /// Takes up to `steps` steps of the clock, and at most one per queued
    /// node, while resident bytes exceed the budget.
    fn turn_clock(&self, steps: usize) {
        let (Some(persist), Some(account)) = (&self.persist, self.account()) else { return };
        if account.resident() <= account.budget() {
            return;
        }
        // One thread turns the clock at a time, for everyone; the others go
        // on with their work (and never park here).
        let Some(mut clock) = try_lock(&persist.clock) else { return };
        // Read under the lock `pause_eviction` waits for: no turn that began
        // before a pause evicts anything after it.
        if persist.pauses.load(Ordering::SeqCst) != 0 {
            return;
        }
        // At most one step per queued node: a node is marked in one call and
        // evicted in a later one, never both at once (a leaf a thread just
        // loaded to write into must survive until its write lands).
        for _ in 0..clock.len().min(steps) {
            if account.resident() <= account.budget() {
                break;
            }
            let Some(slot) = clock.pop_front() else { break };
            // Relaxed: `in_clock` is guarded by the lock, `cooling` a hint.
            if !is_clean(&slot) {
                slot.in_clock.store(false, Ordering::Relaxed);
                continue; // dirty (queued again once stored) or a ghost already
            }
            // First pass: mark it and give it a turn to be touched. Marked
            // and untouched since: evict.
            if !slot.cooling.swap(true, Ordering::Relaxed) {
                clock.push_back(slot);
                continue;
            }
            slot.cooling.store(false, Ordering::Relaxed);
            // Queued again while it is evicted: a panic in a key's clone
            // (building its description) leaves it loaded, and in the clock.
            clock.push_back(slot);
            let slot = clock.back().expect("pushed just now");
            if self.evict(slot) != Evicted::NotYet {
                // Not a branch whose children are resident: out of the clock.
                slot.in_clock.store(false, Ordering::Relaxed);
                clock.pop_back();
            }
        }
    }

    /// Stops eviction until the returned guard drops, once any turn of the
    /// clock in progress has ended.
    pub(crate) fn pause_eviction(&self) -> Option<Paused<'_, K, V>> {
        let persist = self.persist.as_ref()?;
        persist.pauses.fetch_add(1, Ordering::SeqCst);
        drop(lock(&persist.clock));
        Some(Paused(self))
    }

    /// Evicts the node on `level` whose range holds `key` if it can go
    /// (for the loom models, which need the evictor at a chosen point).
    #[cfg(loom)]
    pub(crate) fn evict_node_of(&self, key: &K, level: u32) -> Result<bool, crate::Error> {
        let found = self.descend::<true, K>(super::tree::Seek::Key(key), level)?;
        drop(found.node);
        Ok(self.evict(&found.slot) == Evicted::Yes)
    }

    /// Turns `slot` back into a ghost if it holds a clean node whose
    /// children are all ghosts (see `Slot::evict`). The swap is from the
    /// version checked, so a write that replaced it meanwhile makes this
    /// fail harmlessly.
    fn evict(&self, slot: &Slot<K, V>) -> Evicted {
        let Some(persist) = &self.persist else { return Evicted::No };
        let Ok(node) = NodeRef::loaded(slot.peek()) else { return Evicted::No };
        // Acquire: pairs with the checkpoint's Release after storing.
        let stored = node.meta.stored.load(Ordering::Acquire);
        if stored == 0 {
            return Evicted::No; // dirty
        }
        let ghost = || Ghost {
            address: Address(stored),
            level: node.level(),
            low: node.low.clone(),
            high: node.high.clone(),
            right: node.right.clone(),
            detached: false,
        };
        let evicted = slot.evict(&node, ghost, &persist.ghost);
        if evicted == Evicted::Yes {
            Counters::bump(&persist.counters.evictions);
        }
        evicted
    }
}

/// Eviction stays paused while this lives (see [`Tree::pause_eviction`]);
/// dropping it evicts what the pause let in over the budget.
pub(crate) struct Paused<'a, K: Ord + Clone, V: Clone>(&'a Tree<K, V>);

impl<K: Ord + Clone, V: Clone> Drop for Paused<'_, K, V> {
    fn drop(&mut self) {
        if let Some(persist) = &self.0.persist {
            persist.pauses.fetch_sub(1, Ordering::SeqCst);
            self.0.evict_to_budget();
        }
    }
}

/// The size a version is charged: the node and what its arrays hold on the
/// heap (not the heap data of the keys and values themselves). A branch is
/// also charged its children's slots, which live and die with its versions,
/// as ghosts (a loaded child's version is charged on its own).
pub(crate) fn size_of_version<K, V>(node: &Node<K, V>) -> usize {
    let heap = match &node.body {
        Body::Leaf(leaf) => {
            let spilled =
                |capacity: usize, spilled: bool, item: usize| if spilled { capacity * item } else { 0 };
            spilled(leaf.keys.capacity(), leaf.keys.spilled(), size_of::<K>())
                + spilled(leaf.vals.capacity(), leaf.vals.spilled(), size_of::<V>())
        }
        Body::Branch(branch) => {
            // A child ghost: its slot and the `Arc`'s counts.
            let ghost_slot = size_of::<Slot<K, V>>() + 2 * size_of::<usize>();
            branch.keys.capacity() * size_of::<K>()
                + branch.children.capacity() * size_of::<usize>()
                + branch.children.len() * ghost_slot
        }
    };
    size_of::<State<K, V>>() + 2 * size_of::<usize>() + heap
}

/// True if `slot` holds a loaded version that is stored.
fn is_clean<K, V>(slot: &Slot<K, V>) -> bool {
    // Acquire: pairs with the checkpoint's Release after storing.
    NodeRef::loaded(slot.peek()).is_ok_and(|node| node.meta.stored.load(Ordering::Acquire) != 0)
}
