//! The exact entry count, kept without a hot shared counter.
//!
//! A single atomic counter bumped by every insert and remove would put one
//! cache line in every writer's path and serialize writers that touch
//! different buckets. Instead each thread adds to one of several
//! cache-padded stripes and `len` sums them.
//!
//! # Orderings
//!
//! All `Relaxed`: the count publishes nothing and nobody synchronizes through
//! it. A writer adds after its successful swap, so when no write is in flight
//! (every writer joined, or synchronized with the reader some other way) the
//! sum is exact; during writes it may lag the tree by the writes in flight.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;

pub(crate) struct Length {
    stripes: Box<[CachePadded<AtomicIsize>]>,
}

impl Length {
    pub(crate) fn new(initial: usize) -> Length {
        // Two stripes per core keeps collisions rare; a power of two lets the
        // index be a mask.
        static STRIPES: OnceLock<usize> = OnceLock::new();
        let count = *STRIPES.get_or_init(|| {
            let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
            (cores * 2).next_power_of_two().min(64)
        });
        let stripes: Box<[_]> = (0..count).map(|_| CachePadded::new(AtomicIsize::new(0))).collect();
        stripes[0].store(isize::try_from(initial).unwrap_or(isize::MAX), Ordering::Relaxed);
        Length { stripes }
    }

    #[inline]
    pub(crate) fn add(&self, delta: isize) {
        if delta != 0 {
            let stripe = &self.stripes[thread_index() & (self.stripes.len() - 1)];
            stripe.fetch_add(delta, Ordering::Relaxed);
        }
    }

    pub(crate) fn get(&self) -> usize {
        let sum: isize = self.stripes.iter().map(|s| s.load(Ordering::Relaxed)).sum();
        // Mid-write sums can dip below zero (a remove counted before the
        // insert it raced with); clamp rather than wrap.
        usize::try_from(sum).unwrap_or(0)
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
