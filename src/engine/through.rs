//! Reading through the cache: a point read that meets a ghost leaf while
//! the cache is full looks its key up in the leaf's record, without
//! loading the node.
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
//! leaf is loaded and stays), and only for a leaf not read through lately.
//! A read through notes in the slot the window of store reads it happened
//! in; a leaf read through again in the same window or the next is loaded,
//! as a leaf read that often should be (2Q's rule: admit on a second touch
//! within a while). A window is about half as many store reads as the
//! budget holds nodes of 1 KiB, so a hot set the budget can hold still
//! ends up resident, and a scan or a uniform spread does not churn it.
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
use super::slot::Slot;
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
        let parent = self.descend::<false, Q>(to, 1)?.node;
        let Some(branch) = parent.as_branch() else {
            return Ok(f(leaf_of(&parent).get(key))); // the root is a leaf
        };
        let child = &branch.children[to.child(branch)];
        if let Some(leaf) = child.loaded() {
            if !to.is_right_of(&leaf) {
                return Ok(f(leaf_of(&leaf).get(key)));
            }
        } else if through(stored, child) {
            let child = Arc::clone(child);
            drop(parent); // no guard across the store read
            if let Some(value) = self.read_through(stored, &child, key)? {
                return Ok(f(value.as_ref()));
            }
        }
        // Split and not posted yet, no longer a ghost, or worth loading.
        let leaf = self.seek(to)?;
        Ok(f(leaf_of(&leaf).get(key)))
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
        let read = slot.with_record(&stored.ghost, |address, level| {
            if level != 0 {
                return Ok(None);
            }
            let found = stored.read_with(address, |record| {
                (stored.codecs.search_leaf)(record, &mut |k: &K| k.borrow().cmp(key))
            })?;
            Counters::bump(&stored.counters.reads_through);
            found.map_err(|what| Error::Corrupt { address: Some(address), what })
        });
        read.transpose().map(Option::flatten)
    }
}
