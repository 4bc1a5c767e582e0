//! Striped counters: counts that many threads bump without sharing a cache
//! line, summed on read.
//!
//! A single atomic bumped by every insert would put one cache line in every
//! writer's path and serialize writers that touch different buckets. Each
//! thread instead adds to one of several cache-padded stripes (two per core)
//! and readers sum them. A stripe holds `N` related counters side by side, so
//! one operation that updates several touches one line.
//!
//! # Orderings
//!
//! `add` and `sum` are `Relaxed` unless a caller needs more: the entry count,
//! byte counts and statistics publish nothing, and when no update is in
//! flight (the updating threads joined, or synchronized with the reader some
//! other way) a sum is exact. The writer registration of checkpoints needs
//! its deregistration to publish the writer's work to the checkpoint and
//! asks for it (`add_release`, `sum_acquire`; see `epoch.rs`).

use crossbeam_utils::CachePadded;

use super::sync::{AtomicIsize, Ordering, stripes, thread_index};

pub(crate) struct Striped<const N: usize> {
    stripes: Box<[CachePadded<[AtomicIsize; N]>]>,
}

impl<const N: usize> Striped<N> {
    pub(crate) fn new() -> Self {
        let stripes = (0..stripes()).map(|_| CachePadded::new(std::array::from_fn(|_| AtomicIsize::new(0))));
        Striped { stripes: stripes.collect() }
    }

    /// This thread's stripe (a power-of-two count makes the index a mask).
    #[inline]
    fn mine(&self) -> &[AtomicIsize; N] {
        &self.stripes[thread_index() & (self.stripes.len() - 1)]
    }

    #[inline]
    pub(crate) fn add(&self, counter: usize, delta: isize) {
        if delta != 0 {
            self.mine()[counter].fetch_add(delta, Ordering::Relaxed);
        }
    }

    pub(crate) fn add_release(&self, counter: usize, delta: isize) {
        self.mine()[counter].fetch_add(delta, Ordering::Release);
    }

    pub(crate) fn sum(&self, counter: usize) -> isize {
        self.stripes.iter().map(|s| s[counter].load(Ordering::Relaxed)).sum()
    }

    pub(crate) fn sum_acquire(&self, counter: usize) -> isize {
        self.stripes.iter().map(|s| s[counter].load(Ordering::Acquire)).sum()
    }

    /// Sums a counter and subtracts what it read, leaving it at zero if no
    /// update raced (racing updates stay counted for the next `take`).
    pub(crate) fn take(&self, counter: usize) -> isize {
        self.stripes
            .iter()
            .map(|s| {
                let value = s[counter].load(Ordering::Relaxed);
                s[counter].fetch_sub(value, Ordering::Relaxed);
                value
            })
            .sum()
    }
}
