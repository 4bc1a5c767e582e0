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
//! `SeqCst` and asks for it (`add_seq_cst`, `sum_seq_cst`; see
//! `checkpoint.rs`).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;

pub(crate) struct Striped<const N: usize> {
    stripes: Box<[CachePadded<[AtomicIsize; N]>]>,
}

impl<const N: usize> Striped<N> {
    pub(crate) fn new() -> Self {
        static STRIPES: OnceLock<usize> = OnceLock::new();
        let count = *STRIPES.get_or_init(|| {
            let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
            (cores * 2).next_power_of_two().min(64)
        });
        let stripes = (0..count).map(|_| CachePadded::new(std::array::from_fn(|_| AtomicIsize::new(0))));
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

    pub(crate) fn add_seq_cst(&self, counter: usize, delta: isize) {
        self.mine()[counter].fetch_add(delta, Ordering::SeqCst);
    }

    pub(crate) fn sum(&self, counter: usize) -> isize {
        self.stripes.iter().map(|s| s[counter].load(Ordering::Relaxed)).sum()
    }

    pub(crate) fn sum_seq_cst(&self, counter: usize) -> isize {
        self.stripes.iter().map(|s| s[counter].load(Ordering::SeqCst)).sum()
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

/// A small number that differs between threads that run at the same time.
fn thread_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        // Relaxed: only uniqueness matters, which the RMW gives.
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    INDEX.with(|index| *index)
}
