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
use super::sync::{AtomicArc, Snapshot};

pub(crate) struct Ends<K, V> {
    first: AtomicArc<Slot<K, V>>,
    last: AtomicArc<Slot<K, V>>,
}

impl<K, V> Ends<K, V> {
    /// Hints at `root` (the only leaf of a new tree; otherwise a guess that
    /// fails its check and is replaced).
    pub(crate) fn new(root: &Arc<Slot<K, V>>) -> Self {
        Ends { first: AtomicArc::new(Arc::clone(root)), last: AtomicArc::new(Arc::clone(root)) }
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
            Seek::Last | Seek::Key(_) => (&self.last, false),
            Seek::Before(_) => return None,
        };
        let slot = cell.load();
        let node = slot.loaded()?;
        let end = if first { &node.low } else { &node.high };
        let covers = match (to, &node.low) {
            (Seek::Key(key), Some(low)) => key >= low.borrow(),
            _ => true,
        };
        (node.level() == 0 && end.is_none() && covers).then_some((slot, node))
    }

    /// Remembers `slot`, whose version `node` a descent just found, if it is
    /// an end leaf that its hint does not lead to.
    #[inline]
    pub(crate) fn note(&self, slot: &Arc<Slot<K, V>>, node: &NodeRef<K, V>) {
        if node.level() != 0 {
            return;
        }
        for (cell, end) in [(&self.first, &node.low), (&self.last, &node.high)] {
            if end.is_none() && !cell.holds(slot) {
                cell.store(Arc::clone(slot));
            }
        }
    }
}
