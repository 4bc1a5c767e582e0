//! The leaves at the two ends of the tree, remembered: where pops, the
//! first and last entries and appends (a key at or above the last leaf's
//! `low`) start, instead of a descent from the root. A queue, a log or a
//! table keyed by time writes only there (PostgreSQL's insert fastpath
//! remembers its rightmost leaf the same way).
//!
//! # Invariant
//!
//! A slot holding a loaded leaf whose `low` (`high`) is minus (plus)
//! infinity is the leftmost (rightmost) leaf of the tree at that moment. A
//! node with no left neighbour is never merged away (merges take the right
//! node of a pair) and keeps its slot unless it is detached, and a detached
//! slot is a ghost for good (`slot.rs`); the rightmost leaf stops being so
//! only by a split, which bounds its version, or by being merged, which
//! freezes it. So a hint is only ever checked, never trusted: a stale one
//! costs a descent, after which the hint is set to what it found. Using a
//! checked hint is the same as a descent that ended there: both hand a
//! version that was current when read to a compare-and-swap from it.

use std::borrow::Borrow;
use std::sync::Arc;

use super::search::Seek;
use super::slot::{NodeRef, Slot};
use super::sync::{AtomicArc, HintFlag, Ordering, Snapshot};

pub(crate) struct Ends<K, V> {
    first: AtomicArc<Slot<K, V>>,
    last: AtomicArc<Slot<K, V>>,
    /// Writes by key are landing in the last leaf: worth checking its hint.
    /// Set when a descent by key ends there, cleared when a check by key
    /// fails, each only if it changes, so random writes only read it
    /// instead of making two guarded loads each.
    appending: HintFlag,
}

impl<K, V> Ends<K, V> {
    /// Hints at `root` (the only leaf of a new tree; otherwise a guess that
    /// fails its check and is replaced).
    pub(crate) fn new(root: &Arc<Slot<K, V>>) -> Self {
        Ends {
            first: AtomicArc::new(Arc::clone(root)),
            last: AtomicArc::new(Arc::clone(root)),
            appending: HintFlag::new(true),
        }
    }

    /// The end leaf that `to` lies in, if a hint still leads to it: the
    /// first leaf for `First`, the last for `Last` and for a key at or
    /// above the last leaf's `low`.
    #[inline]
    #[allow(clippy::type_complexity)]
    pub(crate) fn find<Q: Ord + ?Sized>(
        &self,
        to: Seek<'_, Q>,
    ) -> Option<(Snapshot<Slot<K, V>>, NodeRef<K, V>)>
    where
        K: Borrow<Q>,
    {
        let (cell, first) = match to {
            Seek::First => (&self.first, true),
            Seek::Last => (&self.last, false),
            // Relaxed here and below: whether to look at a hint, which is
            // checked anyway; any value is right.
            Seek::Key(_) if self.appending.load(Ordering::Relaxed) => (&self.last, false),
            Seek::Key(_) | Seek::Before(_) => return None,
        };
        // Looked at without a prefetch or a touch: a write by key that is
        // not an append fails the check, and must not fetch a kilobyte of
        // leaf it will not read, nor keep that leaf warm.
        let slot = cell.load();
        let node = slot.peek()?;
        let end = if first { &node.low } else { &node.high };
        let covers = match (to, &node.low) {
            (Seek::Key(key), Some(low)) => key >= low.borrow(),
            _ => true,
        };
        if node.level() != 0 || end.is_some() || !covers {
            if matches!(to, Seek::Key(_)) {
                self.appending.store(false, Ordering::Relaxed);
            }
            return None;
        }
        slot.touch();
        node.prefetch();
        Some((slot, node))
    }

    /// Remembers `slot`, whose version `node` a descent to `to` just found,
    /// if it is an end leaf that its hint does not lead to.
    #[inline]
    pub(crate) fn note<Q: ?Sized>(&self, slot: &Arc<Slot<K, V>>, node: &NodeRef<K, V>, to: Seek<'_, Q>) {
        if node.level() != 0 {
            return;
        }
        if matches!(to, Seek::Key(_)) && node.high.is_none() && !self.appending.load(Ordering::Relaxed) {
            self.appending.store(true, Ordering::Relaxed);
        }
        for (cell, end) in [(&self.first, &node.low), (&self.last, &node.high)] {
            if end.is_none() && !cell.holds(slot) {
                cell.store(Arc::clone(slot));
            }
        }
    }
}
