//! Free space of a file store: which byte ranges below the end of the used
//! region hold no record, and where a new record goes.
//!
//! # Invariants
//!
//! - Extents are disjoint, non-empty, aligned to [`ALIGN`] at both ends,
//!   and never adjacent (freeing coalesces with both neighbours), all
//!   below `end`. An extent never reaches `end`: freeing the last extent
//!   lowers `end` instead.
//! - `by_size` holds exactly the `(len, offset)` of every extent in
//!   `by_offset`; `free_bytes` is their sum.
//!
//! Allocation is best fit (the smallest extent that holds the record, the
//! lowest such), else the end grows: reused holes stay small, and a
//! checkpoint that finds no hole writes at the end, sequentially.

use std::collections::{BTreeMap, BTreeSet};

/// About the memory a `BTreeMap` or `BTreeSet` of `len` entries of `entry`
/// bytes takes: its nodes hold 11 entries and are half to wholly full, and
/// each has a few words of header.
pub(crate) fn btree_bytes(len: usize, entry: usize) -> usize {
    len * (entry * 3 / 2 + 4)
}

/// Records start and end on multiples of this.
pub(crate) const ALIGN: u64 = 16;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Space {
    by_offset: BTreeMap<u64, u64>,
    by_size: BTreeSet<(u64, u64)>,
    end: u64,
    free_bytes: u64,
}

impl Space {
    /// Nothing free below `end`.
    pub(crate) fn new(end: u64) -> Space {
        Space { end, ..Space::default() }
    }

    /// `extents` free below `end` (as a free list stores them: in offset
    /// order, disjoint, aligned; checked by the caller).
    pub(crate) fn with_free(end: u64, extents: impl IntoIterator<Item = (u64, u64)>) -> Space {
        let mut space = Space::new(end);
        for (offset, len) in extents {
            space.insert(offset, len);
        }
        space
    }

    /// Where used space ends: everything at or past it is free.
    pub(crate) fn end(&self) -> u64 {
        self.end
    }

    /// Bytes free below [`end`](Space::end).
    pub(crate) fn free_bytes(&self) -> u64 {
        self.free_bytes
    }

    /// Free extents below the end, `(offset, len)` in offset order.
    pub(crate) fn extents(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.by_offset.iter().map(|(&offset, &len)| (offset, len))
    }

    /// Number of free extents.
    pub(crate) fn len(&self) -> usize {
        self.by_offset.len()
    }

    /// About the memory the map takes (both indexes).
    pub(crate) fn memory_bytes(&self) -> usize {
        btree_bytes(self.by_offset.len(), size_of::<(u64, u64)>())
            + btree_bytes(self.by_size.len(), size_of::<(u64, u64)>())
    }

    /// Takes `len` bytes (a multiple of [`ALIGN`]) and returns their offset.
    pub(crate) fn alloc(&mut self, len: u64) -> u64 {
        debug_assert!(len > 0 && len.is_multiple_of(ALIGN));
        let Some(&(have, offset)) = self.by_size.range((len, 0)..).next() else {
            let offset = self.end;
            self.end += len;
            return offset;
        };
        self.remove(offset, have);
        if have > len {
            self.insert(offset + len, have - len);
        }
        offset
    }

    /// Returns `[offset, offset + len)` to the free space. It must be in
    /// use: an overlap with free space is refused with a description (a
    /// double free would hand one range to two records).
    pub(crate) fn free(&mut self, offset: u64, len: u64) -> Result<(), String> {
        if len == 0 || !offset.is_multiple_of(ALIGN) || !len.is_multiple_of(ALIGN) {
            return Err(format!("freeing a misaligned range of {len} bytes at offset {offset}"));
        }
        let Some(stop) = offset.checked_add(len).filter(|&stop| stop <= self.end) else {
            return Err(format!(
                "freeing {len} bytes at offset {offset}, past the end of used space ({})",
                self.end
            ));
        };
        let before = self.by_offset.range(..stop).next_back().map(|(&o, &l)| (o, l));
        if let Some((o, l)) = before
            && o + l > offset
        {
            return Err(format!(
                "freeing {len} bytes at offset {offset}, which overlap a free extent at {o}"
            ));
        }
        let (mut start, mut stop) = (offset, stop);
        if let Some((o, l)) = before
            && o + l == start
        {
            self.remove(o, l);
            start = o;
        }
        if let Some(&l) = self.by_offset.get(&stop) {
            self.remove(stop, l);
            stop += l;
        }
        if stop == self.end {
            self.end = start;
        } else {
            self.insert(start, stop - start);
        }
        Ok(())
    }

    fn insert(&mut self, offset: u64, len: u64) {
        self.by_offset.insert(offset, len);
        self.by_size.insert((len, offset));
        self.free_bytes += len;
    }

    fn remove(&mut self, offset: u64, len: u64) {
        self.by_offset.remove(&offset);
        self.by_size.remove(&(len, offset));
        self.free_bytes -= len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The invariants at the top of the file, checked from outside.
    fn check(space: &Space) {
        let mut last_stop = None;
        let mut sum = 0;
        for (offset, len) in space.extents() {
            assert!(len > 0 && offset.is_multiple_of(ALIGN) && len.is_multiple_of(ALIGN));
            assert!(last_stop.is_none_or(|stop| stop < offset), "adjacent or overlapping extents");
            assert!(offset + len < space.end(), "an extent reaching the end");
            assert!(space.by_size.contains(&(len, offset)));
            last_stop = Some(offset + len);
            sum += len;
        }
        assert_eq!(space.by_size.len(), space.len());
        assert_eq!(sum, space.free_bytes());
    }

    #[test]
    fn best_fit_then_the_end() {
        let mut space = Space::new(0);
        let a = space.alloc(32);
        let b = space.alloc(64);
        let c = space.alloc(16);
        let d = space.alloc(48);
        assert_eq!((a, b, c, d), (0, 32, 96, 112));
        space.free(b, 64).unwrap();
        space.free(d, 48).unwrap(); // at the end: the end comes down
        assert_eq!(space.end(), 112);
        assert_eq!(space.alloc(16), 32); // the only hole
        assert_eq!(space.alloc(64), 112); // no hole left that holds 64
        check(&space);
    }

    #[test]
    fn double_frees_are_refused() {
        let mut space = Space::new(0);
        let a = space.alloc(64);
        space.alloc(16);
        space.free(a, 64).unwrap();
        assert!(space.free(a, 64).is_err());
        assert!(space.free(a + 16, 16).is_err());
        assert!(space.free(1000, 16).is_err());
        check(&space);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: if cfg!(miri) { 1 } else { 256 }, ..ProptestConfig::default() })]
        /// Against a model: every allocation is disjoint from every other
        /// live one, and freeing everything leaves nothing in use.
        #[test]
        fn allocations_never_overlap(ops in proptest::collection::vec((0u8..3, 1u64..20), 1..300)) {
            let mut space = Space::new(0);
            let mut live: Vec<(u64, u64)> = Vec::new();
            for (op, units) in ops {
                if op == 0 && !live.is_empty() {
                    let (offset, len) = live.swap_remove(units as usize % live.len());
                    space.free(offset, len).unwrap();
                } else {
                    let len = units * ALIGN;
                    let offset = space.alloc(len);
                    for &(o, l) in &live {
                        prop_assert!(offset + len <= o || o + l <= offset, "overlap");
                    }
                    live.push((offset, len));
                }
                check(&space);
                let used: u64 = live.iter().map(|&(_, l)| l).sum();
                prop_assert_eq!(used + space.free_bytes(), space.end());
            }
            for (offset, len) in live.drain(..) {
                space.free(offset, len).unwrap();
            }
            prop_assert_eq!(space.end(), 0);
            prop_assert_eq!(space.len(), 0);
        }
    }
}
