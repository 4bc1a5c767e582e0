//! Eviction: turning cold clean nodes back into ghosts so a tree over a
//! store stays within its memory budget. A clock with a cooling mark; it
//! knows slots and the account, not the tree.
//!
//! # Choosing what to evict
//!
//! Nodes enter a FIFO when they become clean and resident: loaded from the
//! store, or stored by a checkpoint ([`Clock::track`]). When resident bytes
//! exceed the budget, the thread that notices turns the clock: it takes the
//! oldest node; an unmarked one is marked *cooling* and goes to the back;
//! one still marked (not touched for a whole turn) becomes a ghost, by a
//! swap from the exact version that was checked clean, so a write that
//! slipped in makes the swap fail harmlessly. Any access to a cooling slot
//! clears the mark (`Slot::loaded`): the flag sits on the cache line every
//! access reads anyway and is written only when set, so hot reads write
//! nothing shared (LeanStore's cooling idea, fed in load order instead of by
//! random sampling, which finds few resident leaves in a large, mostly
//! evicted tree).
//!
//! A long scan touches each of its leaves once: they cool and go after one
//! turn, while a hot set keeps getting un-cooled by its readers and stays.
//! Unlike strict LRU (ZODB's pickle cache), one scan cannot flush the hot
//! set.
//!
//! Branches go through the same clock, so a cold branch goes before a hot
//! leaf. One is evicted when it is clean, has not been descended through
//! for a whole turn, and its children are all ghosts, none split without
//! posting, each at the record its stored image lists (so that image lists
//! exactly these children as they are: a leaf a spill wrote anew leaves its
//! parent's record out of date until the next commit rewrites it). Its children
//! are detached in the same step (`slot.rs`), so the new child slots a
//! reloaded branch makes never coexist with live old ones. A branch with a
//! resident child stays queued; the slot remembers which child it was, so
//! the next check usually reads one child, not all of them. A branch whose
//! record is out of date (`Evicted::Stale`) leaves the queue: the commit that
//! rewrites it queues it again, so the clock does not rescan it each turn.
//!
//! # Invariants
//!
//! - Only clean nodes (stored: their version's record is written) whose
//!   children are all ghosts, at the records that record lists, are
//!   evicted.
//! - A slot is in the queue at most once (`Slot::enqueue`, under the
//!   queue's lock).
//! - No eviction starts while a pause is held ([`Clock::pause`]; `verify`
//!   matches children by slot identity, and a pop's walk checks versions).

use std::collections::VecDeque;
use std::sync::Arc;

use super::account::Account;
use super::os::release_free_memory;
use super::slot::{Evicted, Ghost, Sentinel, Slot};
use super::sync::{AtomicUsize, HintCount, Mutex, Ordering, lock, try_lock};

/// The eviction clock of one tree.
pub(crate) struct Clock<K, V> {
    /// Clean resident nodes, in the order they became so.
    queue: Mutex<VecDeque<Arc<Slot<K, V>>>>,
    /// Callers that need slots to stay put: no eviction while non-zero.
    pauses: AtomicUsize,
    /// Evictions since the allocator was last asked to give free memory
    /// back (`os::release_free_memory`); only decides when (`HintCount`).
    since_release: HintCount,
}

impl<K, V> Clock<K, V> {
    pub(crate) fn new() -> Clock<K, V> {
        Clock {
            queue: Mutex::new(VecDeque::new()),
            pauses: AtomicUsize::new(0),
            since_release: HintCount::new(0),
        }
    }

    /// Queues a node that just became clean and resident (loaded, or stored
    /// by a checkpoint).
    pub(crate) fn track(&self, slot: &Arc<Slot<K, V>>) {
        let mut queue = lock(&self.queue);
        if slot.enqueue() {
            queue.push_back(Arc::clone(slot));
        }
    }

    /// Empties the queue (the tree is being dropped: see `Tree::drop`).
    pub(crate) fn clear(&self) {
        lock(&self.queue).clear();
    }

    /// Stops eviction until [`resume`](Clock::resume), once any turn of the
    /// clock in progress has ended.
    pub(crate) fn pause(&self) {
        // SeqCst: read under the queue's lock by `turn`; the lock taken
        // below waits out a turn that read it before.
        self.pauses.fetch_add(1, Ordering::SeqCst);
        drop(lock(&self.queue));
    }

    pub(crate) fn resume(&self) {
        self.pauses.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<K: PartialEq + Clone, V> Clock<K, V> {
    /// Takes up to `steps` steps of the clock, and at most one per queued
    /// node, while `account` is over its budget. Returns how many nodes it
    /// evicted. One thread turns the clock at a time, for everyone; the
    /// others go on with their work (and never wait here).
    pub(crate) fn turn(&self, steps: usize, account: &'static Account, sentinel: &Sentinel<K, V>) -> u64 {
        if !account.over_budget() {
            return 0;
        }
        let Some(mut queue) = try_lock(&self.queue) else { return 0 };
        // Read under the lock `pause` waits for: no turn that began before a
        // pause evicts anything after it.
        if self.pauses.load(Ordering::SeqCst) != 0 {
            return 0;
        }
        let mut evicted = 0;
        // At most one step per queued node: a node is marked in one call and
        // evicted in a later one, never both at once (a leaf a thread just
        // loaded to write into must survive until its write lands).
        for _ in 0..queue.len().min(steps) {
            if !account.over_budget() {
                break;
            }
            let Some(slot) = queue.pop_front() else { break };
            if slot.peek().is_none_or(|node| node.meta.stored.get().is_none()) {
                slot.dequeued();
                continue; // dirty (queued again once stored) or a ghost already
            }
            // First pass: mark it and give it a turn to be touched. Marked
            // and untouched since: evict.
            if !slot.cool() {
                queue.push_back(slot);
                continue;
            }
            slot.uncool();
            // Queued again while it is evicted: a panic in a key's clone
            // (building its description) leaves it loaded, and in the clock.
            queue.push_back(slot);
            let slot = queue.back().expect("pushed just now");
            match evict(slot, account, sentinel) {
                Evicted::NotYet => {} // a branch whose children are resident
                // `Stale` leaves the queue (under its lock, as `track` is), not
                // looked at again each turn: the commit that rewrites the
                // branch sets its listing, then queues it.
                outcome => {
                    evicted += u64::from(outcome == Evicted::Yes);
                    slot.dequeued();
                    queue.pop_back();
                }
            }
        }
        // What was evicted was often allocated by other threads, whose
        // arenas keep the space (`os.rs`): after a queue's worth of
        // evictions (about a budget's), the allocator gives its free pages
        // back. After an eighth of that, the calls cost 12 % of random reads
        // at 8 threads; after a whole one, nothing measurable.
        let evicted_now = usize::try_from(evicted).unwrap_or(usize::MAX);
        if evicted_now > 0 {
            // Relaxed: a hint (`HintCount`), and only a turn of the clock
            // touches it, under the queue's lock.
            let since = self.since_release.fetch_add(evicted_now, Ordering::Relaxed) + evicted_now;
            if since >= queue.len() + 64 {
                self.since_release.store(0, Ordering::Relaxed);
                drop(queue);
                release_free_memory();
            }
        }
        evicted
    }
}

/// Turns `slot` back into a ghost if it holds a clean node whose children
/// are all ghosts (see `Slot::evict`). The swap is from the version
/// checked, so a write that replaced it meanwhile makes this fail
/// harmlessly.
pub(crate) fn evict<K: PartialEq + Clone, V>(
    slot: &Slot<K, V>,
    account: &'static Account,
    sentinel: &Sentinel<K, V>,
) -> Evicted {
    let Some(node) = slot.peek() else { return Evicted::No };
    let Some(mut address) = node.meta.stored.get() else {
        return Evicted::No; // dirty
    };
    // A branch goes to the record its listing pairs with the children that
    // record lists, read together: `stored` may already say a newer record
    // a commit is marking (`node.rs`, `Listing`).
    let listed = match node.as_branch() {
        None => None,
        Some(_) => match node.meta.listing.get() {
            Some((at, listed)) => {
                address = at;
                Some(listed)
            }
            None => return Evicted::No, // every stored branch has one
        },
    };
    let ghost = || Ghost {
        address,
        level: node.level(),
        low: node.low.clone(),
        high: node.high.clone(),
        right: node.right.clone(),
    };
    slot.evict(&node, listed.as_deref().unwrap_or(&[]), ghost, sentinel, Some(account))
}
