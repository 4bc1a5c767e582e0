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
//! # Choosing what to evict (LeanStore's cooling, sampled)
//!
//! When resident bytes exceed the budget, the thread that just loaded a node
//! samples loaded leaves by random descents and marks clean ones *cooling*,
//! queueing them. Any access to a cooling slot clears the mark (the slot's
//! flag sits on the cache line the access reads anyway, and is written only
//! when set, so hot reads write nothing shared). Leaves still cooling when
//! they reach the head of the queue were not touched since they were picked:
//! they become ghosts by a swap from the exact version that was checked
//! clean, so a write that slipped in makes the swap fail harmlessly.
//!
//! A long scan touches each of its leaves once, so they cool and go, while a
//! hot set keeps getting un-cooled by its readers and stays: unlike strict
//! LRU (ZODB's pickle cache), one scan cannot flush the hot set.
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

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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

/// Leaves wait in the cooling queue until it is this deep: the time a leaf
/// has to prove itself hot by being touched.
const COOLING_DEPTH: usize = 64;
/// Eviction rounds one thread does per call, at most: bounds what a reader
/// pays for the others (the per-thread slack over the budget), also when
/// nothing is evictable (all dirty: a checkpoint will follow).
const ROUNDS_PER_CALL: usize = 16;
/// Random descents per round.
const SAMPLES_PER_ROUND: usize = 4;

impl<K: Ord + Clone, V: Clone> Tree<K, V> {
    /// Evicts cold clean leaves while resident bytes exceed the budget.
    /// Called by a thread that just loaded a node, and by writers.
    pub(crate) fn evict_if_over_budget(&self) {
        let (Some(persist), Some(account)) = (&self.persist, self.account()) else { return };
        if account.resident() <= account.budget() {
            return;
        }
        // One evictor at a time; the others go on with their work.
        let Ok(mut cooling) = persist.cooling.try_lock() else { return };
        for _ in 0..ROUNDS_PER_CALL {
            if account.resident() <= account.budget() {
                break;
            }
            let mut sampled = 0;
            for _ in 0..SAMPLES_PER_ROUND {
                let Some(leaf) = self.sample_clean_leaf() else { continue };
                // Relaxed: a hint; a race only picks a leaf a reader touched.
                if !leaf.cooling.swap(true, Ordering::Relaxed) {
                    cooling.push_back(leaf);
                    sampled += 1;
                }
            }
            // Give queued leaves time to be touched, unless sampling finds no
            // more candidates.
            if cooling.len() < COOLING_DEPTH && sampled > 0 {
                continue;
            }
            let Some(leaf) = cooling.pop_front() else { break };
            if leaf.cooling.swap(false, Ordering::Relaxed) && self.evict(&leaf) {
                Counters::bump(&persist.counters.evictions);
            }
        }
    }

    /// A clean loaded leaf reached by a random descent through loaded
    /// nodes, or `None` if the descent met only ghosts or a dirty leaf.
    fn sample_clean_leaf(&self) -> Option<Arc<Slot<K, V>>> {
        let mut slot = self.root();
        loop {
            let node = NodeRef::loaded(slot.peek()).ok()?;
            let Body::Branch(branch) = &node.body else {
                // Acquire: pairs with the checkpoint's Release after storing.
                return (node.meta.stored.load(Ordering::Acquire) != 0).then_some(slot);
            };
            let children = &branch.children;
            let loaded = (0..SAMPLES_PER_ROUND)
                .map(|_| &children[random_below(children.len())])
                .find(|child| matches!(&*child.peek() as &State<K, V>, State::Loaded(_)))?;
            let next = Arc::clone(loaded);
            drop(node);
            slot = next;
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
        let ghost = Ghost {
            address: Address(stored),
            level: 0,
            low: node.low.clone(),
            high: node.high.clone(),
            right: GhostRight::Known(node.right.clone()),
        };
        slot.swap_state(node.state(), Arc::new(State::Ghost(ghost)))
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

/// A cheap per-thread random number below `n` (xorshift).
fn random_below(n: usize) -> usize {
    thread_local! {
        static STATE: Cell<u64> = const { Cell::new(0x9e37_79b9_7f4a_7c15) };
    }
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        (x % n as u64) as usize
    })
}
