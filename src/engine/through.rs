//! Reading through the cache: a point read that meets a ghost leaf while
//! the cache is full looks its key up in the leaf's record, without
//! loading the node; a scan decodes the leaf's record into a version of
//! its own.
//!
//! # Why
//!
//! A load decodes every entry of the node, allocates it, swaps it into its
//! slot, and makes the clock evict another node: several times the cost of
//! the store read itself. When reads spread over many more leaves than the
//! budget holds (uniform reads of a tree ten times the budget), most loaded
//! leaves are evicted before anyone reads them again, and that work buys
//! nothing. A lookup in the record costs the store read, the checksum and a
//! binary search (`format::search_leaf`).
//!
//! # When
//!
//! Only when resident bytes are at the budget (below it there is room: the
//! leaf is loaded and stays), and only for a leaf not read through often
//! lately. A read through notes in the slot the window of store reads it
//! happened in; the third read of a run in which each came in the window
//! of the one before or the next is loaded, as a leaf read that often
//! should be (2Q's rule of admitting on a later touch within a while). A
//! window is about half as many store reads as the budget holds nodes of
//! 1 KiB, so a hot set the budget can hold still ends up resident, and a
//! scan or a uniform spread does not churn it.
//!
//! Why the third read and not the second: under reads spread uniformly
//! over `N` leaves with room for `C`, a leaf is read again within a span
//! of `C` store reads with a chance of about `C / N`. Whatever is admitted,
//! the hit rate stays `C / N` (a leaf loaded lives as long as the cache
//! takes to turn over, and is read as often as any other), so every load
//! beyond what keeps the cache full is work for nothing. Admitting on the
//! second read loaded on a tenth of the misses of a tree ten times its
//! budget; on the third, a hundredth (`docs/benchmarks.md`), while a hot
//! leaf, read many times per span, gets in after one more read.
//!
//! # Scans
//!
//! A scan of a tree larger than the budget that loaded every leaf would
//! evict the whole cache, a leaf at a time, for leaves it reads once (and
//! over glibc, the versions it frees were allocated by other threads, whose
//! arenas keep the pages until a trim). So the same rule applies to the leaves an iterator reaches
//! through right links: a ghost leaf not read through lately is decoded
//! into a version no slot holds ([`NodeArc::unshared`]), charged to the
//! account while the iterator holds it, and dropped when it moves on. It is
//! the version the slot stood for when its record was read (a ghost is
//! clean), which is all `iter.rs` asks of a leaf reached by a right link.
//! Its right link is the description's, for a leaf evicted in place, or,
//! for a child ghost, found as a load finds it, after the slot's lock is
//! let go; if the parent no longer has the record's bounds around the slot
//! (it split or merged since), the iterator reads the slot as usual.
//! The leaves iterators reach by descents (where a range starts or ends,
//! and every step left) are read the same way when the descent ends at a
//! ghost leaf (`scan_seek`): a version read from a slot the parent's
//! current version leads to is the version a descent would have found
//! then, unless the node split since and the target lies right of it, and
//! then the iterator descends as usual. The two ends of the tree come by
//! their hints, which load.
//!
//! # Invariant
//!
//! The record is read under the slot's lock while the slot is a ghost
//! (`Slot::with_record`). A ghost stops being one only by a load, which
//! starts under that lock: so until the read ends, the node is not written,
//! no checkpoint supersedes its record, and the record's space is not
//! freed for reuse. Threads that miss on one ghost at once each read its
//! record (one store read per ghost holds for loads, where it saves a
//! decode and a node; a read through builds nothing to share).

use std::borrow::Borrow;
use std::sync::Arc;

use super::search::Seek;
use super::slot::{NodeArc, NodeRef, Slot, Target};
use super::stored::{Counters, Stored};
use super::tree::{Tree, leaf_of};
use crate::Error;

impl<K: Ord + Clone, V: Clone> Tree<K, V> {
    /// `f` of the value of `key`, read through the cache if its leaf is a
    /// ghost worth not loading (module docs).
    pub(crate) fn get_with<Q: Ord + ?Sized, R>(
        &self,
        key: &Q,
        f: impl FnOnce(Option<&V>) -> R,
    ) -> Result<R, Error>
    where
        K: Borrow<Q>,
    {
        self.get_choosing(key, f, Stored::reads_through)
    }

    /// `get_with`, reading through every ghost leaf it meets (for the loom
    /// model, which needs it without filling a budget).
    #[cfg(loom)]
    pub(crate) fn get_through(&self, key: &K) -> Result<Option<V>, Error> {
        self.get_choosing(key, |value| value.cloned(), |_, _| true)
    }

    /// `get_with`, with `through` choosing which ghost leaves are read
    /// through.
    fn get_choosing<Q: Ord + ?Sized, R>(
        &self,
        key: &Q,
        f: impl FnOnce(Option<&V>) -> R,
        through: impl FnOnce(&Stored<K, V>, &Slot<K, V>) -> bool,
    ) -> Result<R, Error>
    where
        K: Borrow<Q>,
    {
        let to = Seek::Key(key);
        let Some(stored) = &self.stored else {
            let leaf = self.seek(to)?;
            return Ok(f(leaf_of(&leaf).get(key)));
        };
        match self.above_leaf(to, |slot| through(stored, slot))? {
            Above::Leaf(leaf) => return Ok(f(leaf_of(&leaf).get(key))),
            Above::Ghost(child) => {
                if let Some(value) = self.read_through(stored, &child, key)? {
                    return Ok(f(value.as_ref()));
                }
            }
            Above::Descend => {}
        }
        // Split and not posted yet, no longer a ghost, or worth loading.
        let leaf = self.seek(to)?;
        Ok(f(leaf_of(&leaf).get(key)))
    }

    /// Where a descent to `to` ends, stopped above the leaf: the leaf if it
    /// is loaded (or the root), else its ghost slot if `through` picks it
    /// (no guard held), else `Descend`: the leaf split and the split is not
    /// posted yet, or it is a ghost to load.
    #[inline]
    fn above_leaf<Q: Ord + ?Sized>(
        &self,
        to: Seek<'_, Q>,
        through: impl FnOnce(&Slot<K, V>) -> bool,
    ) -> Result<Above<K, V>, Error>
    where
        K: Borrow<Q>,
    {
        let parent = self.descend::<false, Q>(to, 1)?.node;
        let Some(branch) = parent.as_branch() else {
            return Ok(Above::Leaf(parent)); // the root is a leaf
        };
        let child = &branch.children[to.child(branch)];
        Ok(match child.loaded() {
            Some(leaf) if !to.is_right_of(&leaf) => Above::Leaf(leaf),
            Some(_) => Above::Descend,
            None if through(child) => Above::Ghost(Arc::clone(child)),
            None => Above::Descend,
        })
    }

    /// The value of `key` from the record of the ghost leaf `slot`, or
    /// `None` if the slot is no longer a ghost leaf or its record does not
    /// cover `key`: the caller descends as usual.
    #[cold]
    fn read_through<Q: Ord + ?Sized>(
        &self,
        stored: &Stored<K, V>,
        slot: &Slot<K, V>,
        key: &Q,
    ) -> Result<Option<Option<V>>, Error>
    where
        K: Borrow<Q>,
    {
        let read = slot.with_record(&stored.ghost, |address, level, _| {
            if level != 0 {
                return Ok(None);
            }
            let found = stored.read_with(address, |record| {
                (stored.codecs.search_leaf)(record, stored.codecs.crc, &mut |k: &K| k.borrow().cmp(key))
            })?;
            Counters::bump(&stored.counters.reads_through);
            found.map_err(|what| Error::Corrupt { address: Some(address), what })
        });
        read.transpose().map(Option::flatten)
    }

    /// A version of the leaf `slot` for an iterator moving right (what
    /// [`Tree::version`] gives), read through the cache if it is a ghost
    /// worth not loading (module docs, "Scans"), or with `always` whatever
    /// the budget.
    pub(crate) fn scan_version(&self, slot: &Arc<Slot<K, V>>, always: bool) -> Result<NodeArc<K, V>, Error> {
        if let Some(node) = slot.loaded() {
            return Ok(node.into_arc());
        }
        if let Some(stored) = &self.stored
            && (always || stored.reads_through(slot))
            && let Some(node) = self.scan_through(stored, slot)?
        {
            return Ok(node);
        }
        self.version(slot)
    }

    /// The leaf a range's end starts in, or an iterator moving left goes to
    /// next (what [`Tree::seek`] finds), its ghost read through as
    /// `scan_version` reads one. The two ends of the tree come by their
    /// hints (`ends.rs`), which are hot.
    pub(crate) fn scan_seek(&self, to: Seek<'_, K>, always: bool) -> Result<NodeArc<K, V>, Error> {
        if let Some(stored) = &self.stored
            && matches!(to, Seek::Key(_) | Seek::Before(_))
        {
            match self.above_leaf(to, |slot| always || stored.reads_through(slot))? {
                Above::Leaf(leaf) => return Ok(leaf.into_arc()),
                // Right of the version read: split since and written back
                // (a node's `low` never changes, so it is never left of it).
                Above::Ghost(child) => {
                    if let Some(leaf) = self.scan_through(stored, &child)?
                        && !to.is_right_of(&leaf)
                    {
                        return Ok(leaf);
                    }
                }
                Above::Descend => {}
            }
        }
        Ok(self.seek(to)?.into_arc())
    }

    /// The version in the record of the ghost leaf `slot`, in no slot;
    /// `None` if the slot is no longer a ghost leaf, or, for a child ghost,
    /// if its parent's separators around it no longer are the record's
    /// bounds (it split or merged since): the caller reads it as usual.
    #[cold]
    fn scan_through(
        &self,
        stored: &Stored<K, V>,
        slot: &Arc<Slot<K, V>>,
    ) -> Result<Option<NodeArc<K, V>>, Error> {
        let read = slot.with_record(&stored.ghost, |address, level, ghost| {
            if level != 0 {
                return Ok(None);
            }
            let target = match ghost {
                Some(ghost) => Target::Described(ghost.clone()),
                None => Target::Child { address, level },
            };
            Self::read_record(stored, &target).map(|decoded| Some((target, decoded)))
        });
        let Some((target, decoded)) = read.transpose()?.flatten() else {
            return Ok(None);
        };
        Counters::bump(&stored.counters.reads_through);
        // After the slot's lock is let go: finding a child ghost's right
        // neighbour descends, and may load.
        Ok(self.build_node(stored, slot, &target, decoded)?.map(NodeArc::unshared))
    }
}

/// Where [`Tree::above_leaf`] stopped.
enum Above<K, V> {
    Leaf(NodeRef<K, V>),
    Ghost(Arc<Slot<K, V>>),
    Descend,
}
