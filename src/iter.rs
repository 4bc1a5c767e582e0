//! Range iteration, well defined under concurrent writes.
//!
//! # Guarantees
//!
//! While other threads write, an iterator still yields keys strictly
//! ascending from the front (descending from the back), never twice, and
//! yields every key that is in range and present for the whole iteration,
//! with one of the values it had meanwhile. Keys inserted or removed during
//! the iteration may or may not appear.
//!
//! # How
//!
//! Each end holds one immutable leaf version (an `Arc`, so the iterator is
//! `Send` and holds no guard between calls) and a position in it.
//!
//! - **Forward**, a used-up leaf is left through its right link and the
//!   *current* version of that slot is read. The slot's `low` is the `high`
//!   of the version just read, and a slot's range only loses keys to new
//!   slots on its right, so every key present since the start is in that
//!   version or further right.
//! - **Backward** there are no left links: a used-up leaf with range
//!   `[low, ..)` is left by a fresh descent to the leaf holding the keys just
//!   below `low`. That leaf's current version holds every present key in
//!   `[its low, low)`.
//!
//! Both ends stop where they meet: each end yields only keys the other end
//! has not passed. What an end has passed is known from its cursor alone
//! (up to the last key it yielded from its leaf, or up to the leaf's bound
//! before the first), so it holds after an `Err` too: an error leaves the
//! cursor where it was, and the next call retries from there.

use std::iter::FusedIterator;
use std::ops::Bound;

use crate::Error;
use crate::engine::search::Seek;
use crate::engine::slot::NodeArc;
use crate::engine::tree::{Tree, leaf_of};

/// One end of a range: a leaf version and a position in it.
type Cursor<K, V> = (NodeArc<K, V>, usize);

/// An iterator over a key range of a [`BTree`](crate::BTree), in both
/// directions. Made by [`BTree::range`](crate::BTree::range) and
/// [`BTree::iter`](crate::BTree::iter).
///
/// Items are `Result`s: reaching the next leaf may need a load that fails.
/// An `Err` consumes nothing: the next call, from either end, goes on from
/// where that end stood, and over the whole iteration each key is still
/// yielded at most once (and every key present throughout exactly once).
pub struct Range<'a, K, V> {
    tree: &'a Tree<K, V>,
    start: Bound<K>,
    end: Bound<K>,
    /// The front leaf and the index of the next entry to yield; entries
    /// before it were passed (see `front_passed`).
    front: Option<Cursor<K, V>>,
    /// The back leaf and the index of the last entry yielded; entries before
    /// it are still to come (see `back_passed`).
    back: Option<Cursor<K, V>>,
    /// Where the front entered its leaf, when that is not the leaf's `low`:
    /// the right link it followed led to a detached slot whose node the
    /// leaf it found had absorbed since (a merge), so everything below the
    /// link's target was passed, and the leaf's keys below it are skipped.
    /// Cleared by the front's first yield from the leaf.
    front_entered: Option<K>,
    /// Where the back entered its leaf, when that is not the leaf's `high`:
    /// it came from a leaf that the one it found has absorbed since (a
    /// merge), so the keys from there up were passed, not the leaf's own.
    /// Cleared by the back's first yield from the leaf.
    back_entered: Option<K>,
    done: bool,
    /// Read every ghost leaf met moving right through the cache, whatever
    /// the budget (for the loom models).
    always_through: bool,
}

impl<'a, K: Ord + Clone, V: Clone> Range<'a, K, V> {
    pub(crate) fn new(tree: &'a Tree<K, V>, start: Bound<K>, end: Bound<K>) -> Self {
        // An empty or inverted range yields nothing (std's `range` panics on
        // an inverted one; ZODB returns nothing, and so do we).
        let done = match (&start, &end) {
            (Bound::Included(s), Bound::Included(e)) => s > e,
            (Bound::Included(s) | Bound::Excluded(s), Bound::Included(e) | Bound::Excluded(e)) => s >= e,
            _ => false,
        };
        Range {
            tree,
            start,
            end,
            front: None,
            front_entered: None,
            back: None,
            back_entered: None,
            done,
            always_through: false,
        }
    }

    /// This range, reading through every ghost leaf it meets moving right.
    #[cfg(loom)]
    pub(crate) fn always_through(self) -> Self {
        Range { always_through: true, ..self }
    }

    /// True if the front has passed `key`: yielded it if it was present in
    /// range, or left it behind. Up to the last key yielded from the front
    /// leaf, or, before the first, every key below that leaf's `low` (the
    /// front came through its left neighbour, or started in it).
    ///
    /// Known from the cursor alone, whatever it holds: a cursor parked in
    /// a leaf it has yielded nothing from (an empty one, left by a failed
    /// load) still stops the other end where this one got to.
    fn front_passed(&self, key: &K) -> bool {
        let Some((leaf, index)) = &self.front else { return false };
        if let Some(entered) = &self.front_entered {
            return key < entered;
        }
        match index.checked_sub(1) {
            Some(last) => key <= &leaf_of(leaf).keys[last],
            None => leaf.low.as_ref().is_some_and(|low| key < low),
        }
    }

    /// True if the back has passed `key`: from the last key yielded from
    /// the back leaf, or, before the first, every key at or above that
    /// leaf's `high`.
    fn back_passed(&self, key: &K) -> bool {
        let Some((leaf, index)) = &self.back else { return false };
        if let Some(entered) = &self.back_entered {
            return key >= entered;
        }
        match leaf_of(leaf).keys.get(*index) {
            Some(last) => key >= last,
            None => leaf.high.as_ref().is_some_and(|high| key >= high),
        }
    }

    fn before_end(&self, key: &K) -> bool {
        let in_range = match &self.end {
            Bound::Included(end) => key <= end,
            Bound::Excluded(end) => key < end,
            Bound::Unbounded => true,
        };
        in_range && !self.back_passed(key)
    }

    fn after_start(&self, key: &K) -> bool {
        let in_range = match &self.start {
            Bound::Included(start) => key >= start,
            Bound::Excluded(start) => key > start,
            Bound::Unbounded => true,
        };
        in_range && !self.front_passed(key)
    }

    /// The front's next position: the first leaf, or the right neighbour of
    /// a used-up leaf. `None` when nothing can lie beyond.
    #[allow(clippy::type_complexity)]
    fn next_front(&self) -> Result<Option<(Cursor<K, V>, Option<K>)>, Error> {
        let Some((leaf, _)) = &self.front else {
            let (start, inclusive) = match &self.start {
                Bound::Unbounded => return Ok(Some(((self.tree.seek(Seek::First)?.into_arc(), 0), None))),
                Bound::Included(start) => (start, true),
                Bound::Excluded(start) => (start, false),
            };
            let leaf = self.tree.scan_seek(Seek::Key(start), self.always_through)?;
            let at = leaf_of(&leaf).keys.partition_point(|k| if inclusive { k < start } else { k <= start });
            return Ok(Some(((leaf, at), None)));
        };
        let (Some(high), Some(right)) = (&leaf.high, &leaf.right) else {
            return Ok(None);
        };
        if !self.before_end(high) {
            return Ok(None);
        }
        // A frozen slot (being merged away, or retired) gives its last
        // version, which holds every key its range held when it froze. A
        // detached one gives the live node where its range starts, which
        // may begin further left, if a merge absorbed the node there.
        let next = self.tree.scan_version(right, self.always_through)?;
        if next.low.as_ref() == Some(high) {
            return Ok(Some(((next, 0), None)));
        }
        let at = leaf_of(&next).keys.partition_point(|k| k < high);
        Ok(Some(((next, at), Some(high.clone()))))
    }

    /// The back's next position: the last leaf, or the leaf left of a
    /// used-up one, and where it entered it if not at the leaf's `high`
    /// (see `back_entered`). `None` when nothing can lie before.
    #[allow(clippy::type_complexity)]
    fn next_back_leaf(&self) -> Result<Option<(Cursor<K, V>, Option<K>)>, Error> {
        let (seek, bound) = match &self.back {
            None => match &self.end {
                Bound::Unbounded => (Seek::Last, None),
                Bound::Included(end) => (Seek::Key(end), Some(Bound::Included(end))),
                Bound::Excluded(end) => (Seek::Before(end), Some(Bound::Excluded(end))),
            },
            Some((leaf, _)) => {
                let Some(low) = &leaf.low else {
                    return Ok(None);
                };
                let start_below = match &self.start {
                    Bound::Included(start) | Bound::Excluded(start) => start < low,
                    Bound::Unbounded => true,
                };
                // The front has passed every key below `low` if it passed
                // the greatest one (`front_passed` covers a prefix).
                let front_passed_below = match (&self.front, &self.front_entered) {
                    (_, Some(entered)) => low <= entered,
                    (Some((front, index)), None) if *index >= 1 => &leaf_of(front).keys[index - 1] >= low,
                    (Some((front, _)), None) => front.low.as_ref().is_some_and(|front_low| low <= front_low),
                    (None, None) => false,
                };
                if !start_below || front_passed_below {
                    // No key left of `low` is after the start and not yet
                    // passed by the front.
                    return Ok(None);
                }
                (Seek::Before(low), Some(Bound::Excluded(low)))
            }
        };
        let leaf = self.tree.scan_seek(seek, self.always_through)?;
        let keys = &leaf_of(&leaf).keys;
        let at = match bound {
            None => keys.len(),
            Some(Bound::Included(end)) => keys.partition_point(|k| k <= end),
            Some(Bound::Excluded(end)) => keys.partition_point(|k| k < end),
            Some(Bound::Unbounded) => keys.len(),
        };
        // Stepping left from `low`: the leaf found ends there, unless it
        // absorbed the one just left.
        let entered = match (&self.back, &leaf.high) {
            (Some((old, _)), high) if high.as_ref() != old.low.as_ref() => old.low.clone(),
            _ => None,
        };
        Ok(Some(((leaf, at), entered)))
    }
}

impl<K: Ord + Clone, V: Clone> Iterator for Range<'_, K, V> {
    type Item = Result<(K, V), Error>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            if let Some((leaf, index)) = &self.front {
                let leaf_body = leaf_of(leaf);
                if let Some(key) = leaf_body.keys.get(*index) {
                    if !self.before_end(key) {
                        break;
                    }
                    let entry = (key.clone(), leaf_body.vals[*index].clone());
                    if let Some((_, index)) = &mut self.front {
                        *index += 1;
                    }
                    self.front_entered = None;
                    return Some(Ok(entry));
                }
            }
            match self.next_front() {
                Ok(Some((front, entered))) => (self.front, self.front_entered) = (Some(front), entered),
                Ok(None) => break,
                Err(error) => return Some(Err(error)),
            }
        }
        self.done = true;
        None
    }
}

impl<K: Ord + Clone, V: Clone> DoubleEndedIterator for Range<'_, K, V> {
    fn next_back(&mut self) -> Option<Self::Item> {
        while !self.done {
            if let Some((leaf, index)) = &self.back
                && let Some(i) = index.checked_sub(1)
            {
                let leaf_body = leaf_of(leaf);
                let key = &leaf_body.keys[i];
                if !self.after_start(key) {
                    break;
                }
                let entry = (key.clone(), leaf_body.vals[i].clone());
                if let Some((_, index)) = &mut self.back {
                    *index = i;
                }
                self.back_entered = None;
                return Some(Ok(entry));
            }
            match self.next_back_leaf() {
                Ok(Some((back, entered))) => (self.back, self.back_entered) = (Some(back), entered),
                Ok(None) => break,
                Err(error) => return Some(Err(error)),
            }
        }
        self.done = true;
        None
    }
}

impl<K: Ord + Clone, V: Clone> FusedIterator for Range<'_, K, V> {}
